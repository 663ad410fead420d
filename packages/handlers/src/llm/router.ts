import type { ErrorCode } from "@nexus/contracts";
import { utcDay } from "@nexus/core";
import {
  type CircuitBreakerPolicy,
  circuitBreaker,
  DelegateBackoff,
  handleWhen,
  type IRetryBackoffContext,
  isBrokenCircuitError,
  type RetryPolicy,
  retry,
} from "cockatiel";
import type { Logger } from "pino";
import { HandlerError } from "../handler.ts";
import { breakerStateName, WindowBreaker } from "./breaker.ts";
import type { LlmCall, LlmClient, LlmRequest, LlmResult } from "./client.ts";
import { classifyLlmError, isLlmCallError, type LlmCallError, type LlmOutcome } from "./errors.ts";
import type { LlmEvents } from "./events.ts";
import type { LlmLedger } from "./ledger.ts";
import { streamModel } from "./model-call.ts";
import { costUsd, type PriceTable, priceFor } from "./pricing.ts";
import type { ModelProvider } from "./providers.ts";
import { JsonStringFieldStream } from "./stream-field.ts";

/** Options of {@link LlmRouter}; the command-worker fills them from its configuration. */
export interface LlmRouterOptions {
  /** The chain's model providers, in order. */
  providers: readonly ModelProvider[];
  /** `offline` ends the chain: handlers answer offline when every provider failed. */
  offlineFallback: boolean;
  /** `LLM_TIMEOUT_MS`: limit of one attempt (request and whole stream), ms. */
  timeoutMs: number;
  /** `LLM_MAX_RETRIES`: retries per provider and call after a retryable failure (429, 5xx, timeout, truncated stream). */
  maxRetries: number;
  /** Backoff between retries without `Retry-After`: exponential from `retryBaseMs`, capped at `retryMaxMs`, full jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** A `Retry-After` longer than this (ms) is not waited for: the chain falls back instead. */
  maxRetryAfterMs: number;
  /** `BREAKER_*`: per provider, `failThreshold` failed calls within `windowMs` open it for `cooldownMs`. */
  breaker: { windowMs: number; failThreshold: number; cooldownMs: number };
  /** `LLM_BUDGET_DAILY_USD` and its thresholds (percent of it); no budget when absent. */
  budget?: { dailyUsd: number; softPct: number; hardPct: number };
  /** USD per million tokens, see pricing.ts. */
  prices: PriceTable;
  /** `LLM_AUDIT_ENABLED`, `LLM_AUDIT_CONTENT`. */
  audit: { enabled: boolean; content: boolean };
  ledger: LlmLedger;
  events?: LlmEvents;
  logger: Logger;
  now?: () => Date;
}

interface ProviderState {
  provider: ModelProvider;
  breaker: CircuitBreakerPolicy;
  retry: RetryPolicy;
}

type AttemptResult<T> =
  | { ok: true; value: T; tokensIn: number; tokensOut: number; costUsd: number }
  | { ok: false; message: string };

/** Rough token count of text a provider did not count: UTF-8 bytes / 4 (about right for English, generous for Korean). */
export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, "utf8") / 4);
}

/**
 * Parses a model's answer as one JSON object (a Markdown code fence around it is tolerated)
 * and validates it.
 * @returns the value, or why it does not fit.
 */
export function parseJsonAnswer<T>(
  text: string,
  schema: LlmRequest<T>["schema"],
): { ok: true; value: T } | { ok: false; message: string } {
  const start = text.indexOf("{");
  const end = text.lastIndexOf("}");
  if (start < 0 || end < start) return { ok: false, message: "the answer contains no JSON object" };
  let json: unknown;
  try {
    json = JSON.parse(text.slice(start, end + 1));
  } catch (err) {
    return { ok: false, message: `the answer is not valid JSON (${(err as Error).message})` };
  }
  const r = schema.safeParse(json);
  if (!r.success)
    return {
      ok: false,
      message: r.error.issues.map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`).join("; "),
    };
  return { ok: true, value: r.data };
}

/**
 * The language-model router: a fallback chain of providers, each behind a cockatiel circuit
 * breaker ({@link WindowBreaker}) wrapped around a cockatiel retry policy whose backoff honours
 * the provider's `Retry-After`; a timeout per attempt; the tenant's daily budget checked
 * before every call; every attempt recorded in the cost ledger (when it used tokens) and the
 * audit (when enabled); answers validated with zod and a malformed one asked for once more.
 *
 * Model output is only ever returned as data: the router and the handlers never act on it
 * (no tool calls, no commands, no approvals), so no answer can create, approve or widen a
 * RED action.
 */
export class LlmRouter implements LlmClient {
  readonly providers: readonly string[];
  readonly offlineFallback: boolean;
  private readonly chain: ProviderState[];
  private readonly o: LlmRouterOptions;
  private readonly now: () => Date;

  constructor(o: LlmRouterOptions) {
    this.o = o;
    this.now = o.now ?? (() => new Date());
    this.providers = o.providers.map((p) => p.name);
    this.offlineFallback = o.offlineFallback;
    this.chain = o.providers.map((provider) => {
      const breaker = circuitBreaker(
        handleWhen((e) => isLlmCallError(e) && e.outcome !== "bad_output" && e.outcome !== "aborted"),
        {
          halfOpenAfter: o.breaker.cooldownMs,
          breaker: new WindowBreaker({ failThreshold: o.breaker.failThreshold, windowMs: o.breaker.windowMs }),
        },
      );
      breaker.onStateChange((s) => {
        const state = breakerStateName(s);
        o.events?.emit("llm:breaker", { provider: provider.name, state });
        o.logger.warn({ provider: provider.name, state }, "llm:breaker");
      });
      const policy = retry(
        handleWhen(
          (e) =>
            isLlmCallError(e) && e.retryable && (e.retryAfterMs === undefined || e.retryAfterMs <= o.maxRetryAfterMs),
        ),
        {
          maxAttempts: o.maxRetries,
          backoff: new DelegateBackoff<IRetryBackoffContext<unknown>>((ctx) => {
            const err = "error" in ctx.result ? ctx.result.error : undefined;
            if (isLlmCallError(err) && err.retryAfterMs !== undefined) return err.retryAfterMs;
            const cap = Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** (ctx.attempt - 1));
            return Math.floor(Math.random() * cap);
          }),
        },
      );
      return { provider, breaker, retry: policy };
    });
  }

  async generate<T>(req: LlmRequest<T>, call: LlmCall): Promise<LlmResult<T>> {
    const generation = { n: 1 };
    let lastBad = "";
    for (let round = 1; round <= 2; round++) {
      await this.checkBudget(req, call);
      const r = await this.runChain(req, call, generation);
      if (r.ok) return r.result;
      lastBad = r.message;
      this.o.logger.warn({ task: req.task, round, why: r.message }, "llm:bad-output");
    }
    throw new HandlerError("LLM_BAD_OUTPUT", `The model's answer did not have the required shape twice: ${lastBad}`);
  }

  /** Refuses the call (no request made) when the tenant's spend today reached the hard threshold. */
  private async checkBudget(req: LlmRequest<unknown>, call: LlmCall): Promise<void> {
    const b = this.o.budget;
    if (!b) return;
    const at = this.now();
    const day = utcDay(at);
    const spent = await this.o.ledger.spent(call.tenant, day);
    const hard = (b.dailyUsd * b.hardPct) / 100;
    if (spent < hard) return;
    await this.record(
      req,
      call,
      { provider: "-", model: "-", outcome: "budget_refused", code: "LLM_BUDGET_EXCEEDED" },
      at,
      0,
    );
    this.o.events?.emit("llm:budget", {
      kind: "hard",
      spentUsd: spent,
      org_id: call.tenant.org_id,
      project_id: call.tenant.project_id,
    });
    throw new HandlerError(
      "LLM_BUDGET_EXCEEDED",
      `This tenant's language-model spend on ${day} (UTC) is $${spent.toFixed(4)}, at or past ${b.hardPct}% of its $${b.dailyUsd.toFixed(2)} daily budget; no model call was made.`,
      false,
    );
  }

  private async runChain<T>(
    req: LlmRequest<T>,
    call: LlmCall,
    generation: { n: number },
  ): Promise<{ ok: true; result: LlmResult<T> } | { ok: false; message: string }> {
    const failures: LlmCallError[] = [];
    for (const p of this.chain) {
      try {
        const r = await p.breaker.execute(() => p.retry.execute(() => this.attempt(p.provider, req, call, generation)));
        if (!r.ok) return { ok: false, message: r.message };
        return {
          ok: true,
          result: {
            value: r.value,
            provider: p.provider.name,
            model: p.provider.model,
            tokensIn: r.tokensIn,
            tokensOut: r.tokensOut,
            costUsd: r.costUsd,
          },
        };
      } catch (err) {
        if (call.signal.aborted) throw call.signal.reason ?? err;
        // Only provider failures move the chain on; anything else (the ledger's Postgres is
        // down, a bug) fails the call as it is, so the worker retries the command later.
        if (!isLlmCallError(err) && !isBrokenCircuitError(err)) throw err;
        const e = classifyLlmError(err, false);
        if (e.outcome === "breaker_open") {
          await this.record(
            req,
            call,
            { provider: p.provider.name, model: p.provider.model, outcome: "breaker_open", code: e.code },
            this.now(),
            0,
          );
        }
        failures.push(e);
        this.o.events?.emit("llm:fallback", { from: p.provider.name, code: e.code, command_id: call.commandId });
        this.o.logger.warn({ provider: p.provider.name, code: e.code, outcome: e.outcome }, "llm:provider-failed");
      }
    }
    throw chainError(failures);
  }

  /** One request to one provider. Throws {@link LlmCallError} for failures the policies act on. */
  private async attempt<T>(
    provider: ModelProvider,
    req: LlmRequest<T>,
    call: LlmCall,
    generation: { n: number },
  ): Promise<AttemptResult<T>> {
    const at = this.now();
    const started = performance.now();
    const timeout = AbortSignal.timeout(this.o.timeoutMs);
    const signal = AbortSignal.any([call.signal, timeout]);
    const field = req.streamField ? new JsonStringFieldStream(req.streamField) : undefined;
    let emitted = false;
    const gen = generation.n;
    const out = await streamModel({
      model: provider.languageModel,
      system: req.system,
      user: req.user,
      maxOutputTokens: req.maxOutputTokens,
      signal,
      onText: (chunk) => {
        const delta = field?.push(chunk);
        if (delta) {
          emitted = true;
          call.onDelta?.(delta, gen);
        }
      },
    });
    if (emitted) generation.n++;
    const ms = performance.now() - started;
    const tokensIn = out.tokensIn ?? (out.text || !out.error ? estimateTokens(req.system + req.user) : 0);
    const tokensOut = out.tokensOut ?? (out.text ? estimateTokens(out.text) : 0);
    const cost = costUsd(priceFor(this.o.prices, provider.name, provider.model), tokensIn, tokensOut);
    const base = {
      provider: provider.name,
      model: provider.model,
      tokensIn,
      tokensOut,
      costUsd: cost,
      output: out.text,
    };
    if (out.error !== undefined) {
      if (call.signal.aborted) {
        await this.record(req, call, { ...base, outcome: "aborted" }, at, ms);
        throw call.signal.reason ?? out.error;
      }
      const e = classifyLlmError(out.error, timeout.aborted);
      await this.record(req, call, { ...base, outcome: e.outcome, code: e.code }, at, ms);
      throw e;
    }
    const parsed = parseJsonAnswer(out.text, req.schema);
    await this.record(
      req,
      call,
      { ...base, outcome: parsed.ok ? "ok" : "bad_output", ...(parsed.ok ? {} : { code: "LLM_BAD_OUTPUT" }) },
      at,
      ms,
    );
    if (!parsed.ok) return parsed;
    return { ok: true, value: parsed.value, tokensIn, tokensOut, costUsd: cost };
  }

  /** Ledger, audit, metrics event and the soft-budget warning for one attempt. */
  private async record(
    req: LlmRequest<unknown>,
    call: LlmCall,
    a: {
      provider: string;
      model: string;
      outcome: LlmOutcome;
      code?: ErrorCode;
      tokensIn?: number;
      tokensOut?: number;
      costUsd?: number;
      output?: string;
    },
    at: Date,
    ms: number,
  ): Promise<void> {
    const tokensIn = a.tokensIn ?? 0;
    const tokensOut = a.tokensOut ?? 0;
    const cost = a.costUsd ?? 0;
    const b = this.o.budget;
    const { spentUsd, softCrossed } = await this.o.ledger.record(
      {
        tenant: call.tenant,
        commandId: call.commandId,
        correlationId: call.correlationId,
        task: req.task,
        provider: a.provider,
        model: a.model,
        outcome: a.outcome,
        ...(a.code ? { errorCode: a.code } : {}),
        tokensIn,
        tokensOut,
        costUsd: cost,
        latencyMs: ms,
        at,
        prompt: { system: req.system, user: req.user },
        ...(a.output ? { output: a.output } : {}),
      },
      {
        audit: this.o.audit.enabled,
        content: this.o.audit.content,
        ...(b ? { softLimitUsd: (b.dailyUsd * b.softPct) / 100 } : {}),
      },
    );
    this.o.events?.emit("llm:call", {
      provider: a.provider,
      model: a.model,
      task: req.task,
      outcome: a.outcome,
      ms,
      tokensIn,
      tokensOut,
      costUsd: cost,
      org_id: call.tenant.org_id,
      project_id: call.tenant.project_id,
      command_id: call.commandId,
    });
    if (softCrossed && b) {
      this.o.events?.emit("llm:budget", {
        kind: "soft",
        spentUsd,
        org_id: call.tenant.org_id,
        project_id: call.tenant.project_id,
      });
      await call.onBudgetWarning?.({
        spentUsd,
        dailyBudgetUsd: b.dailyUsd,
        softPct: b.softPct,
        hardPct: b.hardPct,
        day: utcDay(at),
      });
    }
  }
}

/**
 * The failure of a chain in which no provider answered: the common code when every provider
 * failed the same way (all rate-limited → `LLM_RATE_LIMITED`, all timed out → `LLM_TIMEOUT`),
 * else `LLM_UNAVAILABLE`. Open breakers do not decide the code unless every provider's was
 * open. Retryable unless every provider refused the request outright (bad key, unknown model).
 */
function chainError(failures: LlmCallError[]): HandlerError {
  const real = failures.filter((f) => f.outcome !== "breaker_open");
  const basis = real.length > 0 ? real : failures;
  const codes = new Set(basis.map((f) => f.code));
  const code: ErrorCode = codes.size === 1 ? (basis[0]?.code ?? "LLM_UNAVAILABLE") : "LLM_UNAVAILABLE";
  const retryable = !(real.length > 0 && real.every((f) => f.outcome === "rejected"));
  const what = failures.map((f) => f.message).join("; ");
  return new HandlerError(code, `No language-model provider answered: ${what || "no provider configured"}`, retryable, {
    cause: failures.at(-1),
  });
}
