/**
 * Dead-letter operations for admins (role `admin`), scoped to the request's tenant like every
 * other route: another tenant's dead letter is indistinguishable from one that does not exist.
 *
 * - `GET /admin/dead-letters?source=&code=&before=&limit=` — newest first, `next_before` pages on;
 * - `GET /admin/dead-letters/{id}` — one, with the original `payload`;
 * - `POST /admin/dead-letters/{id}/requeue` — 202 once its requeue is stored in JetStream: the
 *   worker runs it again (after a failed command's retries: once per dead letter), then the dead
 *   letter is removed; 409 `DEAD_LETTER_NOT_REQUEUEABLE` for what cannot run again (a reused
 *   command id, a failed approved action); 503 nothing stored; 504 it may be requeued (repeat:
 *   a requeue of the same dead letter runs at most once);
 * - `DELETE /admin/dead-letters/{id}` — 204.
 *
 * The id is the dead letter's sequence in NEXUS_DLQ. `pnpm dlq` (the `nexus` CLI) calls these.
 */
import { DeadLetter, subjects, Tenant } from "@nexus/contracts";
import { AcceptUnconfirmed, AppError, DependencyUnavailable } from "@nexus/core";
import { type App, bindRequestLog } from "@nexus/http";
import { NotRequeueable, publishRequeue, requeueTarget, type StoredDeadLetter } from "@nexus/messaging";
import { Counter } from "prom-client";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { AUTH_ERRORS, errorResponses, TENANT_SECURITY, WRITE_ERRORS } from "../openapi.ts";

/** One dead letter in a listing (the fields of `DeadLetter` without its payload). */
export const DeadLetterSummary = z.object({
  id: z.string().describe("Sequence in NEXUS_DLQ"),
  source: z.enum(["cmd", "approval"]).nullable().describe("The worker that dead-lettered it"),
  tenant: Tenant.nullable(),
  reason: DeadLetter.shape.reason,
  code: z.string().optional().describe("Failure code (an error code such as RETRIES_EXHAUSTED)"),
  disposition: DeadLetter.shape.disposition,
  error: z.string(),
  stream: z.string().describe("The stream of the original message"),
  subject: z.string().describe("The subject of the original message"),
  stream_seq: z.number().int(),
  deliveries: z.number().int(),
  ts: z.string().describe("ISO 8601, when it was dead-lettered"),
});

/** One dead letter with the original message body (`payload`, UTF-8 text as it was stored). */
export const DeadLetterDetail = DeadLetterSummary.extend({ payload: z.string() });

const DeadLetterPage = z.object({
  dead_letters: z.array(DeadLetterSummary),
  next_before: z.string().nullable().describe("`before` of the next (older) page; null at the end"),
});

const Requeued = z.object({
  accepted: z.literal(true),
  id: z.string(),
  requeue_subject: z.string().describe("Where the requeue was stored; the worker consumes it"),
  removed: z.boolean().describe("Whether the dead letter was removed after the requeue was stored"),
});

const IdParams = z.object({ id: z.string() });

const summary = (s: StoredDeadLetter) => ({
  id: String(s.seq),
  source: s.source,
  tenant: s.tenant,
  reason: s.letter.reason,
  ...(s.letter.code ? { code: s.letter.code } : {}),
  ...(s.letter.disposition ? { disposition: s.letter.disposition } : {}),
  error: s.letter.error,
  stream: s.letter.stream,
  subject: s.letter.subject,
  stream_seq: s.letter.stream_seq,
  deliveries: s.letter.deliveries,
  ts: s.letter.ts,
});

/** The admin dead-letter routes (see the module doc). */
export function deadLetterRoutes(app: App, deps: GatewayDeps): void {
  const operations = new Counter({
    name: "nexus_dead_letter_operations_total",
    help: "Admin operations on dead letters, by operation (requeue, drop) and outcome",
    labelNames: ["operation", "outcome"],
    registers: [deps.metrics],
  });
  const admin = { tenant: true, roles: ["admin" as const] };

  /** The tenant's dead letter `id`, or 404. */
  const find = async (tenant: Tenant, id: string): Promise<StoredDeadLetter> => {
    if (!/^[1-9][0-9]{0,15}$/.test(id)) throw new AppError("NOT_FOUND", "No such dead letter");
    let s: StoredDeadLetter | null;
    try {
      s = await deps.deadLetters.read(Number(id));
    } catch (err) {
      throw new DependencyUnavailable("nats", err, "read");
    }
    if (!s || s.tenant?.org_id !== tenant.org_id || s.tenant?.project_id !== tenant.project_id)
      throw new AppError("NOT_FOUND", "No such dead letter");
    return s;
  };

  app.get(
    "/admin/dead-letters",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        operationId: "listDeadLetters",
        security: TENANT_SECURITY,
        summary: "The tenant's dead letters, newest first (filter by source and failure code)",
        querystring: z.object({
          source: z.enum(["cmd", "approval"]).optional(),
          code: z
            .string()
            .regex(/^[A-Z][A-Z0-9_]{0,63}$/)
            .optional(),
          before: z
            .string()
            .regex(/^[1-9][0-9]{0,15}$/)
            .optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(50),
        }),
        response: { 200: DeadLetterPage, ...errorResponses(...AUTH_ERRORS, 503) },
      },
    },
    async (req) => {
      const q = req.query;
      try {
        const page = await deps.deadLetters.list({
          tenant: req.tenant,
          limit: q.limit,
          ...(q.source ? { source: q.source } : {}),
          ...(q.code ? { code: q.code } : {}),
          ...(q.before ? { before: Number(q.before) } : {}),
        });
        return {
          dead_letters: page.items.map(summary),
          next_before: page.nextBefore === null ? null : String(page.nextBefore),
        };
      } catch (err) {
        throw new DependencyUnavailable("nats", err, "read");
      }
    },
  );

  app.get(
    "/admin/dead-letters/:id",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        operationId: "getDeadLetter",
        security: TENANT_SECURITY,
        summary: "One dead letter with the original message body",
        params: IdParams,
        response: { 200: DeadLetterDetail, ...errorResponses(...AUTH_ERRORS, 404, 503) },
      },
    },
    async (req) => {
      const s = await find(req.tenant, req.params.id);
      return { ...summary(s), payload: s.letter.payload };
    },
  );

  app.post(
    "/admin/dead-letters/:id/requeue",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        operationId: "requeueDeadLetter",
        security: TENANT_SECURITY,
        summary: "Send a dead letter back to its worker; answers 202 once the requeue is stored",
        params: IdParams,
        response: { 202: Requeued, ...errorResponses(...AUTH_ERRORS, 404, 409, ...WRITE_ERRORS) },
      },
    },
    async (req, reply) => {
      const s = await find(req.tenant, req.params.id);
      bindRequestLog(req, { dlq_seq: req.params.id });
      let target: ReturnType<typeof requeueTarget>;
      try {
        target = requeueTarget(s.letter);
      } catch (err) {
        if (err instanceof NotRequeueable) {
          operations.inc({ operation: "requeue", outcome: "refused" });
          throw new AppError("DEAD_LETTER_NOT_REQUEUEABLE", err.message);
        }
        throw err;
      }
      const out = await publishRequeue(deps.js, {
        dlqSeq: s.seq,
        target,
        requestedBy: req.principal,
        now: deps.now(),
        generation: 0,
        correlationId: req.correlationId ?? `dlq-${s.seq}`,
        traceparent: req.traceparent,
        timeoutMs: deps.config.PUBLISH_TIMEOUT_MS,
        connected: deps.natsConnected,
      });
      if (out.kind === "refused" || out.kind === "conflict") {
        operations.inc({ operation: "requeue", outcome: "unavailable" });
        throw new DependencyUnavailable("nats", out.cause, "publish");
      }
      if (out.kind === "unconfirmed") {
        operations.inc({ operation: "requeue", outcome: "unconfirmed" });
        throw new AcceptUnconfirmed("nats", out.cause, "publish");
      }
      // The requeue is stored: the dead letter has done its job. Its removal may fail (it is
      // then listed still; requeueing it again runs nothing twice).
      const removed = await deps.deadLetters.drop(s.seq).catch((err) => {
        req.log.warn({ err }, "dead-letter:remove-after-requeue-failed");
        return false;
      });
      operations.inc({ operation: "requeue", outcome: "ok" });
      req.log.info({ subject: target.subject, by: req.principal }, "dead-letter:requeued");
      return reply.code(202).send({
        accepted: true,
        id: String(s.seq),
        requeue_subject: subjects.requeue(target.source, target.tenant, target.id),
        removed,
      });
    },
  );

  app.delete(
    "/admin/dead-letters/:id",
    {
      config: admin,
      schema: {
        tags: ["admin"],
        operationId: "dropDeadLetter",
        security: TENANT_SECURITY,
        summary: "Drop a dead letter (it is not run)",
        params: IdParams,
        response: { 204: z.null().describe("Dropped"), ...errorResponses(...AUTH_ERRORS, 404, 503) },
      },
    },
    async (req, reply) => {
      const s = await find(req.tenant, req.params.id);
      let dropped: boolean;
      try {
        dropped = await deps.deadLetters.drop(s.seq);
      } catch (err) {
        throw new DependencyUnavailable("nats", err, "drop");
      }
      if (!dropped) throw new AppError("NOT_FOUND", "No such dead letter");
      operations.inc({ operation: "drop", outcome: "ok" });
      req.log.info({ dlq_seq: req.params.id, by: req.principal, code: s.letter.code }, "dead-letter:dropped");
      return reply.code(204).send(null);
    },
  );
}
