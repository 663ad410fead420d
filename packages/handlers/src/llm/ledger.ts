import type { Tenant } from "@nexus/contracts";
import { type Database, type LlmCallRecord, type RecordLlmCallOptions, readLlmSpend, recordLlmCall } from "@nexus/core";
import type { Kysely } from "kysely";

/** Where the router keeps spend and audit: the narrow interface over the core queries. */
export interface LlmLedger {
  /** The tenant's spend on `day` (UTC `YYYY-MM-DD`), USD. */
  spent(t: Tenant, day: string): Promise<number>;
  /** Records one attempt (see core `recordLlmCall`). */
  record(r: LlmCallRecord, o: RecordLlmCallOptions): Promise<{ spentUsd: number; softCrossed: boolean }>;
}

/** The Postgres ledger (tables `llm_cost_ledger`, `llm_budget_days`, `llm_audit`). */
export function dbLlmLedger(db: Kysely<Database>): LlmLedger {
  return {
    spent: (t, day) => readLlmSpend(db, t, day),
    record: (r, o) => recordLlmCall(db, r, o),
  };
}
