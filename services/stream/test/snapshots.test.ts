/**
 * Shared snapshot reads (src/snapshots.ts): a burst of one tenant's connections costs about two
 * reads, a caller never gets a read that started before it asked (invariant 6), tenants never
 * share or wait on each other, and a failed read fails only those who shared it.
 */
import { describe, expect, it } from "vitest";
import { sharedReads } from "../src/snapshots.ts";

/** A read whose calls stay pending until the test settles them, in order. */
function controlledRead() {
  const calls: { key: string; startedAt: number; resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  let clock = 0;
  const read = (key: string) =>
    new Promise<string>((resolve, reject) => {
      calls.push({ key, startedAt: clock, resolve, reject });
    });
  return {
    calls,
    read,
    tick: () => ++clock,
    now: () => clock,
  };
}

const flush = () => new Promise((r) => setImmediate(r));

describe("shared snapshot reads", () => {
  it("the first call reads at once; calls during that read share one read that starts after it", async () => {
    const c = controlledRead();
    const get = sharedReads(c.read, (k) => k);
    const first = get("acme/p");
    expect(c.calls).toHaveLength(1);
    const later = Array.from({ length: 50 }, () => get("acme/p"));
    await flush();
    expect(c.calls).toHaveLength(1); // nobody joined the running read, nobody started another yet
    c.calls[0]?.resolve("v1");
    expect(await first).toBe("v1");
    await flush();
    expect(c.calls).toHaveLength(2);
    c.calls[1]?.resolve("v2");
    expect(new Set(await Promise.all(later))).toEqual(new Set(["v2"]));
  });

  it("never hands a caller a read that was already running when it asked (invariant 6)", async () => {
    const c = controlledRead();
    const get = sharedReads(c.read, (k) => k);
    void get("t");
    c.tick(); // the caller reads its W now, after the first read started
    const askedAt = c.now();
    const mine = get("t");
    c.calls[0]?.resolve("before my W");
    await flush();
    expect(c.calls[1]?.startedAt).toBeGreaterThanOrEqual(askedAt);
    c.calls[1]?.resolve("after my W");
    expect(await mine).toBe("after my W");
  });

  it("tenants do not share reads or wait for each other", async () => {
    const c = controlledRead();
    const get = sharedReads(c.read, (k) => k);
    const a = get("a");
    const b = get("b");
    expect(c.calls.map((x) => x.key)).toEqual(["a", "b"]);
    c.calls[1]?.resolve("b1");
    expect(await b).toBe("b1"); // a's read is still running
    c.calls[0]?.resolve("a1");
    expect(await a).toBe("a1");
  });

  it("a failed read fails its callers only; the next call reads again", async () => {
    const c = controlledRead();
    const get = sharedReads(c.read, (k) => k);
    const first = get("t");
    const shared = [get("t"), get("t")];
    c.calls[0]?.reject(new Error("pool timeout"));
    await expect(first).rejects.toThrow("pool timeout");
    await flush();
    c.calls[1]?.reject(new Error("still down"));
    for (const p of shared) await expect(p).rejects.toThrow("still down");
    await flush();
    const again = get("t");
    expect(c.calls).toHaveLength(3);
    c.calls[2]?.resolve("ok");
    expect(await again).toBe("ok");
  });

  it("idle tenants leave nothing behind: a later call starts a new read at once", async () => {
    const c = controlledRead();
    const get = sharedReads(c.read, (k) => k);
    const p = get("t");
    c.calls[0]?.resolve("one");
    await p;
    await flush();
    const q = get("t");
    expect(c.calls).toHaveLength(2);
    c.calls[1]?.resolve("two");
    expect(await q).toBe("two");
  });
});
