/**
 * A dead-lettered register entry requeued (`nexus.approval.<org>.<project>.<ask_id>.requeue`):
 * the approval-worker applies it at its original sequence — once, however often the requeue
 * arrives — so the ask is decided and its action dispatched exactly once (invariant 3).
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type RequeueMessage, STREAMS, subjects } from "@nexus/contracts";
import { buildHeaders, listDeadLetters, publishRequeue, requeueTarget } from "@nexus/messaging";
import { startWorkerRig, type TestDatabase, uniqueTenant, type WorkerRig, waitFor } from "@nexus/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { askEventSpec } from "../src/jobs.ts";
import { appendEntry, nextEntry, seedAsk } from "./helpers.ts";

let tdb: TestDatabase;
let nc: NatsConnection;
let rig: WorkerRig;
const js = () => jetstream(nc);

beforeAll(async () => {
  rig = await startWorkerRig("approval-worker-requeue-test");
  ({ tdb, nc } = rig);
  await rig.run({
    spec: askEventSpec({ db: tdb.db, js: js(), now: () => new Date(), publishTimeoutMs: 5000 }),
    retry: { baseMs: 20, maxMs: 50 },
  });
});
afterAll(async () => {
  await rig?.close();
});

describe("requeue of a register entry", () => {
  it("an entry dead-lettered while its ask was missing is applied once when requeued, even requeued twice", async () => {
    const t = uniqueTenant("arq");
    const row = await seedAsk(tdb.db, t);
    // The ask's row is missing when its decision arrives (restored later, say): dead-lettered.
    await tdb.db.deleteFrom("asks").where("ask_id", "=", row.ask_id).execute();
    await appendEntry(js(), nextEntry(row, null, "alice"));
    let letters: Awaited<ReturnType<typeof listDeadLetters>>["items"] = [];
    await waitFor(
      async () => {
        letters = (await listDeadLetters(js(), { tenant: t, limit: 10 })).items;
        return letters.length === 1;
      },
      10_000,
      "the dead letter",
    );
    expect(letters[0]?.letter).toMatchObject({ reason: "poison", code: "ASK_NOT_FOUND", disposition: "hold" });
    expect(letters[0]?.source).toBe("approval");
    await tdb.db
      .insertInto("asks")
      .values({
        ...row,
        action: JSON.stringify(row.action),
        decisions: JSON.stringify(row.decisions),
        result: null,
        error: null,
      })
      .execute();

    const target = requeueTarget(letters[0]!.letter);
    expect(target).toMatchObject({ source: "approval", id: row.ask_id, subject: subjects.approval(t, row.ask_id) });
    const out = await publishRequeue(js(), {
      dlqSeq: letters[0]!.seq,
      target,
      requestedBy: "admin-1",
      now: new Date(),
      generation: 0,
      correlationId: "c-rq",
    });
    expect(out.kind).toBe("stored");
    // The same requeue again as a new message (past the duplicate window).
    const again: RequeueMessage = {
      v: 1,
      kind: "requeue",
      tenant: t,
      dlq_seq: letters[0]!.seq,
      subject: target.subject,
      payload: target.payload,
      stream_seq: target.streamSeq,
      requested_by: "admin-1",
      requested_at: new Date().toISOString(),
      generation: 0,
    };
    const id = `${t.org_id}.${t.project_id}.again`;
    await js().publish(subjects.requeue("approval", t, row.ask_id), JSON.stringify(again), {
      msgID: id,
      headers: buildHeaders({ tenant: t, msgId: id, correlationId: "c-again" }),
    });

    await waitFor(
      async () =>
        (await tdb.db.selectFrom("asks").select("status").where("ask_id", "=", row.ask_id).executeTakeFirst())
          ?.status === "decided",
      10_000,
      "decided",
    );
    await new Promise((r) => setTimeout(r, 500));
    const jsm = await jetstreamManager(nc);
    const dispatches = await jsm.streams.info(STREAMS.commands, {
      subjects_filter: subjects.approvedAction(t, row.command_id),
    });
    expect(dispatches.state.subjects?.[subjects.approvedAction(t, row.command_id)]).toBe(1);
    // Nothing new was dead-lettered: the second copy was a no-op, not a failure.
    expect((await listDeadLetters(js(), { tenant: t, limit: 10 })).items).toHaveLength(1);
  });
});
