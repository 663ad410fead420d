/**
 * Group commit: the statements of many concurrent callers, of one kind, run as one statement.
 *
 * A worker runs many jobs at once, and each job's transition is one short autocommit statement
 * (insert a command, complete it, read its tenant's settings). Sent one by one, every job pays a
 * round trip, a statement and a WAL flush of its own; under load those dominate the job. A
 * {@link groupCommit} queues the callers' items and runs them through one multi-row statement:
 * the first item goes out at once (no added latency on an idle worker); items that arrive while
 * `maxInFlight` batches are running wait and go out together as the next batch when one
 * returns ("natural batching": batches grow with the load). This is the same idea as Postgres'
 * own group commit of WAL flushes and Kafka's producer batching.
 *
 * Natural batching alone does not batch a moderate load: when a statement takes 0.5 ms and
 * items come 2 ms apart, every item finds a free slot and goes out alone, and each pays a
 * round trip, a statement, a commit and the wake-ups of two processes — on a small machine the
 * dominant cost, which then falls only once the load has saturated it. `lingerMs` adds a
 * pause: an item that opens a batch within `lingerMs` of the item before it (a steady stream)
 * waits `lingerMs`, and the items of that time join its batch; an item after a longer pause
 * goes out at once. An isolated item is never delayed, and the linger adds at most `lingerMs`
 * to an item's wait. (Kafka's producer has `linger.ms` for the same trade, 5 ms by default
 * since Kafka 4.0 (KIP-1030); this variant sends the first item after a pause at once, like
 * Nagle's algorithm, RFC 896.)
 *
 * A batch is one statement, so it commits or fails as a whole. The `run` function must keep
 * each item's transition as conditional as it is alone (`on conflict do nothing`, `where status
 * = …`), so that batching changes only how many round trips are paid, not what happens. When a
 * batch fails for a reason of its own (a constraint, bad data, a deadlock), its items are run
 * again one by one, so one bad item fails alone; when the database is unreachable
 * (`isPgUnavailable`), every caller gets the error at once.
 */
import { isPgUnavailable } from "../errors.ts";

/** Options of {@link groupCommit}. */
export interface GroupCommitOptions {
  /** Most items per statement (default 256). */
  maxBatch?: number;
  /** Most statements running at once (default 2): one may be sent while another is out. */
  maxInFlight?: number;
  /**
   * How long a batch opened within this many ms of the item before it waits for more items,
   * ms (default 0: never); an item after a longer pause goes out at once. See the module doc.
   */
  lingerMs?: number;
  /** The clock of `lingerMs`, ms (default `performance.now`; tests pass their own). */
  now?: () => number;
  /**
   * Called after every statement with its item count and outcome: `ok`; `failed` (its items
   * got the error); `split` (it failed and its items run again one by one, each of those
   * statements reported too). For metrics.
   */
  onStatement?: (items: number, outcome: "ok" | "failed" | "split") => void;
}

/** Counters of a {@link GroupCommit}, for tests and metrics. */
export interface GroupCommitStats {
  /** Statements run (batches, and the single-item retries of failed batches). */
  statements: number;
  /** Items handed in. */
  items: number;
  /** The largest batch so far. */
  largestBatch: number;
  /** Batches that failed and were run again item by item. */
  splits: number;
}

/** A batched statement: call it with one item, get that item's result. */
export interface GroupCommit<I, O> {
  (item: I): Promise<O>;
  /** Counters since creation. */
  readonly stats: GroupCommitStats;
}

interface Waiter<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Wraps a multi-row statement as a per-item function with natural batching (module doc).
 * @param run runs one statement for `items` and returns one result per item, in their order;
 *   it must not depend on how items are grouped.
 * @returns the per-item function; it rejects with `run`'s error (for a failed batch of one, or
 *   when Postgres is unavailable), or with an `Error` when `run` returned the wrong number of
 *   results.
 */
export function groupCommit<I, O>(
  run: (items: readonly I[]) => Promise<readonly O[]>,
  options: GroupCommitOptions = {},
): GroupCommit<I, O> {
  const maxBatch = options.maxBatch ?? 256;
  const maxInFlight = options.maxInFlight ?? 2;
  const lingerMs = options.lingerMs ?? 0;
  const now = options.now ?? (() => performance.now());
  /** When the last item came (`now()`), and how long before it the one before came, for `lingerMs`. */
  let lastItem = Number.NEGATIVE_INFINITY;
  let sinceLastItem = Number.POSITIVE_INFINITY;
  const stats: GroupCommitStats = { statements: 0, items: 0, largestBatch: 0, splits: 0 };
  let queue: Waiter<I, O>[] = [];
  let inFlight = 0;
  let scheduled = false;

  const runChecked = async (items: readonly I[]): Promise<readonly O[]> => {
    stats.statements++;
    const out = await run(items);
    if (out.length !== items.length) throw new Error(`group commit: ${out.length} results for ${items.length} items`);
    return out;
  };

  /** Runs one item alone (after a split), reporting its statement. */
  const runAlone = (w: Waiter<I, O>): Promise<void> =>
    runChecked([w.item]).then(
      (o) => {
        options.onStatement?.(1, "ok");
        w.resolve(o[0] as O);
      },
      (e: unknown) => {
        options.onStatement?.(1, "failed");
        w.reject(e);
      },
    );

  const execute = async (batch: Waiter<I, O>[]): Promise<void> => {
    stats.largestBatch = Math.max(stats.largestBatch, batch.length);
    let out: readonly O[];
    try {
      out = await runChecked(batch.map((w) => w.item));
    } catch (err) {
      if (batch.length === 1 || isPgUnavailable(err)) {
        options.onStatement?.(batch.length, "failed");
        for (const w of batch) w.reject(err);
        return;
      }
      stats.splits++;
      options.onStatement?.(batch.length, "split");
      await Promise.all(batch.map(runAlone));
      return;
    }
    options.onStatement?.(batch.length, "ok");
    batch.forEach((w, i) => {
      w.resolve(out[i] as O);
    });
  };

  const flush = (): void => {
    scheduled = false;
    while (queue.length > 0 && inFlight < maxInFlight) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      inFlight++;
      void execute(batch).finally(() => {
        inFlight--;
        schedule();
      });
    }
  };

  const schedule = (): void => {
    if (scheduled || queue.length === 0 || inFlight >= maxInFlight) return;
    scheduled = true;
    // A microtask when no linger is due (no linger, or the first item after a pause): the items
    // handed in during the current turn join this batch. Otherwise a timer: the items of the
    // next `lingerMs` join it as well.
    if (lingerMs > 0 && sinceLastItem < lingerMs) setTimeout(flush, lingerMs);
    else queueMicrotask(flush);
  };

  const call = (item: I): Promise<O> =>
    new Promise<O>((resolve, reject) => {
      stats.items++;
      if (lingerMs > 0) {
        const t = now();
        sinceLastItem = t - lastItem;
        lastItem = t;
      }
      queue.push({ item, resolve, reject });
      schedule();
    });
  return Object.assign(call, { stats });
}
