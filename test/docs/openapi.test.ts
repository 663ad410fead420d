/**
 * The OpenAPI document: the committed `docs/openapi.json` is what a real gateway (real NATS and
 * Postgres) serves at `/docs/json`; it is valid OpenAPI 3.1 (`@readme/openapi-parser`); every
 * operation is named, secured and answers errors with the standard body; the report stream is
 * described event by event; and a TypeScript client generated from it by `openapi-typescript`
 * is fully typed (checked by the TypeScript compiler, not by reading the text).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { COMMAND_TYPES, ErrorCode, errorSpec, SseEventName } from "@nexus/contracts";
import { createTestDatabase, natsForTest, type TestDatabase, type TestNats } from "@nexus/testkit";
import { validate } from "@readme/openapi-parser";
import openapiTS, { astToString } from "openapi-typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPENAPI_FILE, openApiText } from "../../scripts/openapi.ts";
import { type GatewayHarness, startGateway } from "../../services/gateway/test/harness.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const METHODS = ["get", "put", "post", "delete", "patch"] as const;

// biome-ignore lint/suspicious/noExplicitAny: walking a parsed JSON document
type Json = Record<string, any>;
let nats: TestNats;
let database: TestDatabase;
let gw: GatewayHarness;
let doc: Json;

function operations(d: Json): { method: string; path: string; op: Json }[] {
  return Object.entries(d.paths as Record<string, Json>).flatMap(([p, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ method: m, path: p, op: item[m] as Json })),
  );
}

beforeAll(async () => {
  nats = await natsForTest();
  database = await createTestDatabase();
  gw = await startGateway({ nats, db: database });
  const res = await gw.app.inject({ url: "/docs/json" });
  expect(res.statusCode).toBe(200);
  doc = res.json();
});
afterAll(async () => {
  await gw?.close();
  await database?.drop();
  await nats?.stop();
});

describe("OpenAPI 3.1 from the zod contracts", () => {
  it("the committed docs/openapi.json is exactly what the gateway serves (else run `pnpm openapi`)", () => {
    const committed = fs.readFileSync(OPENAPI_FILE, "utf8");
    expect(committed === openApiText(doc), "docs/openapi.json is out of date: run `pnpm openapi`").toBe(true);
  });

  it("validates as OpenAPI 3.1", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const result = await validate(structuredClone(doc) as never);
    expect(result.valid ? [] : result.errors).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("names every operation once, secures it, and answers every error with the standard body", () => {
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThanOrEqual(13);
    const ids = ops.map((o) => o.op.operationId);
    for (const [i, id] of ids.entries()) expect(id, `${ops[i]!.method} ${ops[i]!.path}`).toMatch(/^[a-z][A-Za-z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { method, path: p, op } of ops) {
      const where = `${method} ${p}`;
      expect(op.security?.length, where).toBeGreaterThan(0);
      for (const req of op.security)
        for (const name of Object.keys(req)) expect(doc.components.securitySchemes[name], where).toBeDefined();
      const statuses = Object.keys(op.responses).map(Number);
      expect(
        statuses.some((s) => s >= 200 && s < 300),
        where,
      ).toBe(true);
      for (const s of [400, 401, 403, 429, 500]) expect(statuses, where).toContain(s);
      for (const s of statuses.filter((x) => x >= 400)) {
        const r = op.responses[String(s)];
        const named = doc.components.responses[r.$ref.replace("#/components/responses/", "")];
        expect(named.content["application/json"].schema).toEqual({ $ref: "#/components/schemas/ErrorBody" });
      }
      // Every writing endpoint states both failure answers.
      if (statuses.includes(202)) for (const s of [503, 504]) expect(statuses, where).toContain(s);
      if (op.requestBody?.content?.["application/json"])
        for (const s of [413, 415]) expect(statuses, where).toContain(s);
    }
  });

  it("gives each error response an example per code of its status, taken from the catalogue", () => {
    for (const named of Object.values(doc.components.responses as Record<string, Json>)) {
      const examples = named.content["application/json"].examples as Record<string, Json>;
      expect(Object.keys(examples).length).toBeGreaterThan(0);
      for (const [code, ex] of Object.entries(examples)) {
        expect(ErrorCode.options).toContain(code);
        expect(ex.value.error).toMatchObject({ code, recoverable: errorSpec(code as ErrorCode).recoverable });
      }
    }
    const codes = Object.values(doc.components.responses as Record<string, Json>).flatMap((r) =>
      Object.keys(r.content["application/json"].examples),
    );
    for (const c of ["IDEMPOTENCY_CONFLICT", "ASK_ALREADY_DECIDED", "DEPENDENCY_UNAVAILABLE", "ACCEPT_UNCONFIRMED"])
      expect(codes).toContain(c);
  });

  it("names the wire shapes as components and types the command body per command type", () => {
    const s = doc.components.schemas as Record<string, Json>;
    for (const name of [
      "ErrorBody",
      "Command",
      "LegacyCommand",
      "CommandAccepted",
      "DecisionAccepted",
      "Snapshot",
      "ReportEvent",
      "AgentReport",
    ])
      expect(s[name], name).toBeDefined();
    const variants = (s.Command!.oneOf as Json[]).map((v) => s[v.$ref.split("/").pop()]!.properties.type.const);
    expect(variants.sort()).toEqual(Object.keys(COMMAND_TYPES).sort());
    const reportTypes = (s.AgentReport!.oneOf as Json[]).map((v) => s[v.$ref.split("/").pop()]!.properties.type.const);
    expect(reportTypes).toContain("ask.created");
    expect(reportTypes).toContain("settings.updated");
    const body = doc.paths["/sidecar/command"].post.requestBody.content["application/json"];
    expect(body.schema.oneOf).toEqual([
      { $ref: "#/components/schemas/Command" },
      { $ref: "#/components/schemas/LegacyCommand" },
    ]);
  });

  it("describes the report stream as text/event-stream with exactly the contracts' SSE events", () => {
    const op = doc.paths["/agent/reports/stream"].get;
    const content = op.responses["200"].content["text/event-stream"];
    expect(content.example).toMatch(/^retry: 3000\n/);
    const s = doc.components.schemas as Record<string, Json>;
    const frames = (s.ReportStreamFrame!.oneOf as Json[]).map((f) => s[f.$ref.split("/").pop()]!);
    expect(frames.map((f) => f.properties.event.const).sort()).toEqual([...SseEventName.options].sort());
    for (const f of frames) {
      const hasId = f.required.includes("id");
      expect(hasId, f.properties.event.const).toBe(["snapshot", "report"].includes(f.properties.event.const));
    }
    expect(op.parameters.map((p: Json) => p.name)).toEqual(expect.arrayContaining(["Last-Event-ID", "cursor"]));
  });

  it("generates a TypeScript client with openapi-typescript in which every schema and every success body is typed", {
    timeout: 120_000,
  }, async () => {
    const source = astToString(await openapiTS(structuredClone(doc) as never));
    const schemasBlock = source
      .slice(source.indexOf("    schemas: {"), source.indexOf("    responses: {"))
      .replace(/\/\*[\s\S]*?\*\//g, ""); // comments say "never" in prose
    expect(schemasBlock.length).toBeGreaterThan(1000);
    expect(schemasBlock).not.toMatch(/\bnever\b/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-openapi-ts-"));
    fs.writeFileSync(path.join(dir, "api.ts"), source);
    // One compile-time assertion per operation: its success body is neither never, any nor unknown.
    const checks = operations(doc).flatMap(({ op }) =>
      Object.keys(op.responses)
        .filter((s) => s.startsWith("2") && s !== "204")
        .flatMap((s) =>
          Object.keys(op.responses[s].content ?? {}).map(
            (type) =>
              `type _${op.operationId}_${s}_${type.replace(/\W/g, "_")} = Check<IsTyped<operations["${op.operationId}"]["responses"][${s}]["content"]["${type}"]>>;`,
          ),
        ),
    );
    expect(checks.length).toBeGreaterThanOrEqual(13);
    fs.writeFileSync(
      path.join(dir, "check.ts"),
      [
        'import type { components, operations } from "./api.ts";',
        "type IsAny<T> = 0 extends 1 & T ? true : false;",
        "type IsTyped<T> = [T] extends [never] ? false : IsAny<T> extends true ? false : unknown extends T ? false : true;",
        "type Check<T extends true> = T;",
        ...checks,
        // The typed shapes clients rely on.
        'const accepted: operations["sendCommand"]["responses"][202]["content"]["application/json"] = { accepted: true, status: "accepted", command_id: "c", correlation_id: "x" };',
        'const frame: components["schemas"]["ReportStreamFrame"] = { event: "ping", data: { ts: "t" } };',
        'const cmd: components["schemas"]["Command"] = { type: "doc.summary.create", params: { text: "One." } };',
        "// @ts-expect-error: an unknown command type is not a Command",
        'const bad: components["schemas"]["Command"] = { type: "nope.create", params: {} };',
        "// @ts-expect-error: params are typed by the command type",
        'const badParams: components["schemas"]["Command"] = { type: "doc.summary.create", params: { text: 1 } };',
        "export { accepted, bad, badParams, cmd, frame };",
      ].join("\n"),
    );
    const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const r = spawnSync(
      process.execPath,
      [
        tsc,
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "nodenext",
        "--allowImportingTsExtensions",
        "check.ts",
      ],
      { cwd: dir, encoding: "utf8" },
    );
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
