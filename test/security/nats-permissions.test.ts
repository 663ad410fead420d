/**
 * NATS least privilege (docs/architecture.md invariant 9: nothing reaches NATS without its service's
 * credentials): anonymous and wrong credentials are refused, and each service's user can do
 * what its service needs and nothing else — checked against a real nats-server running the
 * authorization block rendered from the one matrix in `packages/messaging/src/permissions.ts`.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { CONSUMERS, STREAMS } from "@nexus/contracts";
import { connectNats, NATS_USERS, type NatsUser, passwordEnvOf } from "@nexus/messaging";
import { natsForTest, type TestNats } from "@nexus/testkit";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let nats: TestNats;
const logger = pino({ level: "silent" });
const open: NatsConnection[] = [];

beforeAll(async () => {
  nats = await natsForTest({}, { auth: true });
});
afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => {});
  await nats?.stop();
});

async function as(user: NatsUser): Promise<NatsConnection> {
  const creds = nats.users?.[user];
  if (!creds) throw new Error("no users");
  const nc = await connectNats({ url: nats.url, name: `perm-${user}`, logger, auth: creds });
  open.push(nc);
  return nc;
}

const denied = (e: unknown) => /Permissions Violation/i.test(`${(e as Error)?.message} ${(e as Error)?.cause}`);

/** A JetStream publish: "ok" (stored), "denied", or the error's name. */
async function jsPublish(nc: NatsConnection, subject: string): Promise<string> {
  try {
    await jetstream(nc).publish(subject, "{}", { timeout: 2000, msgID: randomUUID() });
    return "ok";
  } catch (e) {
    return denied(e) ? "denied" : (e as Error).name;
  }
}

/** A request to a JetStream API subject: "ok" (answered), "denied", or the error's name. */
async function apiCall(nc: NatsConnection, subject: string): Promise<string> {
  try {
    await nc.request(subject, "", { timeout: 2000 });
    return "ok";
  } catch (e) {
    return denied(e) ? "denied" : (e as Error).name;
  }
}

/** A core subscription: "ok" or "denied" (the server closes a forbidden subscription). */
async function subscribe(nc: NatsConnection, subject: string): Promise<string> {
  const sub = nc.subscribe(subject);
  await nc.flush();
  await new Promise((r) => setTimeout(r, 300));
  const closed = sub.isClosed();
  if (!closed) sub.unsubscribe();
  return closed ? "denied" : "ok";
}

const T = "acme.nexus";

describe("NATS authentication", () => {
  it("refuses anonymous connections and wrong passwords", async () => {
    await expect(connectNats({ url: nats.url, name: "anon", logger, timeoutMs: 2000 })).rejects.toThrow(
      /Authorization/i,
    );
    await expect(
      connectNats({
        url: nats.url,
        name: "wrong",
        logger,
        timeoutMs: 2000,
        auth: { user: "gateway", password: "nope" },
      }),
    ).rejects.toThrow(/Authorization/i);
    // credentials in the URL work too
    const u = new URL(nats.url);
    u.username = "gateway";
    u.password = nats.users?.gateway.password ?? "";
    const nc = await connectNats({ url: u.toString(), name: "url-creds", logger });
    open.push(nc);
    expect(await jsPublish(nc, `nexus.report.${T}`)).toBe("ok");
  });
});

describe("the permission matrix", () => {
  it("gateway: commands, decisions, reports and register reads; never approved actions, dead letters or worker consumers", async () => {
    const nc = await as("gateway");
    expect({
      command: await jsPublish(nc, `nexus.cmd.${T}.c-${randomUUID().slice(0, 8)}`),
      decision: await jsPublish(nc, `nexus.approval.${T}.ask-1`),
      report: await jsPublish(nc, `nexus.report.${T}`),
      registerRead: await apiCall(nc, `$JS.API.STREAM.MSG.GET.${STREAMS.approvals}`),
      approvedAction: await jsPublish(nc, `nexus.cmd.${T}.c-1.approved`),
      deadLetter: await jsPublish(nc, `nexus.dlq.${T}.cmd`),
      notification: await jsPublish(nc, `nexus.notify.${T}.case_action`),
      pullWorkerConsumer: await apiCall(nc, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.commands}.${CONSUMERS.commandWorker}`),
      deleteStream: await apiCall(nc, `$JS.API.STREAM.DELETE.${STREAMS.reports}`),
      readOthersInbox: await subscribe(nc, "_INBOX_stream.>"),
      readReports: await subscribe(nc, "nexus.report.>"),
    }).toEqual({
      command: "ok",
      decision: "ok",
      report: "ok",
      registerRead: "ok",
      approvedAction: "denied",
      deadLetter: "denied",
      notification: "denied",
      pullWorkerConsumer: "denied",
      deleteStream: "denied",
      readOthersInbox: "denied",
      readReports: "denied",
    });
  });

  it("command-worker: its own consumer, reports, notifications, command dead letters; never commands, decisions or other consumers", async () => {
    const nc = await as("command-worker");
    expect({
      ownConsumer: await apiCall(nc, `$JS.API.CONSUMER.INFO.${STREAMS.commands}.${CONSUMERS.commandWorker}`),
      report: await jsPublish(nc, `nexus.report.${T}`),
      notification: await jsPublish(nc, `nexus.notify.${T}.case_action`),
      deadLetter: await jsPublish(nc, `nexus.dlq.${T}.cmd`),
      command: await jsPublish(nc, `nexus.cmd.${T}.c-2`),
      decision: await jsPublish(nc, `nexus.approval.${T}.ask-1`),
      approvalDeadLetter: await jsPublish(nc, `nexus.dlq.${T}.approval`),
      otherConsumer: await apiCall(nc, `$JS.API.CONSUMER.INFO.${STREAMS.approvals}.${CONSUMERS.approvalWorker}`),
      createConsumer: await apiCall(nc, `$JS.API.CONSUMER.CREATE.${STREAMS.commands}`),
    }).toEqual({
      ownConsumer: "ok",
      report: "ok",
      notification: "ok",
      deadLetter: "ok",
      command: "denied",
      decision: "denied",
      approvalDeadLetter: "denied",
      otherConsumer: "denied",
      createConsumer: "denied",
    });
  });

  it("approval-worker: its consumer, reports, notifications, approved-action dispatch and expiry; never commands", async () => {
    const nc = await as("approval-worker");
    expect({
      ownConsumer: await apiCall(nc, `$JS.API.CONSUMER.INFO.${STREAMS.approvals}.${CONSUMERS.approvalWorker}`),
      report: await jsPublish(nc, `nexus.report.${T}`),
      approvedAction: await jsPublish(nc, `nexus.cmd.${T}.c-3.approved`),
      expiryEntry: await jsPublish(nc, `nexus.approval.${T}.ask-2`),
      deadLetter: await jsPublish(nc, `nexus.dlq.${T}.approval`),
      command: await jsPublish(nc, `nexus.cmd.${T}.c-3`),
      commandWorkerConsumer: await apiCall(nc, `$JS.API.CONSUMER.INFO.${STREAMS.commands}.${CONSUMERS.commandWorker}`),
    }).toEqual({
      ownConsumer: "ok",
      report: "ok",
      approvedAction: "ok",
      expiryEntry: "ok",
      deadLetter: "ok",
      command: "denied",
      commandWorkerConsumer: "denied",
    });
  });

  it("stream: reads reports (ordered consumers, message gets) and live progress; publishes nothing under nexus.>", async () => {
    const nc = await as("stream");
    const reader = await jetstream(nc).consumers.get(STREAMS.reports, { filter_subjects: `nexus.report.${T}` });
    const info = await reader.info();
    await reader.delete();
    expect(info.stream_name).toBe(STREAMS.reports);
    expect({
      lastReport: await apiCall(nc, `$JS.API.STREAM.MSG.GET.${STREAMS.reports}`),
      progress: await subscribe(nc, `nexus.progress.${T}`),
      report: await jsPublish(nc, `nexus.report.${T}`),
      command: await jsPublish(nc, `nexus.cmd.${T}.c-4`),
      commandsConsumer: await apiCall(nc, `$JS.API.CONSUMER.CREATE.${STREAMS.commands}`),
      purgeReports: await apiCall(nc, `$JS.API.STREAM.PURGE.${STREAMS.reports}`),
    }).toEqual({
      lastReport: "ok",
      progress: "ok",
      report: "denied",
      command: "denied",
      commandsConsumer: "denied",
      purgeReports: "denied",
    });
  });

  it("operator (the nats CLI) reads and manages JetStream but cannot submit commands, decisions or reports", async () => {
    const nc = await as("operator");
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(STREAMS.commands)).config.name).toBe(STREAMS.commands);
    expect({
      consumerInfo: await apiCall(nc, `$JS.API.CONSUMER.INFO.${STREAMS.commands}.${CONSUMERS.commandWorker}`),
      tapReports: await subscribe(nc, "nexus.report.>"),
      command: await jsPublish(nc, `nexus.cmd.${T}.c-op`),
      decision: await jsPublish(nc, `nexus.approval.${T}.ask-op`),
      approved: await jsPublish(nc, `nexus.cmd.${T}.c-op.approved`),
      report: await jsPublish(nc, `nexus.report.${T}`),
    }).toEqual({
      consumerInfo: "ok",
      tapReports: "ok",
      command: "denied",
      decision: "denied",
      approved: "denied",
      report: "denied",
    });
  });

  it("only provisioning manages the topology", async () => {
    const jsm = await jetstreamManager(await as("provision"));
    expect((await jsm.streams.info(STREAMS.reports)).config.name).toBe(STREAMS.reports);
    const gateway = await as("gateway");
    expect(await apiCall(gateway, `$JS.API.STREAM.UPDATE.${STREAMS.reports}`)).toBe("denied");
  });
});

describe("the deployment's NATS configuration", () => {
  it("deploy/nats/authorization.conf is what the matrix renders (run `pnpm nats:config` after changing it)", async () => {
    const { renderAuthorization } = await import("../../scripts/nats-config.ts");
    const fs = await import("node:fs");
    const committed = fs.readFileSync(new URL("../../deploy/nats/authorization.conf", import.meta.url), "utf8");
    expect(committed).toBe(renderAuthorization());
    for (const conf of ["single.conf", "cluster-common.conf"])
      expect(fs.readFileSync(new URL(`../../deploy/nats/${conf}`, import.meta.url), "utf8")).toContain(
        "include ./authorization.conf",
      );
  });

  it("the Helm values mount the same file and give the NATS pods every user's password from the Secret", async () => {
    const fs = await import("node:fs");
    const values = fs.readFileSync(new URL("../../deploy/k8s/nats-values.yaml", import.meta.url), "utf8");
    expect(values).toMatch(/\$include: \.\.\/nexus-nats\/authorization\.conf/);
    expect(values).toMatch(/mountPath: \/etc\/nexus-nats/);
    for (const u of NATS_USERS)
      expect(values).toMatch(
        new RegExp(
          `${passwordEnvOf(u)}:\\s*{ valueFrom: { secretKeyRef: { name: nexus-secrets, key: ${passwordEnvOf(u)} }`,
        ),
      );
    const secret = fs.readFileSync(new URL("../../deploy/k8s/secret.example.yaml", import.meta.url), "utf8");
    for (const u of NATS_USERS) expect(secret).toContain(`${passwordEnvOf(u)}: REPLACE_ME`);
  });

  it("a nats-server 2.9 accepts the deployment's authorization.conf with passwords from its environment", async () => {
    const { spawn } = await import("node:child_process");
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const { readPortsFile, waitFor } = await import("@nexus/testkit");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-natsconf-"));
    fs.copyFileSync(
      new URL("../../deploy/nats/authorization.conf", import.meta.url),
      path.join(dir, "authorization.conf"),
    );
    fs.writeFileSync(path.join(dir, "test.conf"), "include ./authorization.conf\n");
    const env = { ...process.env, NEXUS_GATEWAY_NATS_PASSWORD: "from-the-environment" };
    for (const u of NATS_USERS) if (u !== "gateway") Object.assign(env, { [passwordEnvOf(u)]: `pw-${u}` });
    // The server chooses its port and writes it to its ports file: a probed port could be
    // another test's (unauthenticated) server by the time this one starts, and the logins
    // below would then be answered by that server.
    const child = spawn(
      "nats-server",
      ["-c", path.join(dir, "test.conf"), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir],
      { env, stdio: "ignore" },
    );
    let port: number | undefined;
    try {
      await waitFor(
        async () => {
          port ??= readPortsFile(dir, child.pid);
          if (port === undefined) return false;
          const nc = await connectNats({
            url: `nats://127.0.0.1:${port}`,
            name: "conf",
            logger,
            timeoutMs: 500,
            auth: { user: "gateway", password: "from-the-environment" },
          });
          await nc.close();
          return true;
        },
        10_000,
        "a gateway login with the environment's password",
      );
      await expect(
        connectNats({ url: `nats://127.0.0.1:${port}`, name: "anon", logger, timeoutMs: 1000 }),
      ).rejects.toThrow();
    } finally {
      child.kill("SIGKILL");
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
