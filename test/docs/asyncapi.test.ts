/**
 * docs/asyncapi.yaml: generated from the zod contracts (the committed file is what
 * `pnpm asyncapi` renders), valid AsyncAPI 3.0 for `@asyncapi/parser`, and complete: every SSE
 * event name of the contracts, every subject the contracts' builders can produce, every stream.
 */
import fs from "node:fs";
import { Parser } from "@asyncapi/parser";
import { SseEventName, STREAMS, subjects } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ASYNCAPI_FILE, asyncApiDocument, renderAsyncApi } from "../../scripts/asyncapi.ts";

const committed = fs.readFileSync(ASYNCAPI_FILE, "utf8");

describe("AsyncAPI 3.0 from the zod contracts", () => {
  it("the committed docs/asyncapi.yaml is what `pnpm asyncapi` renders", () => {
    expect(committed === renderAsyncApi(), "docs/asyncapi.yaml is out of date: run `pnpm asyncapi`").toBe(true);
  });

  it("validates with @asyncapi/parser: no error, no warning", { timeout: 60_000 }, async () => {
    const { document, diagnostics } = await new Parser().parse(committed);
    // Severity 0 is an error, 1 a warning (Spectral's levels).
    const serious = diagnostics
      .filter((d) => d.severity <= 1)
      .map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`);
    expect(serious).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.version()).toBe("3.0.0");
    expect(document!.channels().length).toBeGreaterThanOrEqual(8);
  });

  it("describes exactly the contracts' SSE events on the report stream", () => {
    const doc = parse(committed) as {
      channels: Record<string, { address: string; messages: Record<string, unknown> }>;
    };
    expect(Object.keys(doc.channels.reportStream!.messages).sort()).toEqual([...SseEventName.options].sort());
  });

  it("has a channel for every subject the contracts build, and names every stream", () => {
    const doc = asyncApiDocument() as { channels: Record<string, { address: string }> };
    const patterns = Object.values(doc.channels)
      .map((c) => c.address)
      .filter((a) => a.startsWith("nexus."))
      .map((a) => new RegExp(`^${a.replace(/\./g, "\\.").replace(/\{[a-z_]+\}/g, "[^.]+")}$`));
    const t = { org_id: "acme", project_id: "nexus" };
    const built = [
      subjects.command(t, "c-1"),
      subjects.approvedAction(t, "c-1"),
      subjects.approval(t, "a-1"),
      subjects.report(t),
      subjects.dlq(t, "cmd"),
      subjects.dlq(null, "approval"),
      subjects.caseAction(t),
    ];
    for (const s of built)
      expect(
        patterns.filter((p) => p.test(s)),
        s,
      ).toHaveLength(1);
    for (const name of Object.values(STREAMS)) expect(committed).toContain(name);
  });
});
