import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createDb, migrateToLatest } from "@nexus/core";
import { natsForTest, type TestNats, withDatabase } from "@nexus/testkit";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), "wait-provisioned.ts");
let nats: TestNats;
let url: string;
const name = `nexus_wait_${Date.now().toString(36)}`;

beforeAll(async () => {
  nats = await natsForTest();
  const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  url = withDatabase(inject("pgAdminUrl"), name);
});
afterAll(async () => {
  const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
  await admin.connect();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
  await nats?.stop();
});

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], {
      env: { PATH: process.env.PATH, NATS_URL: nats.url, DATABASE_URL: url, ...env },
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b));
    child.stderr.on("data", (b: Buffer) => (out += b));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

describe("wait-provisioned (the Kubernetes init container)", () => {
  it("waits while migrations are pending, exits 1 at its deadline naming them; exits 0 once provisioned", async () => {
    const args = ["--stream", "NEXUS_COMMANDS", "--consumer", "NEXUS_COMMANDS/command-worker"];
    const early = await run(args, { WAIT_PROVISIONED_TIMEOUT_MS: "1000" });
    expect(early.code).toBe(1);
    expect(early.out).toMatch(/migrations not applied yet: 0001_init/);

    const waiting = run(args, { WAIT_PROVISIONED_TIMEOUT_MS: "30000" });
    await new Promise((r) => setTimeout(r, 1500));
    const db = createDb({ url, max: 1 });
    await migrateToLatest(db);
    await db.destroy();
    const done = await waiting;
    expect(done.code, done.out).toBe(0);

    const noStream = await run(["--stream", "NEXUS_NOPE"], { WAIT_PROVISIONED_TIMEOUT_MS: "1000" });
    expect(noStream.code).toBe(1);
    expect(noStream.out).toMatch(/NEXUS_NOPE is missing/);
  });
});
