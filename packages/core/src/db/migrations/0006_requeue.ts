import type { Kysely } from "kysely";

/**
 * Dead-letter requeues: a command that failed after its retries may run again when an operator
 * (or the triage by failure code) requeues its dead letter.
 * - `requeues`: how many times it was requeued; its reports after the n-th requeue carry
 *   message ids with the step suffix `.r<n>`, so they are new facts, not duplicates;
 * - `requeued_from`: the NEXUS_DLQ sequence of the last requeue applied, so each dead letter
 *   runs the command again at most once (a requeue with this sequence or an older one does not);
 * - `requeue_msg_seq`: the NEXUS_COMMANDS sequence of the requeue message that applied it: a
 *   redelivery of that message carries on, another copy of the same requeue only restates.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("commands")
    .addColumn("requeues", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("requeued_from", "bigint")
    .addColumn("requeue_msg_seq", "bigint")
    .execute();
}

/** Reverts {@link up}. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable("commands")
    .dropColumn("requeues")
    .dropColumn("requeued_from")
    .dropColumn("requeue_msg_seq")
    .execute();
}
