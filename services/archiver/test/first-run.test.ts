/**
 * A tenant first seen inside a run that began at the stream's first sequence needs no proof
 * from JetStream: the run saw every report ever published. Before this was so, a new tenant
 * that published more than STREAM_EVENT_KEEP reports before the archiver proved its first
 * batch lost its "from the beginning" coverage (complete_after moved up to its first report)
 * although the archiver had received and archived every one of them, and a console resuming
 * from cursor 0 got CURSOR_EXPIRED and a snapshot.
 */
import { jetstream } from "@nats-io/jetstream";
import { archiveCovers, chainHead } from "@nexus/core";
import { connectNats } from "@nexus/messaging";
import { createTestDatabase, natsForTest, type TestDatabase, type TestNats, uniqueTenant } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { archivedRows, key, publishInterleaved, startArchiverHarness, waitArchived } from "./helpers.ts";

const KEEP = 10;
let nats: TestNats;
let tdb: TestDatabase;

beforeAll(async () => {
  nats = await natsForTest({ streamEventKeep: KEEP, consumerAckWaitMs: 5000 });
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

it("a new tenant that bursts past retention inside a run from sequence 1 keeps its coverage from its first report", async (ctx) => {
  // The run must begin at sequence 1: only a server of this file's own starts its stream there.
  if (!nats.own) ctx.skip();
  const first = uniqueTenant("first");
  const burst = uniqueTenant("burst");
  // A long linger holds the whole burst in one batch, so the proof is asked after JetStream
  // already evicted the burst's first reports (they were handed over while pending).
  const a = await startArchiverHarness({ nats, db: tdb.db, env: { ARCHIVER_LINGER_MS: "1500" } });
  const pub = await connectNats({ url: nats.url, name: "publisher", logger: pino({ level: "silent" }) });
  try {
    const one = (await publishInterleaved(jetstream(pub), [first], 1)).get(key(first)) as number[];
    expect(one).toEqual([1]);
    const ids = (await publishInterleaved(jetstream(pub), [burst], 3 * KEEP, { window: 1 })).get(
      key(burst),
    ) as number[];
    await waitArchived(tdb.db, burst, ids.at(-1) as number);
    expect((await archivedRows(tdb.db, burst)).map((r) => Number(r.report_id))).toEqual(ids);
    expect(await chainHead(tdb.db, burst)).toMatchObject({ complete_after: 0, coverage_resets: 0 });
    const o = { keepDays: 365, now: new Date() };
    expect(await archiveCovers(tdb.db, burst, 0, o)).toBe(true);
    expect(await archiveCovers(tdb.db, first, 0, o)).toBe(true);
  } finally {
    await pub.close();
    await a.close();
  }
});
