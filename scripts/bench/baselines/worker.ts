/**
 * Baseline "pipeline" worker: a durable pull consumer on the command stream. For each message:
 * parse the JSON, publish `{"report":{"type":"command.completed"},"causality":{"command_id":…}}`
 * to `<REPORT_PREFIX>.<org>.<project>` (awaiting the PubAck), then ack. Up to `CONCURRENCY`
 * messages at once (default 64, the command-worker's default `WORKER_CONCURRENCY`).
 * With `REPORTS=3` ("pipeline3") it publishes the contract's three reports of a command —
 * `command.accepted`, `command.started`, `command.completed` — pipelined in that order (as the
 * command-worker's quick path does), awaits their PubAcks, then acks.
 *
 * With `DATABASE_URL` ("pipelineDurable") it first records the command in Postgres, as the
 * least a worker that owns the command rows must do: one row per command (tenant, id, type,
 * status, the message as `jsonb`) in table `bench_commands`, `on conflict do nothing` (a
 * redelivered command is recorded once), written by the command-worker's own group commit
 * (`groupCommit` of `@nexus/core`, the same 4 ms linger as `GROUP_COMMIT_LINGER_MS`), so
 * concurrent commands share one multi-row insert and one commit. The reports go out after
 * the row is committed, the message is acked after their PubAcks.
 *
 * Environment: `NATS_URL`, `STREAM`, `CONSUMER` (durable, already created), `REPORT_PREFIX`,
 * `CONCURRENCY`, `REPORTS` (1 or 3), `DATABASE_URL` (optional). Prints `{"ready":true}` on
 * stdout once it consumes.
 */
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { groupCommit } from "@nexus/core";
import pg from "pg";

const reportPrefix = process.env.REPORT_PREFIX ?? "bench.rep";
const concurrency = Number(process.env.CONCURRENCY ?? 64);
const types =
  process.env.REPORTS === "3" ? ["command.accepted", "command.started", "command.completed"] : ["command.completed"];
/** One command row of `bench_commands`. */
interface CommandRow {
  org: string;
  project: string;
  commandId: string;
  type: string;
  body: string;
}

async function commandRecorder(url: string): Promise<(row: CommandRow) => Promise<void>> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  await pool.query(
    `create table if not exists bench_commands (
       org_id text not null, project_id text not null, command_id uuid not null,
       type text not null, status text not null, body jsonb not null,
       created_at timestamptz not null default now(),
       primary key (org_id, project_id, command_id))`,
  );
  return groupCommit(
    async (rows: readonly CommandRow[]) => {
      await pool.query(
        `insert into bench_commands (org_id, project_id, command_id, type, status, body)
         select o, p, c, t, 'done', b from unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[]) as u(o, p, c, t, b)
         on conflict do nothing`,
        [
          rows.map((r) => r.org),
          rows.map((r) => r.project),
          rows.map((r) => r.commandId),
          rows.map((r) => r.type),
          rows.map((r) => r.body),
        ],
      );
      return rows.map(() => undefined);
    },
    { lingerMs: 4 },
  );
}

const record = process.env.DATABASE_URL ? await commandRecorder(process.env.DATABASE_URL) : undefined;
const nc = await connect({ servers: process.env.NATS_URL, noAsyncTraces: true, name: "bench-worker" });
const js = jetstream(nc);
const consumer = await js.consumers.get(process.env.STREAM ?? "BENCH_CMD", process.env.CONSUMER ?? "bench-worker");
const messages = await consumer.consume({ max_messages: concurrency * 2 });
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on("SIGTERM", () => void nc.drain().then(() => process.exit(0)));

let inFlight = 0;
let slotFreed: (() => void) | undefined;
for await (const m of messages) {
  while (inFlight >= concurrency)
    await new Promise<void>((r) => {
      slotFreed = r;
    });
  inFlight++;
  void (async () => {
    try {
      const body = m.string();
      const cmd = JSON.parse(body) as { command_id: string; type: string };
      const [, , org = "", project = ""] = m.subject.split(".");
      await record?.({ org, project, commandId: cmd.command_id, type: cmd.type, body });
      const subject = `${reportPrefix}.${org}.${project}`;
      await Promise.all(
        types.map((type) =>
          js.publish(subject, JSON.stringify({ report: { type }, causality: { command_id: cmd.command_id } })),
        ),
      );
      m.ack();
    } catch {
      m.nak();
    } finally {
      inFlight--;
      const f = slotFreed;
      slotFreed = undefined;
      f?.();
    }
  })();
}
