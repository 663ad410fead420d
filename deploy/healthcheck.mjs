// Container health probe: `node deploy/healthcheck.mjs [/health|/ready]` exits 0 when the
// service in this container answers 2xx on that path (default /health), 1 otherwise.
//
// The port is PORT when set, else the default port of the image's service (SERVICE, set by
// deploy/Dockerfile), else of the service named by the main process's command line
// (`node services/<name>/src/main.ts`).
// A container that runs no service (the provisioning one-off) has nothing to check: exit 0.
import { readFileSync } from "node:fs";

const DEFAULT_PORTS = { gateway: 8080, stream: 8081, "command-worker": 8082, "approval-worker": 8083, archiver: 8084 };

function servicePort() {
  if (process.env.PORT) return Number(process.env.PORT);
  if (process.env.SERVICE && DEFAULT_PORTS[process.env.SERVICE]) {
    // The provisioning one-off runs provision.ts, not main.ts: nothing listens.
    const cmd = readCmdline();
    if (cmd && !cmd.includes("/src/main.ts")) return undefined;
    return DEFAULT_PORTS[process.env.SERVICE];
  }
  try {
    const cmdline = readFileSync("/proc/1/cmdline", "utf8").replaceAll("\0", " ");
    const name = /services\/([a-z-]+)\/src\/main\.ts/.exec(cmdline)?.[1];
    return name ? DEFAULT_PORTS[name] : undefined;
  } catch {
    return undefined;
  }
}

function readCmdline() {
  try {
    return readFileSync("/proc/1/cmdline", "utf8").replaceAll("\0", " ");
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
