/**
 * NATS least privilege: every connection authenticates as its service's own user, and each
 * user may publish and subscribe only what its service needs (docs/architecture.md invariant 9:
 * nothing reaches NATS without its service's credentials). This module is the one place the
 * matrix is written; {@link authorizationConfig} renders it as a nats-server `authorization`
 * block for `pnpm start`, the tests, `deploy/nats/*.conf` and the Helm values.
 *
 * Rules the matrix follows:
 * - only the gateway publishes commands (`nexus.cmd.<org>.<project>.<command_id>`: exactly five
 *   tokens) and decisions; only the approval-worker dispatches approved actions (six tokens,
 *   `….approved`) and writes expiry; requeues of dead letters (`….requeue`) come from the
 *   gateway (the admin API) and from the worker that dead-lettered them (triage); only the
 *   gateway (besides operators) reads and removes dead letters; reports (`nexus.report.>`) come from the gateway and the
 *   two workers only; the stream service publishes nothing but JetStream API requests;
 * - each service reads JetStream replies on its own inbox prefix (`_INBOX_<service>`), so no
 *   service can read another's replies; workers pull and ack on their own durable consumer only;
 * - the JetStream API subjects are named per stream (`$JS.API.STREAM.MSG.GET.NEXUS_APPROVALS`),
 *   never `$JS.API.>`, except for the provisioning user.
 * Sources: NATS docs "Authorization" (publish/subscribe allow and deny lists) and
 * "JetStream wire API reference" (the `$JS.API` and `$JS.ACK` subjects).
 */
import { CONSUMERS, STREAMS } from "@nexus/contracts";

/**
 * The NATS users: one per service, plus provisioning (topology), the archiver and `operator`
 * (people with the `nats` CLI: manage and read JetStream, read every subject, publish nothing
 * under `nexus.>` — so no one at a terminal can submit a command or a decision).
 */
export const NATS_USERS = [
  "gateway",
  "command-worker",
  "approval-worker",
  "stream",
  "archiver",
  "provision",
  "operator",
] as const;
export type NatsUser = (typeof NATS_USERS)[number];

/** Publish and subscribe allow (and deny) lists of one user. */
export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

/** The inbox prefix of a service's connection (`connectNats` sets it; replies arrive below it). */
export function inboxPrefix(user: string): string {
  return `_INBOX_${user.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

const api = (...parts: string[]) => `$JS.API.${parts.join(".")}`;
const pull = (stream: string, consumer: string) => [
  api("CONSUMER.INFO", stream, consumer),
  api("CONSUMER.MSG.NEXT", stream, consumer),
  `$JS.ACK.${stream}.${consumer}.>`,
];
const common = ["$JS.API.INFO", api("STREAM.INFO", "*")];

/** The permissions of `user` (see the module doc). */
export function permissionsOf(user: NatsUser): NatsPermissions {
  const inbox = [`${inboxPrefix(user)}.>`];
  switch (user) {
    case "gateway":
      return {
        publish: {
          allow: [
            ...common,
            "nexus.cmd.*.*.*",
            "nexus.approval.*.*.*",
            "nexus.report.*.*",
            api("STREAM.MSG.GET", STREAMS.commands),
            api("STREAM.MSG.GET", STREAMS.approvals),
            api("STREAM.MSG.GET", STREAMS.reports),
            // The admin's tenant purge (DELETE /admin/tenants/…) empties these streams of one tenant.
            ...[STREAMS.reports, STREAMS.commands, STREAMS.approvals, STREAMS.notify, STREAMS.dlq].map((s) =>
              api("STREAM.PURGE", s),
            ),
            // The admin dead-letter API: requeue, read (an ordered consumer per listing), drop.
            "nexus.cmd.*.*.*.requeue",
            "nexus.approval.*.*.*.requeue",
            api("STREAM.MSG.GET", STREAMS.dlq),
            api("STREAM.MSG.DELETE", STREAMS.dlq),
            api("CONSUMER.CREATE", STREAMS.dlq, ">"),
            api("CONSUMER.DELETE", STREAMS.dlq, ">"),
            api("CONSUMER.INFO", STREAMS.dlq, ">"),
            api("CONSUMER.MSG.NEXT", STREAMS.dlq, ">"),
          ],
        },
        subscribe: { allow: inbox },
      };
    case "command-worker":
      return {
        publish: {
          allow: [
            ...common,
            ...pull(STREAMS.commands, CONSUMERS.commandWorker),
            "nexus.report.*.*",
            "nexus.notify.*.*.case_action",
            "nexus.dlq.*.*.cmd",
            "nexus.cmd.*.*.*.requeue",
            "nexus.progress.*.*",
          ],
        },
        subscribe: { allow: inbox },
      };
    case "approval-worker":
      return {
        publish: {
          allow: [
            ...common,
            ...pull(STREAMS.approvals, CONSUMERS.approvalWorker),
            "nexus.report.*.*",
            "nexus.notify.*.*.case_action",
            "nexus.dlq.*.*.approval",
            "nexus.approval.*.*.*.requeue",
            "nexus.cmd.*.*.*.approved",
            "nexus.approval.*.*.*",
            api("STREAM.MSG.GET", STREAMS.approvals),
          ],
        },
        subscribe: { allow: inbox },
      };
    case "stream":
      return {
        publish: {
          allow: [
            ...common,
            api("CONSUMER.CREATE", STREAMS.reports, ">"),
            api("CONSUMER.DELETE", STREAMS.reports, ">"),
            api("CONSUMER.INFO", STREAMS.reports, ">"),
            api("CONSUMER.MSG.NEXT", STREAMS.reports, ">"),
            api("STREAM.MSG.GET", STREAMS.reports),
            api("DIRECT.GET", STREAMS.reports),
            `${api("DIRECT.GET", STREAMS.reports)}.>`,
          ],
          deny: ["nexus.>"],
        },
        subscribe: { allow: [...inbox, "nexus.progress.*.*"] },
      };
    case "archiver":
      return {
        publish: {
          allow: [...common, ...pull(STREAMS.reports, "archiver"), api("STREAM.MSG.GET", STREAMS.reports)],
          deny: ["nexus.>"],
        },
        subscribe: { allow: inbox },
      };
    case "provision":
      return { publish: { allow: ["$JS.API.>"] }, subscribe: { allow: inbox } };
    case "operator":
      // The CLI replies on the default `_INBOX.` prefix and acks its own consumers.
      return {
        publish: { allow: ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>"], deny: ["nexus.>"] },
        subscribe: { allow: ["_INBOX.>", ...inbox, "nexus.>"] },
      };
  }
}

/** A user's credentials for the rendered config: a password, or a `$ENV_VAR` the server resolves. */
export type Credential = { password: string } | { passwordEnv: string };

const quote = (s: string) => JSON.stringify(s);

/**
 * The nats-server `authorization { users = [...] }` block for the given users (anonymous
 * connections are refused: every connection must log in as one of them).
 * @param creds per user: a literal password, or the name of an environment variable that
 *   nats-server substitutes at start (`$NEXUS_GATEWAY_NATS_PASSWORD`).
 */
export function authorizationConfig(creds: Partial<Record<NatsUser, Credential>>): string {
  const users = (Object.entries(creds) as [NatsUser, Credential][]).map(([user, c]) => {
    const p = permissionsOf(user);
    const list = (xs: string[]) => `[${xs.map(quote).join(", ")}]`;
    const side = (s: { allow: string[]; deny?: string[] }) =>
      `{ allow: ${list(s.allow)}${s.deny ? `, deny: ${list(s.deny)}` : ""} }`;
    const password = "password" in c ? quote(c.password) : `$${c.passwordEnv}`;
    return `    { user: ${quote(user)}, password: ${password}, permissions: { publish: ${side(p.publish)}, subscribe: ${side(p.subscribe)} } }`;
  });
  return `authorization {\n  users = [\n${users.join("\n")}\n  ]\n}\n`;
}

/** The environment variable holding `user`'s password in the deployment configs. */
export function passwordEnvOf(user: NatsUser): string {
  return `NEXUS_${user.toUpperCase().replace(/-/g, "_")}_NATS_PASSWORD`;
}
