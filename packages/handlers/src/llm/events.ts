import { EventEmitter } from "node:events";
import type { BreakerStateName } from "./breaker.ts";
import type { LlmOutcome } from "./errors.ts";

/**
 * Typed events of the language-model layer (`noun:verb`); logging and metrics subscribe to
 * them (the command-worker registers `nexus_llm_*` metrics from them). No event carries text.
 */
export interface LlmEventMap {
  /** One attempt ended (or was refused before any request: `breaker_open`, `budget_refused`). */
  "llm:call": [
    {
      provider: string;
      model: string;
      task: string;
      outcome: LlmOutcome;
      /** Wall time of the attempt, ms. */
      ms: number;
      tokensIn: number;
      tokensOut: number;
      costUsd: number;
      org_id: string;
      project_id: string;
      command_id: string;
    },
  ];
  /** A provider's circuit breaker changed state. */
  "llm:breaker": [{ provider: string; state: BreakerStateName }];
  /** The chain moved on from a failed provider. */
  "llm:fallback": [{ from: string; code: string; command_id: string }];
  /** A tenant crossed its soft threshold today, or was refused at the hard one. */
  "llm:budget": [{ kind: "soft" | "hard"; spentUsd: number; org_id: string; project_id: string }];
}

/** The emitter of {@link LlmEventMap}. */
export type LlmEvents = EventEmitter<LlmEventMap>;

/** A new {@link LlmEvents}. */
export function createLlmEvents(): LlmEvents {
  return new EventEmitter<LlmEventMap>();
}
