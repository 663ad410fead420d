import { describe, expect, it } from "vitest";
import { isCompactReport, reportEventJson, reportEventJsonFast } from "./index.ts";

const t = { org_id: "acme", project_id: "nexus" };

describe("reportEventJsonFast", () => {
  it("gives the bytes of reportEventJson for every compact report", () => {
    const messages: Record<string, unknown>[] = [
      {
        report: { type: "command.started", title: "é € 😀 \n \u2028" },
        causality: { correlation_id: "c" },
        tenant: t,
        ts: "x",
      },
      { tenant: t, "10": 1, "9": 2, a: [1, { b: null }], z: -0, n: 1e21 },
      { tenant: t, report: { result: { "0": "zero", x: "\u0000" } } },
    ];
    for (const m of messages) {
      const text = JSON.stringify(m);
      expect(isCompactReport(text, JSON.parse(text))).toBe(true);
      expect(reportEventJsonFast(4711, text)).toBe(reportEventJson(4711, text, t));
    }
  });

  it("is not used where it would differ: whitespace, other escapes, a report_id of its own", () => {
    for (const text of [
      '{ "tenant": {"org_id":"acme","project_id":"nexus"} }',
      '{"tenant":{"org_id":"acme","project_id":"nexus"},"s":"\\u00e9"}',
      '{"tenant":{"org_id":"acme","project_id":"nexus"},"report_id":"1"}',
      "{}",
    ])
      expect(isCompactReport(text, JSON.parse(text))).toBe(false);
  });
});
