/**
 * When JetStream's retention overtakes the archiver, the archive never claims a range it may
 * not hold: the tenant's coverage restarts (complete_after), the chain still links, and the
 * metric counts it. (While the archiver runs it pulls every report as it is published — up to
 * the consumer's max_ack_pending, 20,000 — and JetStream hands over even reports it deletes
 * while they are pending, so the window for a loss is the archiver being down.)
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
  nats = await natsForTest({ streamEventKeep: KEEP, consumerAckWaitMs: 2000 });
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb?.drop();
  await nats?.stop();
});

const keepDays = { keepDays: 365, now: new Date() };

it("archiver down while a tenant publishes past retention: coverage restarts at the first report it still gets", async () => {
  const t = uniqueTenant("down");
  const pub = await connectNats({ url: nats.url, name: "publisher", logger: pino({ level: "silent" }) });
  let a = await startArchiverHarness({ nats, db: tdb.db });
  const first = (await publishInterleaved(jetstream(pub), [t], 5)).get(key(t)) as number[];
  await waitArchived(tdb.db, t, first.at(-1) as number);
  await a.close();
  const second = (await publishInterleaved(jetstream(pub), [t], 30, { window: 1 })).get(key(t)) as number[];
  await pub.close();
  a = await startArchiverHarness({ nats, db: tdb.db });
  try {
    await waitArchived(tdb.db, t, second.at(-1) as number);
    const kept = second.slice(-KEEP);
    expect((await archivedRows(tdb.db, t)).map((r) => Number(r.report_id))).toEqual([...first, ...kept]);
    expect(await chainHead(tdb.db, t)).toMatchObject({ complete_after: (kept[0] as number) - 1, coverage_resets: 1 });
    expect(await archiveCovers(tdb.db, t, first.at(-1) as number, keepDays)).toBe(false);
    expect(await archiveCovers(tdb.db, t, kept[0] as number, keepDays)).toBe(true);
    const rows = await archivedRows(tdb.db, t);
    expect(rows[first.length]?.prev_hash).toBe(rows[first.length - 1]?.hash); // the chain still links
    expect(await (await fetch(`${a.baseUrl}/metrics`)).text()).toMatch(/^archiver_coverage_resets_total 1$/m);
  } finally {
    await a.close();
  }
});
