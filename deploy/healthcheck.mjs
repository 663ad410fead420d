// Container health probe: `node deploy/healthcheck.mjs [/health|/ready]` exits 0 when the
// service in this container answers 2xx on that path (default /health), 1 otherwise.
//
// The port is PORT when set, else the service's default port, found from the command line of
// the container's main process (every service runs as `node --import tsx services/<name>/src/main.ts`).
// A container that runs no service (the provisioning one-off) has nothing to check: exit 0.
import { readFileSync } from "node:fs";

const DEFAULT_PORTS = { gateway: 8080, stream: 8081, "command-worker": 8082, "approval-worker": 8083 };

function servicePort() {
  if (process.env.PORT) return Number(process.env.PORT);
  try {
    const cmdline = readFileSync("/proc/1/cmdline", "utf8").replaceAll("\0", " ");
    const name = /services\/([a-z-]+)\/src\/main\.ts/.exec(cmdline)?.[1];
    return name ? DEFAULT_PORTS[name] : undefined;
  } catch {
    return undefined;
  }
}

const port = servicePort();
if (port === undefined) process.exit(0);
const path = process.argv[2] ?? "/health";
try {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2500) });
  process.exit(res.ok ? 0 : 1);
} catch {
  process.exit(1);
}
