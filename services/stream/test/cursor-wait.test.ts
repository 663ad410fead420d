/**
 * The waiting rule of `awaitCursorSource` (cursor.ts) over in-memory stores: which invalid
 * cursors wait for the archiver, for how long, and that the validity rule is asked again after
 * the wait. The same function against real NATS, Postgres and the archiver process:
 * `archive.test.ts` ("a resume cursor ahead of the archiver …").
 */
import type { Tenant } from "@nexus/contracts";
import type { ReportLog } from "@nexus/messaging";
import { describe, expect, it } from "vitest";
import { type ArchiveLog, awaitCursorSource } from "../src/cursor.ts";

const T: Tenant = { org_id: "o", project_id: "p" };

/** A tenant with reports up to `newest`, none of them retained below `retainedFrom`. */
function stores(o: {
  newest: number;
  retainedFrom: number;
  archived: () => number;
  archiveCovers: (c: number) => boolean;
}) {
  const heads: number[] = [];
  const log: ReportLog = {
    lastSeq: async () => o.newest,
    covers: async (_t, c) => c >= o.retainedFrom && c <= o.newest,
  };
  const archive: ArchiveLog = {
    covers: async (_t, c) => o.archiveCovers(c),
    after: async () => [],
    head: async () => {
      heads.push(o.archived());
      return o.archived();
    },
  };
  return { log, archive, heads };
}

const wait = (waitMs: number, closed = () => false) => ({ waitMs, pollMs: 5, closed });

describe("awaitCursorSource", () => {
  it("cursor 0 waits while the archive holds nothing of the tenant, then asks the rule again", async () => {
    let archived = 0;
    const s = stores({
      newest: 30,
      retainedFrom: 11,
      archived: () => archived,
      archiveCovers: (c) => c === 0 && archived > 0,
    });
    setTimeout(() => {
      archived = 30;
    }, 60);
    const t0 = Date.now();
    expect(await awaitCursorSource(s.log, s.archive, T, 0, wait(5000))).toBe("archive");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
    expect(s.heads.length).toBeGreaterThan(2);
  });

  it("a cursor above the archive's head waits until the head reaches it; expired if the rule still says no", async () => {
    let archived = 5;
    const s = stores({ newest: 30, retainedFrom: 11, archived: () => archived, archiveCovers: () => false });
    setTimeout(() => {
      archived = 30;
    }, 40);
    const t0 = Date.now();
    expect(await awaitCursorSource(s.log, s.archive, T, 8, wait(5000))).toBeNull();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(30);
  });

  it("answers at once when waiting cannot help: beyond the newest report, a head already past the cursor, no archive", async () => {
    const s = stores({ newest: 30, retainedFrom: 11, archived: () => 20, archiveCovers: () => false });
    expect(await awaitCursorSource(s.log, s.archive, T, 31, wait(5000))).toBeNull(); // beyond the newest
    expect(s.heads).toEqual([]);
    expect(await awaitCursorSource(s.log, s.archive, T, 8, wait(5000))).toBeNull(); // head 20 ≥ 8: archived or never will be
    expect(s.heads).toEqual([20]);
    expect(await awaitCursorSource(s.log, undefined, T, 8, wait(5000))).toBeNull();
    expect(await awaitCursorSource(s.log, s.archive, T, 12, wait(5000))).toBe("jetstream");
  });

  it("gives up after waitMs, or when the client goes away", async () => {
    const s = stores({ newest: 30, retainedFrom: 11, archived: () => 0, archiveCovers: () => false });
    const t0 = Date.now();
    expect(await awaitCursorSource(s.log, s.archive, T, 8, wait(100))).toBeNull();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    let closed = false;
    setTimeout(() => {
      closed = true;
    }, 30);
    const t1 = Date.now();
    expect(
      await awaitCursorSource(
        s.log,
        s.archive,
        T,
        8,
        wait(5000, () => closed),
      ),
    ).toBeNull();
    expect(Date.now() - t1).toBeLessThan(1000);
  });
});
