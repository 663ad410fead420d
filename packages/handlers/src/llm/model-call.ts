import { type LanguageModel, streamText } from "ai";

/** What one streamed model call produced. */
export interface ModelStreamResult {
  /** The text received (all of it, or what arrived before a failure). */
  text: string;
  /** Token counts the provider reported, when it did. */
  tokensIn: number | undefined;
  tokensOut: number | undefined;
  /** The provider's finish reason (`stop`, `length`, …), or `undefined` when none arrived. */
  finishReason: string | undefined;
  /** What went wrong: an HTTP or stream error, or `undefined`. */
  error: unknown;
}

/**
 * One streamed call through the AI SDK's `streamText`, with the SDK's own retries off (the
 * router retries, honouring `Retry-After`). The user text goes in the one `user` message, as
 * data; `system` holds only the fixed instructions.
 *
 * Never throws for provider failures: they come back in `error` with the partial text, so the
 * caller can account for what a failed stream used. A stream that ends without a finish reason
 * (truncated) or with `error`/`interrupted` comes back with `error` set.
 */
export async function streamModel(o: {
  model: LanguageModel;
  system: string;
  user: string;
  maxOutputTokens: number;
  temperature?: number;
  signal: AbortSignal;
  onText?: (chunk: string) => void;
}): Promise<ModelStreamResult> {
  const out: ModelStreamResult = {
    text: "",
    tokensIn: undefined,
    tokensOut: undefined,
    finishReason: undefined,
    error: undefined,
  };
  try {
    const result = streamText({
      model: o.model,
      system: o.system,
      messages: [{ role: "user", content: o.user }],
      maxOutputTokens: o.maxOutputTokens,
      temperature: o.temperature ?? 0.3,
      maxRetries: 0,
      abortSignal: o.signal,
      // Errors are read from the stream below; without a handler the SDK logs them itself.
      onError: () => {},
    });
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") {
        out.text += part.text;
        o.onText?.(part.text);
      } else if (part.type === "error") {
        out.error ??= part.error;
      } else if (part.type === "abort") {
        out.error ??= o.signal.reason ?? new Error("aborted");
      } else if (part.type === "finish") {
        out.finishReason = part.finishReason;
        out.tokensIn = part.totalUsage.inputTokens;
        out.tokensOut = part.totalUsage.outputTokens;
      }
    }
  } catch (err) {
    out.error ??= err;
  }
  if (o.signal.aborted) out.error ??= o.signal.reason;
  if (!out.error && out.finishReason !== "stop" && out.finishReason !== "length")
    out.error = new Error(`the response stream ended without finishing (finish reason: ${out.finishReason ?? "none"})`);
  return out;
}
