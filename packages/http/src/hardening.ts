/**
 * Input that would otherwise reach a 500: guards applied to every request of every service.
 *
 * - JSON bodies: no string (key or value) may contain NUL (`\u0000`, which Postgres refuses in
 *   text and jsonb) or a lone UTF-16 surrogate (not encodable as UTF-8), and nesting may not go
 *   deeper than {@link MAX_JSON_DEPTH} (deeper input would overflow recursive code such as
 *   canonical JSON). Each is `400 VALIDATION_FAILED` with the path.
 * - URLs: a percent-escape that does not decode (`%ZZ`, a lone surrogate) is `400`.
 * - The HTTP parser's own refusals (a header block or URL over the size limit, malformed
 *   requests) are answered with the standard error body (`431`, `414`, `400`) instead of a bare
 *   status line.
 */
import type { Socket } from "node:net";
import { apiError, type ErrorCode } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import type { FastifyInstance } from "fastify";

/** Deepest JSON nesting accepted in a request body (objects and arrays). */
export const MAX_JSON_DEPTH = 32;

/** Why a string is not acceptable, or `undefined`. */
function badString(s: string): string | undefined {
  if (s.includes("\u0000")) return "must not contain NUL characters";
  // A lone surrogate is exactly what makes a string not well-formed (ES2024).
  if (!s.isWellFormed()) return "must not contain unpaired UTF-16 surrogates";
  return undefined;
}

/** A problem found by {@link walkJson}: the path's segments innermost first, and the issue. */
interface JsonProblem {
  reversedPath: string[];
  issue: string;
}

/**
 * Depth-first walk for {@link checkJson}. It recurses at most `maxDepth` levels (deeper input
 * is itself the problem), so depth cannot overflow the stack; the path is built only for the
 * problem found, on the way back up, so a clean body allocates nothing per key.
 */
function walkJson(v: unknown, depth: number, maxDepth: number): JsonProblem | undefined {
  if (typeof v === "string") {
    const issue = badString(v);
    return issue ? { reversedPath: [], issue } : undefined;
  }
  if (v === null || typeof v !== "object") return undefined;
  if (depth >= maxDepth) return { reversedPath: [], issue: `must not nest deeper than ${maxDepth} levels` };
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = walkJson(v[i], depth + 1, maxDepth);
      if (p) {
        p.reversedPath.push(String(i));
        return p;
      }
    }
    return undefined;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const keyIssue = badString(k);
    const p = keyIssue ? { reversedPath: [], issue: `key ${keyIssue}` } : walkJson(o[k], depth + 1, maxDepth);
    if (p) {
      p.reversedPath.push(k);
      return p;
    }
  }
  return undefined;
}

/**
 * Checks a parsed JSON value: no NUL or lone surrogate in any string (key or value), nesting
 * at most `maxDepth` levels.
 * @returns the first problem in document order as `{path, issue}` (`path`: the keys and array
 *   indexes from the root, dot-separated; `""` for the root), or `undefined`.
 */
export function checkJson(value: unknown, maxDepth = MAX_JSON_DEPTH): { path: string; issue: string } | undefined {
  const p = walkJson(value, 0, maxDepth);
  return p && { path: p.reversedPath.reverse().join("."), issue: p.issue };
}

/**
 * Longest request target accepted, in bytes (RFC 9112 §3 recommends supporting at least 8,000
 * octets); longer is `414`. Node's parser refuses request heads over 16 KiB by itself.
 */
export const MAX_URL_LENGTH = 8192;

/**
 * Why a request target is refused: longer than {@link MAX_URL_LENGTH} (`URI_TOO_LONG`), or a
 * percent-escape in its path or query that does not decode (`VALIDATION_FAILED`).
 * @returns the error to answer with, or `undefined` when the URL is acceptable.
 */
export function urlProblem(url: string): AppError | undefined {
  if (url.length > MAX_URL_LENGTH)
    return new AppError("URI_TOO_LONG", `The URL is longer than ${MAX_URL_LENGTH} bytes`, [
      { path: "url", issue: `longer than ${MAX_URL_LENGTH} bytes` },
    ]);
  // Nothing to decode without a percent sign (the common case).
  if (!url.includes("%")) return undefined;
  const q = url.indexOf("?");
  const raw = q >= 0 ? url.slice(q + 1) : "";
  try {
    for (const part of raw.split("&")) if (part) decodeURIComponent(part.replace(/\+/g, " "));
    decodeURIComponent(q >= 0 ? url.slice(0, q) : url);
  } catch {
    return new AppError("VALIDATION_FAILED", "The URL contains a malformed percent-escape", [
      { path: "url", issue: "malformed percent-escape" },
    ]);
  }
  return undefined;
}

/**
 * Installs the body guard on `app` (see the module doc): a JSON body is checked with
 * {@link checkJson} before validation. The URL guard ({@link urlProblem}) runs in
 * `createHttpApp`'s first hook.
 */
export function installInputGuards(app: FastifyInstance): void {
  app.addHook("preValidation", (req, _reply, done) => {
    if (req.body === undefined || req.body === null || typeof req.body !== "object") return done();
    const problem = checkJson(req.body);
    if (!problem) return done();
    done(
      new AppError(
        "VALIDATION_FAILED",
        `body ${problem.path || "(root)"} ${problem.issue}`,
        [{ path: problem.path, issue: problem.issue }],
        { stage: "validate" },
      ),
    );
  });
}

const PARSER_ERRORS: Record<string, [number, ErrorCode, string]> = {
  HPE_HEADER_OVERFLOW: [431, "HEADERS_TOO_LARGE", "Request header fields too large"],
  HPE_URI_TOO_LONG: [414, "URI_TOO_LONG", "URI too long"],
};

/**
 * Fastify's `clientErrorHandler`: answers what Node's HTTP parser refused with the standard
 * error body (431 for oversized headers, 414 for an oversized URL, 400 otherwise), then closes
 * the socket. Source: Node.js `http.Server` 'clientError' event.
 */
export function clientErrorHandler(err: Error & { code?: string; rawPacket?: unknown }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  let key = err.code ?? "";
  // The parser reports an over-long request line as a header overflow: the packet then starts
  // with a request line that has not ended within MAX_URL_LENGTH bytes.
  if (key === "HPE_HEADER_OVERFLOW" && Buffer.isBuffer(err.rawPacket)) {
    const head = err.rawPacket.toString("latin1", 0, MAX_URL_LENGTH + 32);
    if (/^[A-Z]+ \S/.test(head) && !head.includes("\r\n")) key = "HPE_URI_TOO_LONG";
  }
  const [status, code, message] = PARSER_ERRORS[key] ?? [400, "VALIDATION_FAILED", "Malformed request"];
  const body = JSON.stringify({ error: apiError(code, message) });
  const reason = status === 431 ? "Request Header Fields Too Large" : status === 414 ? "URI Too Long" : "Bad Request";
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
