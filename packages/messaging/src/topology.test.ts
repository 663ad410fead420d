/**
 * The topology on a real nats-server (the tests' 2.9 works as production's 2.11/2.12 does for
 * the fields used): byte limits and discard policies per stream, changed in place by
 * provisioning again; a full work stream refuses publishes (a 503, nothing stored) while a full
 * report stream drops its oldest; a missing work consumer is never re-created from the start of
 * a non-empty stream unless told where to start.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { CONSUMERS, STREAMS, subjects } from "@nexus/contracts";
import { natsForTest, TEST_TOPOLOGY, type TestNats, uniqueTenant } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "./connect.ts";
import { publishGuarded } from "./publish.ts";
import { ConsumerMissing, parseConsumerStart, provisionTopology, type TopologyOptions } from "./topology.ts";

let nats: TestNats;
let nc: NatsConnection;
const logger = pino({ level: "silent" });

beforeAll(async () => {
  nats = await natsForTest();
  nc = await connectNats({ url: nats.url, name: "topology-test", logger });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const SMALL: TopologyOptions = {
  ...TEST_TOPOLOGY,
  streamLimits: {
    commands: { maxBytes: 64 * 1024, discard: "new" },
    reports: { maxBytes: 64 * 1024, discard: "old" },
  },
};

describe("stream limits", () => {
  it("provisioning sets and changes max_bytes and discard in place; unnamed streams stay unlimited", async () => {
    const jsm = await jetstreamManager(nc);
    await provisionTopology(jsm, SMALL, logger);
    const cmds = await jsm.streams.info(STREAMS.commands);
    expect(cmds.config).toMatchObject({ max_bytes: 64 * 1024, discard: "new" });
    expect((await jsm.streams.info(STREAMS.dlq)).config.max_bytes).toBe(-1);
    await provisionTopology(
      jsm,
      { ...SMALL, streamLimits: { ...SMALL.streamLimits, commands: { maxBytes: 128 * 1024, discard: "old" } } },
      logger,
    );
    expect((await jsm.streams.info(STREAMS.commands)).config).toMatchObject({ max_bytes: 128 * 1024, discard: "old" });
    await provisionTopology(jsm, SMALL, logger);
  });

  it("a full work stream (discard new) refuses a command: nothing stored (503); a full report stream drops its oldest", async () => {
    const jsm = await jetstreamManager(nc);
    await provisionTopology(jsm, SMALL, logger);
    const js = jetstream(nc);
    const t = uniqueTenant("full");
    const body = "x".repeat(8 * 1024);
    const outcomes: string[] = [];
    for (let i = 0; i < 12; i++) {
      const id = randomUUID();
      const out = await publishGuarded(js, subjects.command(t, id), body, {
        tenant: t,
        msgId: `${t.org_id}.${t.project_id}.${id}`,
        correlationId: "c",
      });
      outcomes.push(out.kind);
    }
    expect(outcomes.slice(0, 5)).toEqual(["stored", "stored", "stored", "stored", "stored"]);
    expect(outcomes.at(-1)).toBe("refused"); // JetStream answered "maximum bytes exceeded"
    const info = await jsm.streams.info(STREAMS.commands);
    expect(info.state.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(info.state.first_seq).toBe(1); // nothing old was dropped to make room

    for (let i = 0; i < 12; i++)
      await js.publish(subjects.report(t), body, { msgID: `${t.org_id}.${t.project_id}.r${i}` });
    const reports = await jsm.streams.info(STREAMS.reports);
    expect(reports.state.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(reports.state.first_seq).toBeGreaterThan(1); // the oldest went
  });
});

describe("a missing work consumer", () => {
  it("is refused on a non-empty stream by default, and created where told (new, seq, time); never from the start silently", async () => {
    const jsm = await jetstreamManager(nc);
    await provisionTopology(jsm, { ...TEST_TOPOLOGY, streamLimits: {} }, logger);
    const t = uniqueTenant("cons");
    const js = jetstream(nc);
    await js.publish(subjects.command(t, randomUUID()), "{}");
    const last = (await jsm.streams.info(STREAMS.commands)).state.last_seq;

    await jsm.consumers.delete(STREAMS.commands, CONSUMERS.commandWorker);
    const err = await provisionTopology(jsm, TEST_TOPOLOGY, logger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsumerMissing);
    expect((err as Error).message).toMatch(/PROVISION_CONSUMER_START/);
    await expect(jsm.consumers.info(STREAMS.commands, CONSUMERS.commandWorker)).rejects.toThrow();

    await provisionTopology(jsm, { ...TEST_TOPOLOGY, missingConsumerStart: { seq: last } }, logger);
    const c = await jsm.consumers.info(STREAMS.commands, CONSUMERS.commandWorker);
    expect(c.config).toMatchObject({ deliver_policy: "by_start_sequence", opt_start_seq: last });
    expect(c.num_pending).toBe(1);

    await jsm.consumers.delete(STREAMS.commands, CONSUMERS.commandWorker);
    await provisionTopology(jsm, { ...TEST_TOPOLOGY, missingConsumerStart: "new" }, logger);
    expect((await jsm.consumers.info(STREAMS.commands, CONSUMERS.commandWorker)).num_pending).toBe(0);
    // Present: provisioning again leaves it alone.
    await provisionTopology(jsm, TEST_TOPOLOGY, logger);
  });

  it("PROVISION_CONSUMER_START parses refuse, new, all, seq:<n>, time:<ISO 8601>", () => {
    expect(parseConsumerStart("refuse")).toBe("refuse");
    expect(parseConsumerStart("new")).toBe("new");
    expect(parseConsumerStart("all")).toBe("all");
    expect(parseConsumerStart("seq:42")).toEqual({ seq: 42 });
    expect(parseConsumerStart("time:2026-02-03T09:00:00Z")).toEqual({ time: "2026-02-03T09:00:00.000Z" });
    expect(() => parseConsumerStart("time:yesterday")).toThrow();
    expect(() => parseConsumerStart("start")).toThrow();
  });
});
