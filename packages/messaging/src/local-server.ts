import fs from "node:fs";
import path from "node:path";

/**
 * Largest NATS message, bytes (4 MiB). The server's default (1 MB) is smaller than a legal
 * command: `doc.summary.create` text may be 1 MiB and a request body 2 MiB.
 */
export const NATS_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * Arguments for a local `nats-server` with JetStream on 127.0.0.1: `max_payload` (and the
 * `authorization` block, when given — see `authorizationConfig`) can only be set in a config
 * file, so one is written next to the store directory, readable by its owner only.
 * @param port the client port; -1 lets the server choose one (read it from its ports file,
 *   `--ports_file_dir`).
 */
export function natsServerArgs(port: number, storeDir: string, authorization?: string): string[] {
  const conf = path.join(storeDir, "nexus-nats.conf");
  fs.mkdirSync(storeDir, { recursive: true });
  fs.writeFileSync(conf, `max_payload: ${NATS_MAX_PAYLOAD_BYTES}\n${authorization ?? ""}`, { mode: 0o600 });
  return ["-c", conf, "-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir];
}
