import type { ServerResponse } from "node:http";
import type { ApiError } from "@nexus/contracts";
import { errorFrame, pingFrame, RETRY_FRAME, type ReportFrame } from "./frames.ts";

/** Why a connection ended; used for logs and the `nexus_sse_disconnects_total` metric. */
export type CloseReason =
  | "client" // the client went away
  | "slow" // live backlog over SSE_MAX_BUFFERED_BYTES
  | "drain_timeout" // snapshot/replay backlog did not drain within SSE_DRAIN_TIMEOUT_MS
  | "shutdown" // the service is stopping (invariant 8)
  | "hub_failed" // the tenant's JetStream read stopped
  | "replay_gap" // retention overtook a replay; the client resumes from its last id
  | "credential_expired" // its token or ticket's credential expired (after an `error` CREDENTIAL_EXPIRED)
  | "error"; // NATS or Postgres failed while setting the connection up

/**
 * The slow-client policy: when the next event of a live connection is due (a report or a
 * ping) and its socket still holds more than `maxBufferedBytes` bytes that the kernel has not
 * accepted yet, the connection is ended. Nothing is lost by ending it: the client reconnects
 * with the last id it received and replay resends the rest.
 *
 * @param writableLength bytes queued in the Node socket (`res.writableLength`).
 * @param maxBufferedBytes `SSE_MAX_BUFFERED_BYTES`.
 */
export function isTooSlow(writableLength: number, maxBufferedBytes: number): boolean {
  return writableLength > maxBufferedBytes;
}

/** Options of {@link SseConnection}. */
export interface SseConnectionOptions {
  /** `SSE_HEARTBEAT_MS`: interval of `ping` events. */
  heartbeatMs: number;
  /** `SSE_MAX_BUFFERED_BYTES`: see {@link isTooSlow}. */
  maxBufferedBytes: number;
  /** `SSE_DRAIN_TIMEOUT_MS`: how long {@link SseConnection.writable} waits. */
  drainTimeoutMs: number;
  /** Called for every write of reports, with how many it carried. */
  onReportSent?: (n: number) => void;
  /** Called once when the connection ends, with the reason. */
  onClose?: (reason: CloseReason) => void;
  now?: () => Date;
}

/**
 * One SSE response: writes frames, keeps the id guard, sends heartbeats, applies the
 * slow-client policy, and tears down exactly once.
 *
 * Two phases: while `live` is false (snapshot, replay, the catch-up copy at the hub handoff)
 * the writer respects backpressure by awaiting {@link writable}; once live (fed synchronously
 * by a hub) it cannot wait, so a backlog over `maxBufferedBytes` ends the connection instead
 * (see {@link isTooSlow}).
 */
export class SseConnection {
  /**
   * The highest report_id written (the snapshot's id counts). Reports at or below it are never
   * written again, so report_id strictly increases per connection (invariant 5). -1 = none yet.
   */
  lastSent = -1;
  /** True once fed by a hub (see class doc). */
  live = false;
  closed = false;
  closeReason: CloseReason | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly cleanups: (() => void)[] = [];
  /** True while writes are corked until the end of the current tick (see {@link put}). */
  private corked = false;
  /** `res.writableLength` when this tick's writes were corked: the backlog of earlier ticks. */
  private backlogAtCork = 0;
  private readonly now: () => Date;

  readonly res: ServerResponse;
  private readonly opts: SseConnectionOptions;

  constructor(res: ServerResponse, opts: SseConnectionOptions) {
    this.res = res;
    this.opts = opts;
    this.now = opts.now ?? (() => new Date());
    res.on("close", () => this.close("client"));
    res.on("error", () => this.close("client"));
  }

  /** Writes the status line, SSE headers and `retry: 3000`. */
  start(): void {
    this.res.writeHead(200, {
      // SSE is always UTF-8; the bare type is what docs/contract.md states.
      "Content-Type": "text/event-stream",
      "Cache-Control": "no-cache",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    this.res.flushHeaders();
    this.write(RETRY_FRAME);
  }

  /**
   * Starts the `ping` heartbeat. Called once the connection's first event (`snapshot`, or the
   * first replayed report) is decided, so a `ping` never comes before a snapshot or between an
   * `error` and the snapshot that follows it.
   */
  startHeartbeat(): void {
    if (this.closed || this.heartbeat) return;
    this.heartbeat = setInterval(() => this.write(pingFrame(this.now())), this.opts.heartbeatMs);
  }

  /** Registers teardown work (detach from a hub, release a lease). Runs at once if already closed. */
  addTeardown(fn: () => void): void {
    if (this.closed) fn();
    else this.cleanups.push(fn);
  }

  /**
   * Writes a report unless its seq is at or below {@link lastSent} (duplicate or out-of-order).
   * @returns true when written.
   */
  sendReport(r: ReportFrame): boolean {
    if (this.closed || r.seq <= this.lastSent) return false;
    if (!this.write(r.frame)) return false;
    this.lastSent = r.seq;
    this.opts.onReportSent?.(1);
    return true;
  }

  /**
   * Writes a replayed batch in one socket write: the frames in order, leaving out any whose seq
   * is at or below the last written (the same guard as {@link sendReport}, frame by frame).
   * @returns how many reports were written.
   */
  sendReports(frames: readonly ReportFrame[]): number {
    if (this.closed) return 0;
    let out = "";
    let last = this.lastSent;
    let n = 0;
    for (const f of frames) {
      if (f.seq <= last) continue;
      out += f.frame;
      last = f.seq;
      n++;
    }
    if (n === 0 || !this.write(out)) return 0;
    this.lastSent = last;
    this.opts.onReportSent?.(n);
    return n;
  }

  /** Writes a snapshot frame standing for report_id `seq`. */
  sendSnapshot(seq: number, frame: string): void {
    if (this.closed) return;
    this.lastSent = Math.max(this.lastSent, seq);
    this.write(frame);
  }

  /**
   * Writes a `progress` frame (no id) to a live connection. Progress is best-effort and never
   * ends a connection: it is skipped while the connection is not live yet (snapshot, replay,
   * handoff) and while the socket holds more than half of `maxBufferedBytes` (a slow client then
   * loses progress, never reports). It does not touch {@link lastSent}.
   * @returns true when written.
   */
  sendProgress(frame: string): boolean {
    if (this.closed || !this.live || this.res.writableEnded) return false;
    if (this.backlog() > this.opts.maxBufferedBytes / 2) return false;
    this.put(frame);
    return true;
  }

  /** Writes an `error` event (no id). */
  sendError(error: ApiError): void {
    this.write(errorFrame(error, this.now()));
  }

  /**
   * Resolves once the socket's backlog is at most `limitBytes` (at once when it is).
   * Ends the connection with `drain_timeout` when that takes longer than `drainTimeoutMs`.
   * @param limitBytes defaults to `maxBufferedBytes`.
   * @returns false when the connection is (or became) closed.
   */
  async writable(limitBytes = this.opts.maxBufferedBytes): Promise<boolean> {
    const deadline = Date.now() + this.opts.drainTimeoutMs;
    while (!this.closed && this.res.writableLength > limitBytes) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.close("drain_timeout");
        break;
      }
      // 'drain' only fires after a write() that returned false; otherwise poll briefly.
      const wait = this.res.writableNeedDrain ? left : Math.min(left, 10);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.res.off("drain", done);
          this.res.off("close", done);
          resolve();
        };
        const timer = setTimeout(done, wait);
        this.res.on("drain", done);
        this.res.on("close", done);
      });
    }
    return !this.closed;
  }

  /**
   * Ends the connection once: stops the heartbeat, runs the teardown work, then ends the
   * response (`shutdown`, `hub_failed`, `replay_gap`, `credential_expired`, `error`: the bytes already queued are
   * still delivered, so the client keeps its last id) or destroys the socket (`slow`,
   * `drain_timeout`: the client is not reading, queued bytes would only hold memory).
   */
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    clearInterval(this.heartbeat);
    for (const fn of this.cleanups.splice(0)) {
      try {
        fn();
      } catch {}
    }
    if (reason === "slow" || reason === "drain_timeout") this.res.destroy();
    else if (!this.res.writableEnded) this.res.end();
    this.opts.onClose?.(reason);
  }

  /** @returns false when nothing was written (closed, or just ended as slow). */
  private write(chunk: string): boolean {
    if (this.closed || this.res.writableEnded) return false;
    // Judge the backlog left by earlier turns, not this one: a frame larger than the limit, or
    // a burst of frames in one turn, is fine for a client that keeps reading.
    if (this.live && isTooSlow(this.backlog(), this.opts.maxBufferedBytes)) {
      this.close("slow");
      return false;
    }
    this.put(chunk);
    return true;
  }

  /**
   * Bytes the client has not taken yet from earlier ticks. The frames of the current tick are
   * corked, not a backlog: a burst written in one turn must not count as a slow client.
   */
  private backlog(): number {
    return this.corked ? this.backlogAtCork : this.res.writableLength;
  }

  /**
   * Writes a chunk, corked until the end of the current tick. Node's http layer already sends
   * the chunks of one tick in one socket write; corking here marks where the turn began, so
   * that {@link backlog} can tell this turn's frames (about to leave) from a backlog that
   * earlier turns left behind.
   */
  private put(chunk: string): void {
    if (!this.corked) {
      this.backlogAtCork = this.res.writableLength;
      this.corked = true;
      this.res.cork();
      process.nextTick(() => {
        this.corked = false;
        this.res.uncork();
      });
    }
    this.res.write(chunk);
  }
}
