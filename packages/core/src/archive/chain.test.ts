import { describe, expect, it } from "vitest";
import { type ChainLine, ChainVerifier, chainHash, GENESIS_HASH } from "./chain.ts";

const t = { org_id: "acme", project_id: "nexus" };

function chain(n: number): ChainLine[] {
  const out: ChainLine[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const report = {
      report: { type: "command.started", title: `r${i}` },
      causality: { correlation_id: `c${i}` },
      tenant: t,
      ts: "x",
    };
    const line = { ...t, report_id: String(i * 10), report, prev_hash: prev, hash: "" };
    line.hash = chainHash(prev, line);
    prev = line.hash;
    out.push(line);
  }
  return out;
}

function verify(lines: unknown[], anchors?: Record<string, string>) {
  const v = new ChainVerifier(anchors ? { anchors } : {});
  for (const l of lines) v.push(typeof l === "string" ? l : JSON.stringify(l));
  return v.result();
}

describe("ChainVerifier", () => {
  it("accepts an intact chain and reports its head", () => {
    const c = chain(5);
    const r = verify(c, { "acme/nexus": GENESIS_HASH });
    expect(r.ok).toBe(true);
    expect(r.tenants["acme/nexus"]).toEqual({
      links: 5,
      first_report_id: "10",
      last_report_id: "50",
      head: c[4]?.hash,
    });
  });

  it("hashes the value, not the bytes: re-serialised reports still verify", () => {
    const c = chain(2);
    // other key order, other whitespace
    const reordered = c.map((l) => {
      const { hash, report, ...rest } = l;
      const { ts, ...inner } = report as Record<string, unknown>;
      return JSON.stringify({ hash, report: { ts, ...inner }, ...rest }, null, 2).replace(/\n/g, " ");
    });
    expect(verify(reordered).ok).toBe(true);
  });

  it("names the first broken link: an edited report", () => {
    const c = chain(5);
    ((c[2] as ChainLine).report as { report: { title: string } }).report.title = "edited";
    expect(verify(c).broken).toMatchObject({ line: 3, report_id: "30", reason: expect.stringMatching(/altered/) });
  });

  it("names the first broken link: a deleted report", () => {
    const c = chain(5);
    c.splice(2, 1);
    expect(verify(c).broken).toMatchObject({ line: 3, report_id: "40", reason: expect.stringMatching(/removed/) });
  });

  it("names the first broken link: reordered reports", () => {
    const c = chain(5);
    [c[1], c[2]] = [c[2] as ChainLine, c[1] as ChainLine];
    expect(verify(c).broken).toMatchObject({ line: 2, report_id: "30", reason: expect.stringMatching(/prev_hash/) });
  });

  it("names the first broken link: a swapped report_id (content moved to another position)", () => {
    const c = chain(3);
    const l = c[1] as ChainLine;
    l.report_id = "25";
    expect(verify(c).broken).toMatchObject({ line: 2, report_id: "25", reason: expect.stringMatching(/altered/) });
  });

  it("checks the anchor of a complete export and refuses junk", () => {
    expect(verify(chain(2).slice(1), { "acme/nexus": GENESIS_HASH }).broken?.reason).toMatch(/anchor/);
    expect(verify(["{oops"]).broken).toEqual({ line: 1, reason: "not JSON" });
    expect(verify([{ report_id: "1" }]).broken?.reason).toMatch(/org_id/);
  });
});
