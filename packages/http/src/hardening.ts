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

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string is not acceptable, or `undefined`. */
function badString(s: string): string | undefined {
  if (s.includes("\u0000")) return "must not contain NUL characters";
  if (LONE_SURROGATE.test(s)) return "must not contain unpaired UTF-16 surrogates";
  return undefined;
}

/**
 * Walks a parsed JSON value (iteratively, so depth itself cannot overflow the stack).
 * @returns the first problem as `{path, issue}`, or `undefined`.
 */
export function checkJson(value: unknown, maxDepth = MAX_JSON_DEPTH): { path: string; issue: string } | undefined {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v: value, path: "", depth: 0 }];
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop() as { v: unknown; path: string; depth: number };
    if (typeof v === "string") {
      const issue = badString(v);
      if (issue) return { path, issue };
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (depth >= maxDepth) return { path, issue: `must not nest deeper than ${maxDepth} levels` };
    const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v);
    for (const [k, x] of entries) {
      const keyIssue = badString(k);
      const p = path ? `${path}.${k}` : k;
      if (keyIssue) return { path: p, issue: `key ${keyIssue}` };
      stack.push({ v: x, path: p, depth: depth + 1 });
    }
  }
  return undefined;
}

/**
 * Longest request target accepted, in bytes (RFC 9112 §3 recommends supporting at least 8,000
 * octets); longer is `414`. Node's parser refuses request heads over 16 KiB by itself.
 */
export const MAX_URL_LENGTH = 8192;

/** Installs the body and URL guards on `app` (see the module doc). */
export function installInputGuards(app: FastifyInstance): void {
  app.addHook("onRequest", async (req) => {
    if (req.url.length > MAX_URL_LENGTH)
      throw new AppError("URI_TOO_LONG", `The URL is longer than ${MAX_URL_LENGTH} bytes`, [
        { path: "url", issue: `longer than ${MAX_URL_LENGTH} bytes` },
      ]);
    const q = req.url.indexOf("?");
    const raw = q >= 0 ? req.url.slice(q + 1) : "";
    try {
      for (const part of raw.split("&")) if (part) decodeURIComponent(part.replace(/\+/g, " "));
      decodeURIComponent(q >= 0 ? req.url.slice(0, q) : req.url);
    } catch {
      throw new AppError("VALIDATION_FAILED", "The URL contains a malformed percent-escape", [
        { path: "url", issue: "malformed percent-escape" },
      ]);
    }
  });
  app.addHook("preValidation", async (req) => {
    if (req.body === undefined || req.body === null || typeof req.body !== "object") return;
    const problem = checkJson(req.body);
    if (problem)
      throw new AppError(
        "VALIDATION_FAILED",
        `body ${problem.path || "(root)"} ${problem.issue}`,
        [{ path: problem.path, issue: problem.issue }],
        { stage: "validate" },
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
