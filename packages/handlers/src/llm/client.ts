/**
 * What handlers see of the language-model layer: {@link LlmClient}. The command-worker builds
 * one {@link LlmRouter} (router.ts) from its configuration; tests build their own.
 *
 * Terminology:
 * - provider: a model vendor endpoint (`openai`, `anthropic`, `gemini`); `offline` is the
 *   embedded template/extractive path and not a provider of this client.
 * - chain: the providers in order (`LLM_PRIMARY_PROVIDER`, then `LLM_FALLBACK_PROVIDERS`).
 * - call: one {@link LlmClient.generate}; attempt: one HTTP request/stream to one provider.
 *   A call tries each provider of the chain (each with retries) until one answers.
 */
import type { Tenant } from "@nexus/contracts";
import type { BudgetWarning } from "@nexus/core";
import type { z } from "zod";

/** One structured request to a model. */
export interface LlmRequest<T> {
  /** What the call is for (`draft_email`, `summary.map`, `summary.reduce`, `prep_pack`): audit and metrics. */
  task: string;
  /** Fixed instructions written by this code base; never contains user text (see prompts.ts). */
  system: string;
  /** The one user message: the request's data, delimited (see prompts.ts). */
  user: string;
  /** The answer's shape: a JSON object validated with this schema. */
  schema: z.ZodType<T>;
  /** Most output tokens to ask for. */
  maxOutputTokens: number;
  /** A string field of the JSON answer whose text is streamed to {@link LlmCall.onDelta} as it arrives. */
  streamField?: string;
}

/** Who a call is for and where its side-channels go. */
export interface LlmCall {
  tenant: Tenant;
  commandId: string;
  correlationId: string;
  /** Aborts the call (worker shutdown). */
  signal: AbortSignal;
  /**
   * Text of {@link LlmRequest.streamField} as it arrives. `generation` starts at 1 and grows
   * when the text restarts (a retry or a fallback after some text had arrived).
   */
  onDelta?: (text: string, generation: number) => void;
  /** The call that first crossed the tenant's soft budget threshold today. */
  onBudgetWarning?: (w: BudgetWarning) => Promise<void>;
}

/** A validated answer and what it cost. */
export interface LlmResult<T> {
  value: T;
  provider: string;
  model: string;
  tokensIn: number;
  tokensOut: number;
  costUsd: number;
}

/** The language-model layer as handlers use it. */
export interface LlmClient {
  /** The model providers of the chain, in order; empty when only the offline path is configured. */
  readonly providers: readonly string[];
  /** Whether handlers answer with their offline path when every model provider failed (`offline` ends the chain). */
  readonly offlineFallback: boolean;
  /**
   * Asks the chain for a structured answer.
   * @throws {HandlerError} `LLM_BUDGET_EXCEEDED` (not retryable; no call made) when the tenant's
   *   spend today reached the hard threshold; `LLM_BAD_OUTPUT` (not retryable) when the answer
   *   did not fit `schema` twice; `LLM_RATE_LIMITED`, `LLM_TIMEOUT` or `LLM_UNAVAILABLE`
   *   (retryable unless every provider refused the request outright) when no provider answered;
   *   the signal's reason when aborted.
   */
  generate<T>(req: LlmRequest<T>, call: LlmCall): Promise<LlmResult<T>>;
}

/** A client without model providers: handlers use their offline path. */
export const OFFLINE_LLM: LlmClient = {
  providers: [],
  offlineFallback: true,
  generate() {
    return Promise.reject(new Error("no language-model provider is configured"));
  },
};
