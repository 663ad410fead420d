/**
 * docs/contract.md agrees with the code: its tables of error codes, command types, report types
 * and endpoints are compared with the error catalogue, the command registry, the AgentReport
 * union and the OpenAPI document the gateway serves (docs/openapi.json, itself checked against
 * the running gateway by openapi.test.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AgentReport, COMMAND_TYPES, ErrorCode, errorSpec } from "@nexus/contracts";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const contract = fs.readFileSync(path.join(ROOT, "docs/contract.md"), "utf8");
const openapi = JSON.parse(fs.readFileSync(path.join(ROOT, "docs/openapi.json"), "utf8")) as {
  paths: Record<string, Record<string, { operationId?: string }>>;
};

/** The rows of the first Markdown table after `heading`, as trimmed cells. */
function table(heading: string): string[][] {
  const start = contract.indexOf(`\n${heading}\n`);
  expect(start, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  const lines = contract.slice(start).split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const l of lines.slice(first + 2)) {
    if (!l.startsWith("|")) break;
    rows.push(
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

const unquote = (s: string) => s.replace(/^`|`$/g, "");

describe("docs/contract.md agrees with the code", () => {
  it("lists every error code with the catalogue's status and recoverable flag", () => {
    const rows = table("### Error codes");
    const documented = rows.map(([code, status, recoverable]) => ({
      code: unquote(code as string),
      status: Number(status),
      recoverable: recoverable === "yes",
    }));
    expect(documented.map((d) => d.code).sort()).toEqual([...ErrorCode.options].sort());
    for (const d of documented) {
      const spec = errorSpec(d.code as ErrorCode);
      expect({ code: d.code, status: d.status, recoverable: d.recoverable }).toEqual({
        code: d.code,
        status: spec.status,
        recoverable: spec.recoverable,
      });
    }
  });

  it("lists every command type with its default risk", () => {
    const rows = table("#### Command types");
    const documented = Object.fromEntries(rows.map(([type, risk]) => [unquote(type as string), risk]));
    expect(documented).toEqual(Object.fromEntries(Object.values(COMMAND_TYPES).map((t) => [t.type, t.risk])));
  });

  it("lists every report type with its status", () => {
    const rows = table("## Reports");
    const documented = Object.fromEntries(
      rows.map(([type, status]) => [unquote(type as string), unquote(status as string)]),
    );
    expect(documented).toEqual(
      Object.fromEntries(AgentReport.options.map((o) => [o.shape.type.value, o.shape.status.value])),
    );
  });

  it("lists exactly the operations the gateway serves, with their methods and paths", () => {
    const rows = table("## Endpoints").filter((r) => r[5] !== "—");
    const documented = rows.map(
      ([method, p, , , , id]) => `${unquote(id as string)} ${unquote(method as string)} ${unquote(p as string)}`,
    );
    const served = Object.entries(openapi.paths).flatMap(([p, item]) =>
      Object.entries(item).map(([m, op]) => `${op.operationId} ${m.toUpperCase()} ${p}`),
    );
    expect(documented.sort()).toEqual(served.sort());
  });
});
