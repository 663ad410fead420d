/**
 * The command-worker's jobs: the messages of NEXUS_COMMANDS.
 *
 * - `command` (`nexus.cmd.<org>.<project>.<command_id>`, published by the gateway): record it
 *   under the tenant's risk policy, then run it (GREEN/YELLOW) or hold it for approval (RED).
 * - `approved_action` (`….<command_id>.approved`, dispatched by the approval-worker): verify
 *   the approved action is unchanged, run it, record the outcome.
 * - `requeue` (`….<command_id>.requeue`, from the dead-letter stream: an operator or the triage
 *   by failure code): wait for its `not_before`, then run the failed command again — at most
 *   once per dead letter (`requeueCommand`); a command that never got a row (it was poison) is
 *   handled as new.
 *
 * Each step is a core transition in Postgres followed by the publish of its effects and only
 * then the ack (docs/architecture.md "The write path"); a redelivery re-runs the step, which finds the
 * state reached and restates the same effects (same `Nats-Msg-Id`s), so everything happens once
 * (invariant 3), and a RED command never runs its action without an approval (invariant 2).
 */
import { randomUUID } from "node:crypto";
import type { JsMsg } from "@nats-io/jetstream";
import {
  type ApiError,
  ApprovedActionMessage,
  apiError,
  COMMAND_TYPES,
  CONSUMERS,
  CommandMessage,
  isCommandType,
  Persona,
  Profile,
  RequeueMessage,
  STREAMS,
  subjects,
  type Tenant,
  tenantFromSubject,
  zodDetails,
} from "@nexus/contracts";
import {
  askProgressPending,
  budgetWarningPending,
  type CommandContext,
  type CommandRow,
  type CompleteItem,
  claimedBy,
  completeCommands,
  completeExecution,
  type Database,
  type Effects,
  failCommand,
  failExecution,
  groupCommit,
  holdForApproval,
  type PendingReport,
  policyFor,
  progressPending,
  type Received,
  type ReceiveItem,
  type RequeueClaim,
  readCommandContexts,
  readSettings,
  receiveCommands,
  requeueCommand,
  requeuedEffects,
  restateCommand,
  resumeCommand,
  startExecution,
  type TenantSettings,
} from "@nexus/core";
import {
  type CommandHandler,
  HANDLERS,
  type HandlerContext,
  HandlerError,
  isConnectorError,
  isHandlerError,
  type LlmClient,
  type ShareConnector,
} from "@nexus/handlers";
import {
  type DeadLetterRequest,
  type JetStreamPublisher,
  type JobContext,
  type Parsed,
  publishEffects,
  type Snooze,
  type WorkerSpec,
} from "@nexus/messaging";
import type { Kysely } from "kysely";
import { z } from "zod";
import { createLiveProgress, type LiveProgress, type LiveProgressOptions } from "./live-progress.ts";

/** A job of the command-worker. */
export type CommandJob =
  | { kind: "command"; message: CommandMessage }
  | { kind: "approved_action"; message: ApprovedActionMessage }
  | { kind: "requeue"; requeue: RequeueMessage; message: CommandMessage };

/** What the jobs depend on. */
export interface CommandJobDeps {
  db: Kysely<Database>;
  js: JetStreamPublisher;
  /** The language-model layer (`OFFLINE_LLM` when no provider is configured). */
  llm: LlmClient;
  /** Live progress on core NATS; without it `ctx.live` does nothing. */
  live?: LiveProgressOptions;
  share: ShareConnector;
  now: () => Date;
  /** The handler registry (default: every handler of `@nexus/handlers`). */
  handlers?: readonly CommandHandler[];
  /** The hot statements of a command (default: a new {@link groupCommitWrites} of `db`). */
  writes?: CommandWrites;
  config: {
    ASK_TTL_SECONDS: number;
    PUBLISH_TIMEOUT_MS: number;
    FAULT_INJECT_HANDLER_DELAY_MS: number;
    /** Command types whose handler fails transiently on every attempt (tests and drills). */
    FAULT_INJECT_FAIL_TYPES?: readonly string[];
    /**
     * A new GREEN/YELLOW command whose handler finishes within this many ms is recorded as done
     * in one statement, its accepted, started and completed reports published together (the
     * quick path, see `runQuick`); 0 records every command as running first. Default 25.
     */
    QUICK_COMMAND_MS?: number;
    /** The reports stream's duplicate window, ms (`restateCommand`). Default 120,000. */
    DUPLICATE_WINDOW_MS?: number;
  };
}

/**
 * Parses a NEXUS_COMMANDS message. Poison (dead-lettered, never handled): not UTF-8 JSON, not a
 * command or approved action, or published on another subject than its own tenant and id
 * (a body can never act for another tenant than its subject names).
 */
export function parseCommandJob(msg: Pick<JsMsg, "data" | "subject">): Parsed<CommandJob> {
  const subjectTenant = tenantFromSubject(msg.subject);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(msg.data));
  } catch {
    return { ok: false, error: "the body is not UTF-8 JSON", tenant: subjectTenant };
  }
  const kind = (body as { kind?: unknown } | null)?.kind;
  const issues = (e: { issues: { path: PropertyKey[]; message: string }[] }) =>
    e.issues.map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`).join("; ");
  if (kind === "requeue") {
    const r = RequeueMessage.safeParse(body);
    if (!r.success)
      return { ok: false, error: `the body does not match RequeueMessage: ${issues(r.error)}`, tenant: subjectTenant };
    // The original, parsed as if it arrived on its own subject: the same checks apply.
    const inner = r.data.subject.endsWith(".requeue")
      ? ({ ok: false, error: "a requeue wraps another requeue", tenant: subjectTenant } as const)
      : parseCommandJob({ data: new TextEncoder().encode(r.data.payload), subject: r.data.subject });
    if (!inner.ok) return { ok: false, error: `requeued message: ${inner.error}`, tenant: subjectTenant };
    if (inner.job.kind !== "command")
      return {
        ok: false,
        error: "only commands can be requeued (a failed approved action is final)",
        tenant: subjectTenant,
      };
    const m = inner.job.message;
    if (
      msg.subject !== subjects.requeue("cmd", m.tenant, m.command_id) ||
      r.data.tenant.org_id !== m.tenant.org_id ||
      r.data.tenant.project_id !== m.tenant.project_id
    )
      return {
        ok: false,
        error: "the tenant or command_id of the requeue differs from its subject",
        tenant: subjectTenant,
      };
    return { ok: true, job: { kind: "requeue", requeue: r.data, message: m }, tenant: m.tenant, log: inner.log };
  }
  if (kind === "approved_action") {
    const r = ApprovedActionMessage.safeParse(body);
    if (!r.success)
      return {
        ok: false,
        error: `the body does not match ApprovedActionMessage: ${issues(r.error)}`,
        tenant: subjectTenant,
      };
    if (msg.subject !== subjects.approvedAction(r.data.tenant, r.data.command_id))
      return {
        ok: false,
        error: "the tenant or command_id of the body differs from the subject",
        tenant: subjectTenant,
      };
    return {
      ok: true,
      job: { kind: "approved_action", message: r.data },
      tenant: r.data.tenant,
      log: logFields(r.data.tenant, r.data.command_id, r.data.correlation_id, r.data.ask_id),
    };
  }
  const r = CommandMessage.safeParse(body);
  if (!r.success)
    return { ok: false, error: `the body does not match CommandMessage: ${issues(r.error)}`, tenant: subjectTenant };
  let expected: string;
  try {
    expected = subjects.command(r.data.tenant, r.data.command_id);
  } catch {
    return { ok: false, error: "command_id is not a valid subject token", tenant: subjectTenant };
  }
  if (msg.subject !== expected)
    return { ok: false, error: "the tenant or command_id of the body differs from the subject", tenant: subjectTenant };
  return {
    ok: true,
    job: { kind: "command", message: r.data },
    tenant: r.data.tenant,
    log: logFields(r.data.tenant, r.data.command_id, r.data.correlation_id),
  };
}

function logFields(t: Tenant, commandId: string, correlationId: string, askId?: string) {
  return {
    org_id: t.org_id,
    project_id: t.project_id,
    command_id: commandId,
    correlation_id: correlationId,
    ...(askId ? { ask_id: askId } : {}),
  };
}

/**
 * The runner spec of the command-worker (see `runWorker`): the durable consumer
 * `command-worker` on NEXUS_COMMANDS, dead letters with source `cmd`.
 */
export function commandWorkerSpec(given: CommandJobDeps): WorkerSpec<CommandJob> {
  const deps: Deps = { ...given, writes: given.writes ?? groupCommitWrites(given.db) };
  return {
    name: "command-worker",
    stream: STREAMS.commands,
    consumer: CONSUMERS.commandWorker,
    dlqSource: "cmd",
    parse: parseCommandJob,
    handle: (job, ctx) =>
      job.kind === "command"
        ? handleCommand(deps, job.message, ctx)
        : job.kind === "requeue"
          ? handleRequeue(deps, job.requeue, job.message, ctx)
          : handleApproved(deps, job.message, ctx),
    async onExhausted(job, err, ctx) {
      const error = exhaustedError(err, ctx.attempt);
      const t = job.message.tenant;
      const out =
        job.kind === "approved_action"
          ? await deps.db.transaction().execute((tx) => failExecution(tx, t, job.message.ask_id, error, deps.now()))
          : await failCommand(deps.db, t, job.message.command_id, error, deps.now());
      await publish(deps, out.effects, ctx);
      return error.code;
    },
  };
}

/** The failure of a job whose attempts are spent: the handler's own code when it gave one. */
function exhaustedError(err: unknown, attempts: number): ApiError {
  if (isHandlerError(err)) return apiError(err.code, `${err.message} (gave up after ${attempts} attempts)`);
  return apiError("RETRIES_EXHAUSTED", `The command failed after ${attempts} attempts`);
}

async function publish(deps: CommandJobDeps, effects: Effects, ctx: Pick<JobContext, "traceparent">): Promise<void> {
  if (effects.reports.length + effects.notifications.length + effects.messages.length === 0) return;
  await publishEffects(deps.js, effects, {
    timeoutMs: deps.config.PUBLISH_TIMEOUT_MS,
    ...(ctx.traceparent ? { traceparent: ctx.traceparent } : {}),
  });
}

/**
 * The statements every GREEN command pays — read its tenant's settings (and whether it is
 * recorded), record it, complete it — each a core transition over many items.
 */
export interface CommandWrites {
  /** `readCommandContexts` for one command. */
  context(item: { tenant: Tenant; commandId: string }): Promise<CommandContext>;
  /** `receiveCommands` for one message. */
  receive(item: ReceiveItem): Promise<Received>;
  /** `completeCommands` for one command. */
  complete(item: CompleteItem): Promise<{ row: CommandRow | undefined; effects: Effects }>;
}

/**
 * The {@link CommandWrites} of a database with group commit (`groupCommit` of `@nexus/core`):
 * the statements of the jobs running at once go out as one multi-row statement each, one
 * round trip and one commit per batch instead of per command. `commandWorkerSpec` makes one
 * set when it is given none.
 */
export function groupCommitWrites(
  db: Kysely<Database>,
  o: {
    /** See `GroupCommitOptions.onStatement`; `statement` names which of the three. */
    onStatement?: (statement: keyof CommandWrites, items: number, outcome: "ok" | "failed" | "split") => void;
    /** See `GroupCommitOptions.lingerMs` (`GROUP_COMMIT_LINGER_MS`); default 0. */
    lingerMs?: number;
  } = {},
): CommandWrites {
  const on = o.onStatement;
  const opts = (statement: keyof CommandWrites) => ({
    lingerMs: o.lingerMs ?? 0,
    ...(on ? { onStatement: (n: number, outcome: "ok" | "failed" | "split") => on(statement, n, outcome) } : {}),
  });
  return {
    context: groupCommit(
      (items: readonly { tenant: Tenant; commandId: string }[]) => readCommandContexts(db, items),
      opts("context"),
    ),
    receive: groupCommit((items: readonly ReceiveItem[]) => receiveCommands(db, items), opts("receive")),
    complete: groupCommit((items: readonly CompleteItem[]) => completeCommands(db, items), opts("complete")),
  };
}

/** The jobs' dependencies with their group-commit writes settled (see {@link commandWorkerSpec}). */
type Deps = CommandJobDeps & { writes: CommandWrites };

/** A handler's failure that will not get better by retrying, as the command's error; `undefined` when it may. */
function permanentError(err: unknown): ApiError | undefined {
  if (isHandlerError(err) && !err.retryable) return apiError(err.code, err.message);
  if (isConnectorError(err) && !err.retryable) return apiError("CONNECTOR_FAILED", err.message);
  return undefined;
}

/**
 * Command types whose handlers write with the assistant and need the tenant's profile and
 * persona: for these the worker reads the whole settings row (one query, also giving the
 * policy) instead of only the policy.
 */
const ASSISTANT_TYPES: ReadonlySet<string> = new Set(["draft_email.create", "doc.summary.create", "prep_pack.create"]);

/** The persona, non-strict: a field added to the persona later must not void the fields known here. */
const LoosePersona = z.object(Persona.shape);

/** Profile and persona as the handlers get them (`{}` for what does not parse). */
function assistantSettings(s: { profile: unknown; persona: unknown } | undefined): {
  profile: Profile;
  persona: Persona;
} {
  const profile = Profile.safeParse(s?.profile ?? {});
  const persona = LoosePersona.safeParse(s?.persona ?? {});
  return { profile: profile.success ? profile.data : {}, persona: persona.success ? persona.data : {} };
}

/** Live progress of one handler run (a no-op without `deps.live`). */
function liveOf(
  deps: Deps,
  t: Tenant,
  commandId: string,
  causality: { correlation_id: string; ask_id?: string },
): LiveProgress {
  if (!deps.live) return { push() {}, close() {} };
  return createLiveProgress(deps.live, t, commandId, { ...causality, command_id: commandId });
}

/** A command message: record it, then run it or hold it (module doc). */
async function handleCommand(
  deps: Deps,
  m: CommandMessage,
  ctx: JobContext,
  requeue?: RequeueClaim,
): Promise<undefined | DeadLetterRequest> {
  const t = m.tenant;
  const { settings, recorded } = await deps.writes.context({ tenant: t, commandId: m.command_id });
  const full = ASSISTANT_TYPES.has(m.type) ? settings : undefined;
  const policy = policyFor(m.type, settings.compliance, settings.policy_version, deps.config.ASK_TTL_SECONDS);
  if (!recorded && !requeue && policy.risk !== "RED" && (deps.config.QUICK_COMMAND_MS ?? 25) > 0) {
    const quick = await runQuick(deps, m, policy, ctx, full);
    if (quick !== RECORDED_BEFORE) return quick;
  }
  const received = await deps.writes.receive({ m, policy, now: deps.now(), ...(requeue ? { requeue } : {}) });
  if (received.kind === "conflict")
    return {
      reason: "idempotency_conflict",
      code: "IDEMPOTENCY_CONFLICT",
      error: `command_id ${m.command_id} was reused with another body after the first command left the command stream; the first command stands`,
    };
  let row: CommandRow = received.row;
  let effects: Effects;
  if (received.kind === "inserted") effects = received.effects;
  else if (requeue && !claimedBy(row, requeue)) {
    // Another copy of this requeue inserted it and runs it: restate only.
    await publish(deps, restate(deps, m, row), ctx);
    return;
  } else if (row.status === "running") {
    // Its worker died or the handler failed: run it again (attempts + 1).
    const resumed = await resumeCommand(deps.db, t, m.command_id, deps.now());
    if (!resumed) return handleCommand(deps, m, ctx, requeue); // finished meanwhile: restate that
    row = resumed;
    effects = restateCommand(m, row);
  } else effects = restate(deps, m, row);
  return proceed(deps, m, row, effects, policy, ctx, full);
}

/**
 * A requeued dead letter (module doc): not before its `not_before`; then the failed command
 * runs again if this dead letter was not requeued before; a redelivered requeue carries on like
 * a redelivered command; a stale one (the command is no longer failed, or a newer dead letter
 * was requeued) only restates where the command stands.
 */
async function handleRequeue(
  deps: Deps,
  r: RequeueMessage,
  m: CommandMessage,
  ctx: JobContext,
): Promise<undefined | DeadLetterRequest | Snooze> {
  const wait = r.not_before ? Date.parse(r.not_before) - deps.now().getTime() : 0;
  if (wait > 0) return { snoozeMs: wait };
  const t = m.tenant;
  const claim: RequeueClaim = { dlqSeq: r.dlq_seq, msgSeq: ctx.seq };
  const rq = await requeueCommand(deps.db, t, m.command_id, m.body_hash, claim, deps.now());
  if (rq.kind === "absent" || rq.kind === "applied") return handleCommand(deps, m, ctx, claim);
  if (rq.kind === "stale") {
    ctx.logger.info({ dlq_seq: r.dlq_seq, status: rq.row.status }, "requeue:stale");
    await publish(deps, restate(deps, m, rq.row), ctx);
    return;
  }
  ctx.logger.info({ dlq_seq: r.dlq_seq, requeues: rq.row.requeues, by: r.requested_by }, "requeue:running");
  const { settings } = await deps.writes.context({ tenant: t, commandId: m.command_id });
  const full = ASSISTANT_TYPES.has(m.type) ? settings : undefined;
  const policy = policyFor(m.type, settings.compliance, settings.policy_version, deps.config.ASK_TTL_SECONDS);
  return proceed(deps, m, rq.row, requeuedEffects(rq.row), policy, ctx, full);
}

/** Holds a received RED command for approval, or runs a running one (after `effects` are published). */
async function proceed(
  deps: Deps,
  m: CommandMessage,
  row: CommandRow,
  effects: Effects,
  policy: ReturnType<typeof policyFor>,
  ctx: JobContext,
  /** The tenant's settings row when the command type writes with the assistant (profile, persona). */
  full?: Awaited<ReturnType<typeof readSettings>>,
): Promise<undefined | DeadLetterRequest> {
  const t = m.tenant;
  if (row.status === "accepted" || row.status === "waiting_approval") {
    // RED: hold for a human; nothing runs before an approve decision (invariant 2).
    const held = await deps.db
      .transaction()
      .execute((tx) => holdForApproval(tx, row, { askId: randomUUID(), policy, now: deps.now() }));
    effects.reports.push(...held.effects.reports);
    await publish(deps, effects, ctx);
    ctx.logger.info({ ask_id: held.row.ask_id }, "command:held-for-approval");
    return;
  }
  await publish(deps, effects, ctx);
  if (row.status !== "running") return; // finished before: restated, nothing runs again
  const live = liveOf(deps, t, m.command_id, { correlation_id: m.correlation_id });
  const outcome = await settled(
    runHandler(deps, row.type, row.params, ctx, {
      ...handlerContext(m, full, live),
      progress: (stage, percent) => publishReports(deps, ctx, progressPending(row, stage, percent, deps.now())),
      budgetWarning: (w) => publishReports(deps, ctx, budgetWarningPending(row, w, deps.now())),
    }),
  );
  live.close();
  await finish(deps, m, outcome, ctx);
}

/** What {@link runQuick} returns when the command turned out to be recorded before: handle it as such. */
const RECORDED_BEFORE = Symbol("recorded-before");

/**
 * The quick path of a command seen for the first time (GREEN or YELLOW): its handler starts at
 * once, before the command is recorded. When it finishes within `QUICK_COMMAND_MS` without
 * reporting anything, the command is recorded as done in one statement and `command.accepted`,
 * `command.started` and `command.completed` are published together — one write and one
 * publish round instead of two of each, and no second row version. Otherwise (the window
 * closes first, or the handler reports progress, a budget warning or a failure) the command is
 * recorded as running at the time it started and its accepted/started reports are published
 * before anything else; then it ends as any command does ({@link finish}). Either way the
 * reports keep their order and ids, and a redelivery finds the row (`restateCommand`).
 * @returns {@link RECORDED_BEFORE} when the command's row appeared meanwhile (another copy):
 *   the caller handles the message as a recorded command and this run's result is dropped.
 */
async function runQuick(
  deps: Deps,
  m: CommandMessage,
  policy: ReturnType<typeof policyFor>,
  ctx: JobContext,
  full: TenantSettings | undefined,
): Promise<undefined | DeadLetterRequest | typeof RECORDED_BEFORE> {
  const startedAt = deps.now();
  let opened: Promise<Received> | undefined;
  /** Records the command as running and publishes its accepted/started reports, once. */
  const open = () => {
    opened ??= (async () => {
      const received = await deps.writes.receive({ m, policy, now: startedAt });
      if (received.kind === "inserted") await publish(deps, received.effects, ctx);
      return received;
    })();
    return opened;
  };
  /** Publishes a report of the running command, after its accepted/started. */
  const report = async (build: (row: CommandRow) => PendingReport) => {
    const r = await open();
    if (r.kind === "inserted") await publishReports(deps, ctx, build(r.row));
  };
  const live = liveOf(deps, m.tenant, m.command_id, { correlation_id: m.correlation_id });
  const run = settled(
    runHandler(deps, m.type, m.params, ctx, {
      ...handlerContext(m, full, live),
      progress: (stage, percent) => report((row) => progressPending(row, stage, percent, deps.now())),
      budgetWarning: (w) => report((row) => budgetWarningPending(row, w, deps.now())),
    }),
  );
  try {
    return await quickOrRecorded();
  } finally {
    live.close(); // on every way out, errors included (closing twice is harmless)
  }

  async function quickOrRecorded(): Promise<undefined | typeof RECORDED_BEFORE> {
    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      run,
      new Promise<"slow">((resolve) => {
        timer = setTimeout(() => resolve("slow"), deps.config.QUICK_COMMAND_MS ?? 25);
      }),
    ]);
    clearTimeout(timer);
    if (first !== "slow" && first.ok && !opened) {
      live.close();
      ctx.signal.throwIfAborted();
      const received = await deps.writes.receive({
        m,
        policy,
        now: deps.now(),
        done: { result: first.result, startedAt },
      });
      if (received.kind !== "inserted") return RECORDED_BEFORE;
      await publish(deps, received.effects, ctx);
      return;
    }
    if (first !== "slow" && !first.ok && ctx.signal.aborted) throw first.err; // shutting down: nothing recorded
    const received = await open();
    if (received.kind !== "inserted") return RECORDED_BEFORE; // the handler may still run; its result is dropped
    const outcome = await run;
    live.close();
    await finish(deps, m, outcome, ctx);
    return;
  }
}

/** A handler's outcome, caught. */
type Outcome = { ok: true; result: unknown } | { ok: false; err: unknown };
const settled = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    (result) => ({ ok: true, result }),
    (err: unknown) => ({ ok: false, err }),
  );

/**
 * Ends a running command with its handler's outcome: done with the result, failed at once
 * with a permanent error, or thrown for a retry (a transient error, or shutdown).
 */
async function finish(deps: Deps, m: CommandMessage, outcome: Outcome, ctx: JobContext): Promise<void> {
  const t = m.tenant;
  if (!outcome.ok) {
    const permanent = permanentError(outcome.err);
    if (!permanent || ctx.signal.aborted) throw outcome.err;
    const failed = await failCommand(deps.db, t, m.command_id, permanent, deps.now());
    await publish(deps, failed.effects, ctx);
    ctx.logger.info({ code: permanent.code }, "command:failed");
    return;
  }
  ctx.signal.throwIfAborted();
  const done = await deps.writes.complete({
    tenant: t,
    commandId: m.command_id,
    result: outcome.result,
    now: deps.now(),
  });
  await publish(deps, done.effects, ctx);
}

/** The handler context of a command but for its report callbacks. */
function handlerContext(m: CommandMessage, full: TenantSettings | undefined, live: LiveProgress) {
  return {
    tenant: m.tenant,
    commandId: m.command_id,
    correlationId: m.correlation_id,
    ...assistantSettings(full),
    live: (p: Parameters<LiveProgress["push"]>[0]) => live.push(p),
  };
}

/** Publishes reports only (no notifications, no messages). */
function publishReports(deps: CommandJobDeps, ctx: JobContext, ...reports: PendingReport[]): Promise<void> {
  return publish(deps, { reports, notifications: [], messages: [] }, ctx);
}

/** {@link restateCommand} with this worker's duplicate window. */
function restate(deps: Deps, m: CommandMessage, row: CommandRow): Effects {
  return restateCommand(m, row, {
    now: deps.now(),
    duplicateWindowMs: deps.config.DUPLICATE_WINDOW_MS ?? 120_000,
  });
}

/** An approved ask's action: verify, run, record (module doc). */
async function handleApproved(deps: Deps, m: ApprovedActionMessage, ctx: JobContext): Promise<void> {
  const t = m.tenant;
  const start = await deps.db.transaction().execute((tx) => startExecution(tx, t, m.ask_id, deps.now()));
  if (start.kind === "settled") {
    await publish(deps, start.effects, ctx);
    return;
  }
  let result: unknown;
  const full = ASSISTANT_TYPES.has(start.action.type) ? await readSettings(deps.db, t) : undefined;
  const causality = { correlation_id: m.correlation_id, ask_id: m.ask_id };
  const live = liveOf(deps, t, m.command_id, causality);
  try {
    result = await runHandler(deps, start.action.type, start.action.params, ctx, {
      tenant: t,
      commandId: m.command_id,
      // Everything that follows a decision carries the decision's correlation id (LOCKED rule 4).
      correlationId: m.correlation_id,
      approval: { askId: m.ask_id, approvedBy: m.approved_by },
      ...assistantSettings(full),
      progress: async (stage, percent) => {
        await publish(
          deps,
          { reports: [askProgressPending(start.row, stage, percent, deps.now())], notifications: [], messages: [] },
          ctx,
        );
      },
      live: (p) => live.push(p),
      budgetWarning: async (w) => {
        await publish(
          deps,
          {
            reports: [budgetWarningPending(start.command, w, deps.now(), causality)],
            notifications: [],
            messages: [],
          },
          ctx,
        );
      },
    });
  } catch (err) {
    live.close();
    const permanent = permanentError(err);
    if (!permanent || ctx.signal.aborted) throw err;
    const failed = await deps.db.transaction().execute((tx) => failExecution(tx, t, m.ask_id, permanent, deps.now()));
    await publish(deps, failed.effects, ctx);
    return;
  }
  live.close();
  ctx.signal.throwIfAborted();
  const done = await deps.db.transaction().execute((tx) => completeExecution(tx, t, m.ask_id, result, deps.now()));
  await publish(deps, done.effects, ctx);
}

/**
 * Looks the handler up by type, parses the params with the registry's schema, and runs it.
 * @throws {HandlerError}-like permanent failures for an unknown type or params that do not fit
 *   (they cannot get better), and whatever the handler throws.
 */
async function runHandler(
  deps: Deps,
  type: string,
  rawParams: unknown,
  ctx: JobContext,
  c: Pick<
    HandlerContext,
    | "tenant"
    | "commandId"
    | "correlationId"
    | "progress"
    | "approval"
    | "live"
    | "budgetWarning"
    | "profile"
    | "persona"
  >,
): Promise<unknown> {
  const handler = (deps.handlers ?? HANDLERS).find((h) => h.type === type);
  if (!handler || !isCommandType(type)) throw permanent(apiError("HANDLER_FAILED", `No handler for ${type}`));
  const params = COMMAND_TYPES[type].params.safeParse(rawParams);
  if (!params.success)
    throw permanent(apiError("VALIDATION_FAILED", `params do not fit ${type}`, zodDetails(params.error, "params")));
  if (deps.config.FAULT_INJECT_HANDLER_DELAY_MS > 0) await sleep(deps.config.FAULT_INJECT_HANDLER_DELAY_MS, ctx.signal);
  if (deps.config.FAULT_INJECT_FAIL_TYPES?.includes(type))
    throw new Error(`fault injected: ${type} fails (FAULT_INJECT_FAIL_TYPES)`);
  return handler.handle(params.data, {
    logger: ctx.logger,
    signal: ctx.signal,
    now: deps.now,
    llm: deps.llm,
    connectors: { share: deps.share },
    ...c,
  });
}

function permanent(error: ApiError): HandlerError {
  return new HandlerError(error.code, error.message, false);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
