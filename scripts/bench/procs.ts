/**
 * Child processes of the bench and their clean-up: every server the bench starts is registered
 * in a {@link Cleanup}, stopped in reverse order at the end, on failure and on Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

/** Things to undo at the end, last registered first. */
export class Cleanup {
  private readonly steps: { name: string; fn: () => Promise<void> | void }[] = [];
  private running: Promise<void> | undefined;

  /** Registers `fn` (named for the progress log); it runs at most once. */
  add(name: string, fn: () => Promise<void> | void): void {
    this.steps.push({ name, fn });
  }

  /**
   * Runs every step, newest first, each bounded to `stepTimeoutMs` (default 20000); a failing
   * step is reported through `log` and the others still run. Idempotent.
   */
  run(log: (line: string) => void, stepTimeoutMs = 20_000): Promise<void> {
    this.running ??= (async () => {
      while (this.steps.length > 0) {
        const s = this.steps.pop()!;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            s.fn(),
            new Promise((_, rej) => {
              timer = setTimeout(() => rej(new Error(`timed out after ${stepTimeoutMs} ms`)), stepTimeoutMs);
            }),
          ]);
        } catch (err) {
          log(`cleanup: ${s.name}: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return this.running;
  }
}

/** A server process started by {@link spawnReadyProcess}. */
export interface ReadyProcess {
  name: string;
  pid: number;
  /** The port it reported (0 when it serves no HTTP). */
  port: number;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/**
 * Starts `node <file>` with `env` and waits for its first stdout line `{"ready":true,"port":N}`.
 * Its output goes to `<logDir>/<name>.log`.
 * @throws when it exits or stays silent for `timeoutMs` (default 30000), with the log's tail.
 */
export async function spawnReadyProcess(o: {
  name: string;
  file: string;
  env: Record<string, string>;
  logDir: string;
  timeoutMs?: number;
}): Promise<ReadyProcess> {
  const logPath = path.join(o.logDir, `${o.name}.log`);
  const log = fs.createWriteStream(logPath, { flags: "a" });
  const child = spawn(process.execPath, [o.file], {
    env: { ...process.env, ...o.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr.pipe(log);
  const tail = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, "utf8").slice(-2000) : "");
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${o.name} not ready after ${o.timeoutMs ?? 30_000} ms`)),
      o.timeoutMs ?? 30_000,
    );
    const lines = readline.createInterface({ input: child.stdout });
    let ready = false;
    lines.on("line", (line) => {
      if (!ready && line.startsWith("{")) {
        try {
          const msg = JSON.parse(line) as { ready?: boolean; port?: number };
          if (msg.ready) {
            ready = true;
            clearTimeout(timer);
            resolve(msg.port ?? 0);
            return;
          }
        } catch {}
      }
      log.write(`${line}\n`);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (!ready) setTimeout(() => reject(new Error(`${o.name} exited (${code ?? signal}):\n${tail()}`)), 100);
    });
  });
  return {
    name: o.name,
    pid: child.pid!,
    port,
    child,
    stop: () => stopChild(child),
  };
}

/** SIGTERM, then SIGKILL when the process is still there after `graceMs` (default 5000). */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([gone, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}
