/**
 * Baseline "pipelineDurable" archiver: the least an archive of reports must do. A durable pull
 * consumer on the report stream; its messages are gathered for up to `LINGER_MS` (default 100,
 * as our archiver's `ARCHIVER_LINGER_MS`) or `BATCH` messages (default 1000, as its
 * `ARCHIVER_BATCH_SIZE`), written to Postgres as one multi-row insert into `bench_reports`
 * (report id = the stream sequence, tenant from the subject's last two tokens, the report's
 * type and its JSON exactly as published, `on conflict do nothing`), and acked once it is
 * committed. One insert at a time. No hash chain, no purge marks, no head rows: ours does all
 * of that on top.
 *
 * Environment: `NATS_URL`, `STREAM`, `CONSUMER` (durable, already created), `DATABASE_URL`,
 * `LINGER_MS`, `BATCH`. Prints `{"ready":true}` on stdout once it consumes.
 */
import { type JsMsg, jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";

const lingerMs = Number(process.env.LINGER_MS ?? 100);
const maxBatch = Number(process.env.BATCH ?? 1000);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
await pool.query(
  `create table if not exists bench_reports (
     report_id bigint primary key, org_id text not null, project_id text not null,
     type text not null, payload text not null, archived_at timestamptz not null default now())`,
);
const nc = await connect({ servers: process.env.NATS_URL, noAsyncTraces: true, name: "bench-archiver" });
const js = jetstream(nc);
const consumer = await js.consumers.get(process.env.STREAM ?? "BENCH_REPD", process.env.CONSUMER ?? "bench-archiver");
const messages = await consumer.consume({ max_messages: maxBatch * 2 });
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on("SIGTERM", () => void nc.drain().then(() => process.exit(0)));

let batch: JsMsg[] = [];
let timer: NodeJS.Timeout | undefined;
let writing: Promise<void> = Promise.resolve();

/** Hands the gathered messages to the (serialised) insert. */
function flush(): void {
  clearTimeout(timer);
  timer = undefined;
  const ms = batch;
  batch = [];
  if (ms.length === 0) return;
  writing = writing.then(() => write(ms));
}

async function write(ms: readonly JsMsg[]): Promise<void> {
  try {
    const ids: number[] = [];
    const orgs: string[] = [];
    const projects: string[] = [];
    const types: string[] = [];
    const payloads: string[] = [];
    for (const m of ms) {
      const tokens = m.subject.split(".");
      const payload = m.string();
      ids.push(m.seq);
      orgs.push(tokens[tokens.length - 2] ?? "");
      projects.push(tokens[tokens.length - 1] ?? "");
      types.push((JSON.parse(payload) as { report: { type: string } }).report.type);
      payloads.push(payload);
    }
    await pool.query(
      `insert into bench_reports (report_id, org_id, project_id, type, payload)
       select * from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
       on conflict do nothing`,
      [ids, orgs, projects, types, payloads],
    );
    for (const m of ms) m.ack();
  } catch {
    for (const m of ms) m.nak();
  }
}

for await (const m of messages) {
  batch.push(m);
  if (batch.length >= maxBatch) flush();
  else timer ??= setTimeout(flush, lingerMs);
}
