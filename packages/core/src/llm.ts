/**
 * The language-model layer's bookkeeping (FinOps): the cost ledger, the per-tenant daily
 * budget and the call audit (tables of migration 0004). The handlers' LLM router calls these
 * through its `LlmLedger` interface; everything is per tenant and per UTC day.
 */
import type { AgentReport, Tenant } from "@nexus/contracts";
import { sql } from "kysely";
import { type CommandRow, commandReport, type Db } from "./commands.ts";
import type { PendingReport } from "./effects.ts";

/** The UTC day of `at` as `YYYY-MM-DD` (budgets are per UTC day). */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/**
 * What a tenant has spent on language models on `day` (UTC, `YYYY-MM-DD`), in USD; 0 when
 * nothing was recorded.
 */
export async function readLlmSpend(db: Db, t: Tenant, day: string): Promise<number> {
  const row = await db
    .selectFrom("llm_budget_days")
    .select("spent_usd")
    .where("org_id", "=", t.org_id)
    .where("project_id", "=", t.project_id)
    .where("day", "=", day)
    .executeTakeFirst();
  return row ? Number(row.spent_usd) : 0;
}

/** One model call attempt as the ledger and the audit record it. */
export interface LlmCallRecord {
  tenant: Tenant;
  commandId: string;
  correlationId: string;
  /** What the call was for (`draft_email`, `summary.map`, …). */
  task: string;
  provider: string;
  model: string;
  /** `ok`, `bad_output`, `timeout`, `rate_limited`, `unavailable`, `breaker_open`, `budget_refused`, `aborted`. */
  outcome: string;
  /** The ErrorCode the outcome maps to, when it failed. */
  errorCode?: string;
  tokensIn: number;
  tokensOut: number;
  /** Estimated cost in USD (from the price table). */
  costUsd: number;
  latencyMs: number;
  /** When the call happened; its UTC day is the budget day. */
  at: Date;
  /** Prompt (system and user messages) and answer text: stored only when `content` auditing is on. */
  prompt?: unknown;
  output?: string;
}

/** Options of {@link recordLlmCall}. */
export interface RecordLlmCallOptions {
  /** Write the audit row (`LLM_AUDIT_ENABLED`). The ledger row is written regardless. */
  audit: boolean;
  /** Store prompt and output text in the audit row (`LLM_AUDIT_CONTENT`). */
  content: boolean;
  /** The soft threshold in USD; the first call of the day to reach it gets `softCrossed: true`. */
  softLimitUsd?: number;
}

/**
 * Records one call in one transaction: when it used tokens, a ledger row and the day's total;
 * when the total reached `softLimitUsd` and no call had warned yet that day, marks the day as
 * warned (a conditional update: exactly one call wins); the audit row when enabled.
 * @returns the tenant's spend that day after this call (USD) and whether this call is the one
 *   that crossed the soft threshold.
 */
export async function recordLlmCall(
  db: Db,
  r: LlmCallRecord,
  o: RecordLlmCallOptions,
): Promise<{ spentUsd: number; softCrossed: boolean }> {
  const run = async (tx: Db) => {
    const day = utcDay(r.at);
    let spentUsd: number | undefined;
    let softCrossed = false;
    if (r.tokensIn + r.tokensOut > 0 || r.costUsd > 0) {
      await tx
        .insertInto("llm_cost_ledger")
        .values({
          org_id: r.tenant.org_id,
          project_id: r.tenant.project_id,
          day,
          command_id: r.commandId,
          provider: r.provider,
          model: r.model,
          tokens_in: r.tokensIn,
          tokens_out: r.tokensOut,
          cost_usd: r.costUsd.toFixed(9),
          created_at: r.at,
        })
        .execute();
      const total = await tx
        .insertInto("llm_budget_days")
        .values({
          org_id: r.tenant.org_id,
          project_id: r.tenant.project_id,
          day,
          spent_usd: r.costUsd.toFixed(9),
          calls: 1,
        })
        .onConflict((oc) =>
          oc.columns(["org_id", "project_id", "day"]).doUpdateSet({
            spent_usd: sql`llm_budget_days.spent_usd + excluded.spent_usd`,
            calls: sql`llm_budget_days.calls + 1`,
          }),
        )
        .returning("spent_usd")
        .executeTakeFirstOrThrow();
      spentUsd = Number(total.spent_usd);
      if (o.softLimitUsd !== undefined && spentUsd >= o.softLimitUsd) {
        const won = await tx
          .updateTable("llm_budget_days")
          .set({ soft_warned_at: r.at })
          .where("org_id", "=", r.tenant.org_id)
          .where("project_id", "=", r.tenant.project_id)
          .where("day", "=", day)
          .where("soft_warned_at", "is", null)
          .returning("day")
          .executeTakeFirst();
        softCrossed = won !== undefined;
      }
    }
    if (o.audit) {
      await tx
        .insertInto("llm_audit")
        .values({
          org_id: r.tenant.org_id,
          project_id: r.tenant.project_id,
          command_id: r.commandId,
          correlation_id: r.correlationId,
          task: r.task,
          provider: r.provider,
          model: r.model,
          outcome: r.outcome,
          error_code: r.errorCode ?? null,
          tokens_in: r.tokensIn,
          tokens_out: r.tokensOut,
          cost_usd: r.costUsd.toFixed(9),
          latency_ms: Math.round(r.latencyMs),
          prompt: o.content && r.prompt !== undefined ? JSON.stringify(r.prompt) : null,
          output: o.content && r.output !== undefined ? r.output : null,
          created_at: r.at,
        })
        .execute();
    }
    return { spentUsd: spentUsd ?? (await readLlmSpend(tx, r.tenant, day)), softCrossed };
  };
  return db.isTransaction ? run(db) : db.transaction().execute(run);
}

/** The facts of a soft-budget warning (see {@link budgetWarningPending}). */
export interface BudgetWarning {
  spentUsd: number;
  dailyBudgetUsd: number;
  /** The soft threshold, percent of the daily budget. */
  softPct: number;
  /** The hard threshold, percent of the daily budget. */
  hardPct: number;
  /** The UTC day. */
  day: string;
}

/**
 * The `risk.warning` report of the call that first crossed the tenant's soft budget threshold
 * that day (entity = the command, step `warning.llm_budget`, so a retried publish dedupes).
 * @param extraCausality `ask_id` and the decision's correlation id for an approved action.
 */
export function budgetWarningPending(
  row: Pick<CommandRow, "org_id" | "project_id" | "command_id" | "correlation_id" | "type">,
  w: BudgetWarning,
  now: Date,
  extraCausality: { ask_id?: string; correlation_id?: string } = {},
): PendingReport {
  const usd = (n: number) => `$${n.toFixed(2)}`;
  const report: AgentReport = {
    type: "risk.warning",
    status: "running",
    title: `Language-model budget ${Math.floor((w.spentUsd / w.dailyBudgetUsd) * 100)}% used`,
    summary:
      `This tenant has spent ${usd(w.spentUsd)} of its ${usd(w.dailyBudgetUsd)} daily language-model budget on ${w.day} (UTC), ` +
      `past the soft threshold of ${w.softPct}%. At ${w.hardPct}% further model calls are refused with LLM_BUDGET_EXCEEDED until the next UTC day.`,
    command: { command_id: row.command_id, type: row.type },
  };
  return commandReport(row, "warning.llm_budget", report, now, extraCausality);
}
