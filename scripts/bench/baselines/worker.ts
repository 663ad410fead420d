/**
 * Baseline "pipeline" worker: a durable pull consumer on the command stream. For each message:
 * parse the JSON, publish `{"report":{"type":"command.completed"},"causality":{"command_id":…}}`
 * to `<REPORT_PREFIX>.<org>.<project>` (awaiting the PubAck), then ack. Up to `CONCURRENCY`
 * messages at once (default 64, the command-worker's default `WORKER_CONCURRENCY`).
 * With `REPORTS=3` ("pipeline3") it publishes the contract's three reports of a command —
 * `command.accepted`, `command.started`, `command.completed` — pipelined in that order (as the
 * command-worker's quick path does), awaits their PubAcks, then acks.
 *
 * Environment: `NATS_URL`, `STREAM`, `CONSUMER` (durable, already created), `REPORT_PREFIX`,
 * `CONCURRENCY`, `REPORTS` (1 or 3). Prints `{"ready":true}` on stdout once it consumes.
 */
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

const reportPrefix = process.env.REPORT_PREFIX ?? "bench.rep";
const concurrency = Number(process.env.CONCURRENCY ?? 64);
const types =
  process.env.REPORTS === "3" ? ["command.accepted", "command.started", "command.completed"] : ["command.completed"];
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
      const cmd = m.json<{ command_id: string }>();
      const [, , org, project] = m.subject.split(".");
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
