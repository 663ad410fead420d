/**
 * The test stack's service launch: a service binds a port the kernel chooses and reports it
 * (`listen()` of `@nexus/runtime`, over the IPC channel), and /ready is only asked of a port
 * that very process bound. Before, the stack probed a free port, handed it over, and polled
 * /ready on it: when another process took the port in between, the service died with
 * EADDRINUSE while the other process answered /ready, and a test ran against a stack with a
 * dead service (a CI failure: "timed out waiting for archived through 3", the command-worker
 * log ending in EADDRINUSE).
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stackForTest, type TestStack } from "./index.ts";

let rig: TestStack;

beforeAll(async () => {
  rig = await stackForTest({ skip: ["gateway", "stream", "command-worker", "archiver"] });
});
afterAll(async () => {
  await rig?.close();
});

it("a started service listens on the port it reported, and logs that port", async () => {
  const port = rig.stack.ports["approval-worker"];
  expect(port).toBeGreaterThan(0);
  expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
  const log = fs.readFileSync(path.join(rig.stack.logDir, "approval-worker.log"), "utf8");
  const line = log.split("\n").find((l) => l.includes('"approval-worker:consuming"'));
  expect(line && (JSON.parse(line) as { port: number }).port).toBe(port);
});

it("a port another process holds fails the start; /ready is never asked of that process", async () => {
  let asked = 0;
  const squatter = http.createServer((_req, res) => {
    asked++;
    res.end("{}"); // 200 to anything, as a ready service of another stack would answer
  });
  await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
  try {
    // A skipped service starts on the port the stack reserved for it; make that port taken.
    rig.stack.ports.archiver = (squatter.address() as AddressInfo).port;
    await expect(rig.stack.start("archiver")).rejects.toThrow(/archiver exited with/);
    expect(asked).toBe(0);
    expect(fs.readFileSync(path.join(rig.stack.logDir, "archiver.log"), "utf8")).toContain("EADDRINUSE");
  } finally {
    await new Promise((r) => squatter.close(r));
  }
});
