/**
 * The report archive (docs/archive.md), on a rig of its own (nats-server, Postgres, and only the
 * service measured):
 *
 * 1. Archiver throughput from a pre-filled stream: `--archive-reports` + 1 reports of one tenant
 *    and a tenth as many of each of 7 more, interleaved, published with the archiver stopped
 *    (retention large enough to keep them all); then the archiver starts and the bench reads
 *    its durable consumer every 50 ms: reports/s from the first acknowledged batch to the last
 *    report. Target: at least 2 × the highest sustainable command rate of the max scenario ×
 *    the reports each command makes (3 for the bench's command: accepted, started, completed).
 * 2. Replay from the archive to one SSE client: retention shrinks to 2,000 per tenant (the
 *    older reports leave JetStream at once), the stream service starts, and one client resumes
 *    from the big tenant's first report: `--archive-reports` reports old, all but the newest
 *    2,000 served from the archive. Reports/s from the first report to the last (target ≥
 *    50,000), and the check that every report arrived exactly once, in order (ids compared one
 *    by one with what was published).
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { request } from "undici";
import { cpuDelta, sampleCpu } from "../cpu.ts";
import { int, ms, table } from "../format.ts";
import { type Check, registerScenario } from "../scenario.ts";
import { createLogger, type Rig, startRig } from "../stack.ts";
import type { MaxResult } from "./max.ts";

/** Reports one bench command makes on the stream (command.accepted, command.started, command.completed). */
const REPORTS_PER_COMMAND = 3;
/** Retention while pre-filling, and after (what JetStream keeps per tenant during the replay). */
const KEEP_WHILE_FILLING = 1_000_000;
const KEEP_AFTER = 2000;
const OTHER_TENANTS = 7;

/** Results of the archive scenario. */
export interface ArchiveResult {
  /** Reports of the replayed tenant after its cursor. */
  cursorAge: number;
  /** Reports pre-filled in all (every tenant). */
  prefilled: number;
  prefillPerSecond: number;
  archiver: {
    reports: number;
    seconds: number;
    reportsPerSecond: number;
    /** CPU per 1,000 reports archived, ms, per process. */
    cpuMsPerKReports: Record<string, number>;
    /** Rows in the archive and rows not chained at the end (want: all, 0). */
    rows: number;
    unchained: number;
  };
  replay: {
    reports: number;
    /** Open to the first report, ms. */
    firstReportMs: number;
    seconds: number;
    reportsPerSecond: number;
    exactlyOnce: boolean;
    /** What went wrong, when it did. */
    problem?: string;
    cpuMsPerKReports: Record<string, number>;
  };
  /** The highest sustainable command rate of ours (max scenario), when it ran. */
  highestCommandRate?: number;
}

/** `--profile`: the rig's services write V8 CPU profiles to `<logDir>/profiles-archive/`. */
function profiling(on: boolean, logDir: string, service: string): Record<string, string> {
  return on
    ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${logDir}/profiles-archive --cpu-prof-name=${service}.cpuprofile` }
    : {};
}

function perK(cpu: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, n > 0 ? (v / n) * 1000 : Number.NaN]));
}

/** A `command.completed` report of the size the bench's command makes. */
function completedReport(tenant: { org_id: string; project_id: string }, i: number) {
  const commandId = randomUUID();
  return {
    msgId: `${tenant.org_id}.${tenant.project_id}.${commandId}:completed`,
    body: JSON.stringify({
      report: {
        type: "command.completed",
        status: "done",
        title: "Prep pack ready",
        command: { command_id: commandId, type: "prep_pack.create" },
        risk_level: "GREEN",
        result: {
          checklist: ["Confirm attendees: Kim", "Share the agenda: News", `Item ${i}`],
          summary: "Sync with Kim: 1 agenda item, no documents.",
        },
      },
      causality: { correlation_id: `c-${i}`, command_id: commandId },
      tenant,
      ts: new Date().toISOString(),
    }),
  };
}

/**
 * Publishes the pre-fill: `big + 1` reports of tenant 0 and `big / 10` of each other tenant,
 * interleaved, 512 in flight. @returns tenant 0's report_ids in order, and the total.
 */
async function prefill(natsUrl: string, big: number): Promise<{ ids: number[]; total: number; seconds: number }> {
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  try {
    const js = jetstream(nc);
    const tenants = Array.from({ length: OTHER_TENANTS + 1 }, (_, i) => ({ org_id: `archive-${i}`, project_id: "p" }));
    const plan: number[] = [];
    const small = Math.floor(big / 10);
    for (let i = 0; i <= big; i++) {
      plan.push(0);
      if (i % 10 === 0)
        for (let t = 1; t <= OTHER_TENANTS && plan.length < big + 1 + small * OTHER_TENANTS; t++) plan.push(t);
    }
    const ids: number[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 512 }, async () => {
        for (;;) {
          const i = next++;
          if (i >= plan.length) return;
          const t = tenants[plan[i] as number] as (typeof tenants)[number];
          const r = completedReport(t, i);
          const ack = await js.publish(`nexus.report.${t.org_id}.${t.project_id}`, r.body, { msgID: r.msgId });
          if (plan[i] === 0) ids.push(ack.seq);
        }
      }),
    );
    ids.sort((a, b) => a - b);
    return { ids, total: plan.length, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await nc.close();
  }
}

/**
 * Reads one SSE connection until `expected` report ids arrived (or 120 s passed), checking each
 * `id:` against `expected` in order without parsing the JSON (the client must not be the
 * bottleneck). @returns timings and the first mismatch, if any.
 */
async function replayOnce(
  url: string,
  headers: Record<string, string>,
  cursor: number,
  expected: readonly number[],
): Promise<{ firstMs: number; lastMs: number; got: number; problem?: string }> {
  const ac = new AbortController();
  const t0 = performance.now();
  const res = await request(url, {
    headers: { accept: "text/event-stream", "last-event-id": String(cursor), ...headers },
    signal: ac.signal,
    bodyTimeout: 0,
  });
  if (res.statusCode !== 200) throw new Error(`stream answered ${res.statusCode}`);
  let buf = "";
  let got = 0;
  let firstMs = 0;
  let lastMs = 0;
  let problem: string | undefined;
  const deadline = setTimeout(() => ac.abort(), 120_000);
  try {
    for await (const chunk of res.body) {
      buf += (chunk as Buffer).toString("utf8");
      let end = buf.indexOf("\n\n");
      while (end >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        end = buf.indexOf("\n\n");
        if (frame.startsWith("event: error") || frame.startsWith("event: snapshot")) {
          problem = `got ${frame.slice(0, 40)}… instead of a replay`;
          break;
        }
        if (!frame.startsWith("event: report")) continue;
        const idAt = frame.indexOf("\nid: ");
        const id = Number(frame.slice(idAt + 5, frame.indexOf("\n", idAt + 5)));
        if (got === 0) firstMs = performance.now() - t0;
        if (id !== expected[got]) {
          problem = `report ${got + 1}: id ${id}, expected ${expected[got]}`;
          break;
        }
        got++;
        if (got === expected.length) {
          lastMs = performance.now() - t0;
          break;
        }
      }
      if (problem || got === expected.length) break;
    }
  } catch (err) {
    if (!problem && got < expected.length) problem = `connection ended after ${got} reports: ${(err as Error).message}`;
  } finally {
    clearTimeout(deadline);
    ac.abort();
  }
  if (!problem && got < expected.length) problem = `only ${got} of ${expected.length} reports`;
  return { firstMs, lastMs, got, ...(problem ? { problem } : {}) };
}

export const archiveScenario = registerScenario<ArchiveResult>({
  id: "archive",
  title: "Report archive: archiver throughput, replay from the archive",
  async run(ctx) {
    const big = ctx.options.archiveReports;
    ctx.log(`archive: starting a rig (nats-server, Postgres) for ${int(big)} reports`);
    const rig: Rig = await startRig({
      workDir: ctx.workDir,
      logDir: ctx.logDir,
      env: { STREAM_EVENT_KEEP: String(KEEP_WHILE_FILLING), LOG_LEVEL: ctx.options.logLevel },
      logger: createLogger({ service: "bench", level: "warn" }),
    });
    ctx.cleanup.add("archive rig", () => rig.close());
    try {
      const filled = await prefill(rig.natsUrl, big);
      ctx.log(`archive: pre-filled ${int(filled.total)} reports in ${filled.seconds.toFixed(1)} s`);

      // 1. Archiver throughput.
      const nc = await connect({ servers: rig.natsUrl, noAsyncTraces: true });
      const jsm = await jetstreamManager(nc);
      const last = (await jsm.streams.info("NEXUS_REPORTS")).state.last_seq;
      await rig.start("archiver", {
        ARCHIVER_LAG_POLL_MS: "1000",
        ...profiling(ctx.options.profile, ctx.logDir, "archiver"),
      });
      let t0 = 0;
      let floor0 = 0;
      let cpu0: Record<string, number> = {};
      let t1 = 0;
      let cpu1: Record<string, number> = {};
      const deadline = Date.now() + 600_000;
      while (Date.now() < deadline) {
        const floor = (await jsm.consumers.info("NEXUS_REPORTS", "archiver")).ack_floor.stream_seq;
        const now = performance.now();
        if (t0 === 0 && floor > 0) {
          t0 = now;
          floor0 = floor;
          cpu0 = sampleCpu(rig.pids());
        }
        if (floor >= last) {
          t1 = now;
          cpu1 = sampleCpu(rig.pids());
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      if (t1 === 0) throw new Error("the archiver did not catch up within 10 minutes");
      const archived = last - floor0;
      const seconds = (t1 - t0) / 1000;
      const db = new pg.Client({ connectionString: rig.databaseUrl });
      await db.connect();
      const counts = await db.query<{ rows: string; unchained: string }>(
        "select count(*) as rows, count(*) filter (where hash is null) as unchained from agent_report_events",
      );
      // An archive this size in production was vacuumed and analysed long ago; a freshly loaded
      // one would be, by autovacuum, in the middle of the replay window and skew it.
      await db.query("vacuum (analyze) agent_report_events");
      await db.query("checkpoint"); // and its dirty pages written before, not during, the replay
      await db.end();
      ctx.log(`archive: archiver ${int(archived / seconds)} reports/s (${int(archived)} in ${seconds.toFixed(1)} s)`);
      await rig.stop("archiver");

      // 2. Replay from the archive to one client.
      const info = await jsm.streams.info("NEXUS_REPORTS");
      await jsm.streams.update("NEXUS_REPORTS", { ...info.config, max_msgs_per_subject: KEEP_AFTER });
      await nc.close();
      const stream = await rig.start("stream", {
        SSE_HEARTBEAT_MS: "60000",
        ...profiling(ctx.options.profile, ctx.logDir, "stream"),
      });
      const cursor = filled.ids[0] as number;
      const expected = filled.ids.slice(1);
      ctx.log(`archive: replaying ${int(expected.length)} reports to one client from the archive`);
      const c0 = sampleCpu(rig.pids());
      const self0 = process.cpuUsage();
      const r = await replayOnce(
        `http://127.0.0.1:${stream.port}/agent/reports/stream`,
        { "x-org-id": "archive-0", "x-project-id": "p" },
        cursor,
        expected,
      );
      const self = process.cpuUsage(self0);
      const c1 = sampleCpu(rig.pids());
      await rig.stop("stream");
      const replaySeconds = (r.lastMs - r.firstMs) / 1000;
      const rate = r.problem ? Number.NaN : (expected.length - 1) / replaySeconds;
      ctx.log(`archive: replay ${r.problem ?? `${int(rate)} reports/s`}`);
      const max = ctx.results.max as MaxResult | undefined;
      return {
        cursorAge: expected.length,
        prefilled: filled.total,
        prefillPerSecond: filled.total / filled.seconds,
        archiver: {
          reports: archived,
          seconds,
          reportsPerSecond: archived / seconds,
          cpuMsPerKReports: perK(cpuDelta(cpu0, cpu1), archived),
          rows: Number(counts.rows[0]?.rows ?? 0),
          unchained: Number(counts.rows[0]?.unchained ?? 0),
        },
        replay: {
          reports: r.got,
          firstReportMs: r.firstMs,
          seconds: replaySeconds,
          reportsPerSecond: rate,
          exactlyOnce: !r.problem && r.got === expected.length,
          ...(r.problem ? { problem: r.problem } : {}),
          cpuMsPerKReports: perK({ ...cpuDelta(c0, c1), "load-generator": (self.user + self.system) / 1000 }, r.got),
        },
        ...(max?.ours ? { highestCommandRate: max.ours.highest } : {}),
      };
    } finally {
      await rig.close();
    }
  },
  render(res) {
    const cpu = (m: Record<string, number>) =>
      Object.entries(m)
        .filter(([, v]) => Number.isFinite(v) && v > 0)
        .map(([k, v]) => `${k} ${ms(v)}`)
        .join(", ");
    const needed = res.highestCommandRate ? 2 * res.highestCommandRate * REPORTS_PER_COMMAND : undefined;
    return [
      `## Report archive — ${int(res.prefilled)} reports pre-filled (${int(res.prefillPerSecond)}/s), 8 tenants; one replayed from ${int(res.cursorAge)} reports back`,
      "",
      table(
        ["measure", "reports", "seconds", "reports/s", "CPU ms per 1,000 reports"],
        [
          [
            "archiver, from a pre-filled stream",
            int(res.archiver.reports),
            res.archiver.seconds.toFixed(2),
            int(res.archiver.reportsPerSecond),
            cpu(res.archiver.cpuMsPerKReports),
          ],
          [
            "replay from the archive, one SSE client",
            int(res.replay.reports),
            res.replay.seconds.toFixed(2),
            int(res.replay.reportsPerSecond),
            cpu(res.replay.cpuMsPerKReports),
          ],
        ],
        ["left", "right", "right", "right", "left"],
      ),
      "",
      `archive after the run: ${int(res.archiver.rows)} rows, ${int(res.archiver.unchained)} unchained; replay: first report after ${ms(res.replay.firstReportMs)} ms, ${res.replay.exactlyOnce ? "every report exactly once, in order" : `FAILED: ${res.replay.problem}`}.`,
      needed
        ? `Needed archiver rate: 2 × ${int(res.highestCommandRate)} commands/s (max scenario) × ${REPORTS_PER_COMMAND} reports = ${int(needed)} reports/s.`
        : "Needed archiver rate: n/a (the max scenario did not run; run without --only, or with --only max,archive).",
    ].join("\n");
  },
  checks(res): Check[] {
    const needed = res.highestCommandRate ? 2 * res.highestCommandRate * REPORTS_PER_COMMAND : undefined;
    return [
      {
        name: "archive: archiver ≥ 2 × highest command rate × 3 reports",
        value: `${int(res.archiver.reportsPerSecond)}/s`,
        threshold: needed ? `≥ ${int(needed)}/s` : "n/a",
        pass: needed ? res.archiver.reportsPerSecond >= needed && res.archiver.unchained === 0 : undefined,
      },
      {
        name: "archive: replay from the archive to one SSE client",
        value: `${int(res.replay.reportsPerSecond)}/s`,
        threshold: "≥ 50,000/s",
        pass: res.replay.exactlyOnce ? res.replay.reportsPerSecond >= 50_000 : false,
      },
      {
        name: `archive: a cursor ${int(res.cursorAge)} reports old sees every report exactly once`,
        value: res.replay.exactlyOnce ? "yes" : "no",
        threshold: "yes",
        pass: res.replay.exactlyOnce,
      },
    ];
  },
});
