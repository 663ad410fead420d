/**
 * The hub's ring (docs/architecture.md invariant 10, a bounded memory per tenant): bounded by count
 * and by bytes, oldest out first, and the frame it evicted last is what moves the hub's
 * coverage bound.
 */
import { describe, expect, it } from "vitest";
import { ReportRing } from "../src/hub.ts";

const frame = (seq: number, bytes: number) => ({ seq, frame: "x".repeat(bytes) });

describe("ReportRing", () => {
  it("holds at most `capacity` frames, evicting the oldest", () => {
    const r = new ReportRing(3);
    const evicted = [1, 2, 3, 4, 5].map((s) => r.push(frame(s, 10))?.seq);
    expect(evicted).toEqual([undefined, undefined, undefined, 1, 2]);
    expect(r.size).toBe(3);
    expect(r.bytes).toBe(30);
  });

  it("holds at most `maxBytes`: a large frame evicts as many old ones as it needs, and reports the newest of them", () => {
    const r = new ReportRing(1000, 100);
    for (let s = 1; s <= 9; s++) r.push(frame(s, 10)); // 90 bytes
    expect(r.push(frame(10, 60))?.seq).toBe(5); // needs 50 more bytes free: 1..5 go
    expect(r.size).toBe(5);
    expect(r.bytes).toBe(100);
    for (let s = 11; s <= 500; s++) {
      r.push(frame(s, 1 + (s % 37)));
      expect(r.bytes).toBeLessThanOrEqual(100);
    }
  });

  it("a single frame larger than maxBytes is held alone (the newest report is always servable)", () => {
    const r = new ReportRing(10, 100);
    r.push(frame(1, 10));
    expect(r.push(frame(2, 500))?.seq).toBe(1);
    expect([r.size, r.bytes]).toEqual([1, 500]);
    expect(r.push(frame(3, 10))?.seq).toBe(2);
    expect([r.size, r.bytes]).toEqual([1, 10]);
  });
});
