import type { ExternalShareResult } from "@nexus/contracts";
import type { Database } from "@nexus/core";
import type { Kysely } from "kysely";
import type { ShareConnector, ShareRequest } from "./share.ts";

/**
 * The default {@link ShareConnector}: writes the share to the `share_outbox` table, from which
 * the webhook relay (`webhook-relay.ts`) delivers it. `INSERT … ON CONFLICT (ask_id) DO NOTHING`
 * makes a re-execution after a crash find the existing row instead of creating a second share.
 *
 * The result's `status` is `"queued"` (or `"delivered"` when a re-execution finds the share
 * already delivered): an executed ask means the share was durably handed to the outbox.
 */
export class OutboxShareConnector implements ShareConnector {
  private readonly db: Kysely<Database>;
  private readonly clock: () => Date;
  constructor(db: Kysely<Database>, clock: () => Date = () => new Date()) {
    this.db = db;
    this.clock = clock;
  }

  async share(req: ShareRequest): Promise<ExternalShareResult> {
    await this.db
      .insertInto("share_outbox")
      .values({
        share_id: req.share_id,
        org_id: req.tenant.org_id,
        project_id: req.tenant.project_id,
        ask_id: req.ask_id,
        command_id: req.command_id,
        recipient: req.recipient,
        channel: req.channel,
        resource: JSON.stringify(req.resource),
        message: req.message ?? null,
        status: "queued",
        next_attempt_at: this.clock(),
      })
      .onConflict((oc) => oc.column("ask_id").doNothing())
      .execute();
    const row = await this.db
      .selectFrom("share_outbox")
      .select(["share_id", "recipient", "channel", "resource", "status"])
      .where("ask_id", "=", req.ask_id)
      .where("org_id", "=", req.tenant.org_id)
      .where("project_id", "=", req.tenant.project_id)
      .executeTakeFirstOrThrow();
    const resource = row.resource as { ref: string; title: string };
    return {
      share_id: row.share_id,
      recipient: row.recipient,
      channel: row.channel,
      resource: { ref: resource.ref, title: resource.title },
      status: row.status === "delivered" ? "delivered" : "queued",
    };
  }

  async cancel(tenant: { org_id: string; project_id: string }, shareId: string, reason: string): Promise<void> {
    await this.db
      .updateTable("share_outbox")
      .set({ status: "failed", last_error: reason })
      .where("share_id", "=", shareId)
      .where("org_id", "=", tenant.org_id)
      .where("project_id", "=", tenant.project_id)
      .where("status", "=", "queued")
      .execute();
  }
}
