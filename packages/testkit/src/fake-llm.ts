/**
 * A local language-model server for tests (127.0.0.1 only): it speaks the real wire formats of
 * the three providers, streaming included, and replays scripted answers.
 *
 * - OpenAI Chat Completions: `POST …/chat/completions` with `stream: true` → SSE `data:` chunks
 *   (`chat.completion.chunk`, a final chunk with `finish_reason`, a usage chunk) ending in
 *   `data: [DONE]`; without `stream` one `chat.completion` JSON body.
 * - Anthropic Messages: `POST …/messages` → `event: message_start`, `content_block_start`,
 *   `ping`, `content_block_delta` (`text_delta`)…, `content_block_stop`, `message_delta` (stop
 *   reason, output tokens), `message_stop`.
 * - Gemini: `POST …/models/<model>:streamGenerateContent?alt=sse` → `data:` chunks of
 *   `GenerateContentResponse` with `usageMetadata`, the last with `finishReason: "STOP"`.
 *
 * Each request takes the next scripted {@link FakeReply} (the last one repeats); every request
 * is recorded with its headers and JSON body.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** What the server answers to one request. */
export type FakeReply =
  /** A streamed (or, for a non-streaming OpenAI request, whole) answer of `text`, in `chunks` pieces. */
  | { kind: "ok"; text: string; tokensIn?: number; tokensOut?: number; chunks?: number; delayMs?: number }
  /** An HTTP error with the vendor's error body. */
  | { kind: "status"; status: number; headers?: Record<string, string>; message?: string }
  /** Headers, then the first part of `text`, then the connection ends (no finish, no [DONE]). */
  | { kind: "truncate"; text: string }
  /** Accepts the request and never answers (until the client gives up). */
  | { kind: "hang" };

/** A request's JSON body: the OpenAI fields typed, the rest as sent. */
export interface FakeRequestBody {
  model?: string;
  stream?: boolean;
  messages?: { role: string; content: string }[];
  [field: string]: unknown;
}

/** One request the server received. */
export interface FakeRequest {
  provider: "openai" | "anthropic" | "gemini";
  path: string;
  headers: http.IncomingHttpHeaders;
  body: FakeRequestBody;
  at: number;
}

/** A running fake server. */
export interface FakeLlmServer {
  /** `http://127.0.0.1:<port>`; point `OPENAI_BASE_URL` at `${url}/v1`, `ANTHROPIC_BASE_URL` at `${url}/v1`, `GEMINI_BASE_URL` at `${url}/v1beta`. */
  url: string;
  requests: FakeRequest[];
  /** Replaces the script (the last reply repeats once the others are used). */
  script(...replies: FakeReply[]): void;
  close(): Promise<void>;
}

function providerOf(path: string): FakeRequest["provider"] | undefined {
  if (path.includes("/chat/completions")) return "openai";
  if (path.endsWith("/messages")) return "anthropic";
  if (path.includes(":streamGenerateContent") || path.includes(":generateContent")) return "gemini";
  return undefined;
}

/** Splits `text` into `n` pieces of similar length (code points, so no surrogate is cut). */
export function splitText(text: string, n: number): string[] {
  const cps = [...text];
  const size = Math.max(1, Math.ceil(cps.length / Math.max(1, n)));
  const out: string[] = [];
  for (let i = 0; i < cps.length; i += size) out.push(cps.slice(i, i + size).join(""));
  return out.length > 0 ? out : [""];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ends the connection abruptly once what was written has left (a dropped connection mid-stream). */
async function cut(res: http.ServerResponse): Promise<void> {
  await sleep(50);
  res.destroy();
}

function errorBody(provider: FakeRequest["provider"], status: number, message: string): string {
  if (provider === "anthropic")
    return JSON.stringify({
      type: "error",
      error: {
        type: status === 429 ? "rate_limit_error" : status >= 500 ? "api_error" : "invalid_request_error",
        message,
      },
    });
  if (provider === "gemini")
    return JSON.stringify({
      error: { code: status, message, status: status === 429 ? "RESOURCE_EXHAUSTED" : "UNAVAILABLE" },
    });
  return JSON.stringify({
    error: { message, type: status === 429 ? "rate_limit_exceeded" : "server_error", param: null, code: null },
  });
}

async function writeOpenAi(
  res: http.ServerResponse,
  model: string,
  r: Extract<FakeReply, { kind: "ok" | "truncate" }>,
) {
  const id = "chatcmpl-fake";
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    res.write(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: 1767225600, model, system_fingerprint: "fp_fake", choices, ...extra })}\n\n`,
    );
  const pieces = splitText(r.text, r.kind === "ok" ? (r.chunks ?? 6) : 4);
  chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
  for (const [i, p] of pieces.entries()) {
    if (r.kind === "truncate" && i >= Math.ceil(pieces.length / 2)) return cut(res);
    chunk([{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }]);
    if (r.kind === "ok" && r.delayMs) await sleep(r.delayMs);
  }
  if (r.kind !== "ok") return;
  chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }]);
  chunk([], {
    usage: {
      prompt_tokens: r.tokensIn ?? 100,
      completion_tokens: r.tokensOut ?? 50,
      total_tokens: (r.tokensIn ?? 100) + (r.tokensOut ?? 50),
    },
  });
  res.end("data: [DONE]\n\n");
}

async function writeAnthropic(
  res: http.ServerResponse,
  model: string,
  r: Extract<FakeReply, { kind: "ok" | "truncate" }>,
) {
  const ev = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  const tokensIn = r.kind === "ok" ? (r.tokensIn ?? 100) : 100;
  ev("message_start", {
    type: "message_start",
    message: {
      id: "msg_fake",
      type: "message",
      role: "assistant",
      content: [],
      model,
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: tokensIn, output_tokens: 1 },
    },
  });
  ev("content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
  ev("ping", { type: "ping" });
  const pieces = splitText(r.text, r.kind === "ok" ? (r.chunks ?? 6) : 4);
  for (const [i, p] of pieces.entries()) {
    if (r.kind === "truncate" && i >= Math.ceil(pieces.length / 2)) return cut(res);
    ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: p } });
    if (r.kind === "ok" && r.delayMs) await sleep(r.delayMs);
  }
  if (r.kind !== "ok") return;
  ev("content_block_stop", { type: "content_block_stop", index: 0 });
  ev("message_delta", {
    type: "message_delta",
    delta: { stop_reason: "end_turn", stop_sequence: null },
    usage: { output_tokens: r.tokensOut ?? 50 },
  });
  ev("message_stop", { type: "message_stop" });
  res.end();
}

async function writeGemini(
  res: http.ServerResponse,
  model: string,
  r: Extract<FakeReply, { kind: "ok" | "truncate" }>,
) {
  const pieces = splitText(r.text, r.kind === "ok" ? (r.chunks ?? 6) : 4);
  const tokensIn = r.kind === "ok" ? (r.tokensIn ?? 100) : 100;
  const tokensOut = r.kind === "ok" ? (r.tokensOut ?? 50) : 10;
  for (const [i, p] of pieces.entries()) {
    if (r.kind === "truncate" && i >= Math.ceil(pieces.length / 2)) return cut(res);
    const last = r.kind === "ok" && i === pieces.length - 1;
    const out = last ? tokensOut : Math.max(1, Math.round((tokensOut * (i + 1)) / pieces.length));
    res.write(
      `data: ${JSON.stringify({
        candidates: [
          { content: { parts: [{ text: p }], role: "model" }, ...(last ? { finishReason: "STOP" } : {}), index: 0 },
        ],
        usageMetadata: { promptTokenCount: tokensIn, candidatesTokenCount: out, totalTokenCount: tokensIn + out },
        modelVersion: model,
        responseId: "fake",
      })}\r\n\r\n`,
    );
    if (r.kind === "ok" && r.delayMs) await sleep(r.delayMs);
  }
  res.end();
}

/** Starts a {@link FakeLlmServer} on a free port of 127.0.0.1. */
export async function startFakeLlm(...replies: FakeReply[]): Promise<FakeLlmServer> {
  let script: FakeReply[] = replies.length > 0 ? replies : [{ kind: "ok", text: '{"ok":true}' }];
  let next = 0;
  const requests: FakeRequest[] = [];
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", async () => {
      const path = req.url ?? "/";
      const provider = providerOf(path);
      if (!provider) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
        return;
      }
      let body: FakeRequestBody = {};
      try {
        body = JSON.parse(raw) as FakeRequestBody;
      } catch {}
      requests.push({ provider, path, headers: req.headers, body, at: Date.now() });
      const reply = script[Math.min(next, script.length - 1)] as FakeReply;
      next++;
      const model =
        provider === "gemini" ? (path.match(/models\/([^:]+):/)?.[1] ?? "gemini") : String(body.model ?? "model");
      if (reply.kind === "hang") {
        open.add(res);
        res.on("close", () => open.delete(res));
        return;
      }
      if (reply.kind === "status") {
        res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
        res.end(errorBody(provider, reply.status, reply.message ?? http.STATUS_CODES[reply.status] ?? "error"));
        return;
      }
      if (provider === "openai" && body.stream !== true && reply.kind === "ok") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "chatcmpl-fake",
            object: "chat.completion",
            created: 1767225600,
            model,
            choices: [{ index: 0, message: { role: "assistant", content: reply.text }, finish_reason: "stop" }],
            usage: {
              prompt_tokens: reply.tokensIn ?? 100,
              completion_tokens: reply.tokensOut ?? 50,
              total_tokens: 150,
            },
          }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      if (provider === "openai") await writeOpenAi(res, model, reply);
      else if (provider === "anthropic") await writeAnthropic(res, model, reply);
      else await writeGemini(res, model, reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script(...rs) {
      script = rs;
      next = 0;
    },
    async close() {
      for (const r of open) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
