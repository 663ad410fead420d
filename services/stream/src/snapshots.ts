/**
 * Snapshot reads shared by the connections of one tenant that ask at the same time.
 *
 * A burst of new connections for one tenant — every console of an organisation reconnecting
 * after a stream-service restart, a dashboard opened in many tabs — used to cost one Postgres
 * snapshot read each. 140 at once queued on the pool that every tenant's snapshots share, waited
 * past `PG_ACQUIRE_TIMEOUT_MS` and ended with `DEPENDENCY_UNAVAILABLE`, other tenants' new
 * streams with them (docs/architecture.md invariant 10). Here a tenant has at most one read
 * running and one waiting: a connection joins the waiting read, or queues one; so a burst of any
 * size costs about two reads per tenant.
 *
 * Invariant 6 (W first, then the database): a connection calls this *after* reading its W, and
 * joins only a read that has not started yet, never the running one (which may have begun
 * before its W was read). Every read therefore starts after the W of every connection that gets
 * its result, and each connection's snapshot frame carries its own W. Applying the reports after
 * W to a state read later is harmless: reports carry entity state (docs/contract.md), which is
 * why a snapshot may be newer than its `report_id`, never older.
 *
 * The same idea as group commit (`groupCommit` in `@nexus/core`), per tenant instead of across
 * tenants, so one tenant's slow read never delays another's.
 */

/** Reads one tenant's state (`readSnapshot` of `@nexus/core`, with the database bound). */
export type TenantRead<K, T> = (key: K) => Promise<T>;

/** A read waiting for the running one to finish, and everyone who joined it. */
interface Waiting<T> {
  promise: Promise<T>;
  start: () => void;
}

/** Per tenant: the read running, and the one waiting to start after it. */
interface Slot<T> {
  running: Promise<unknown>;
  waiting?: Waiting<T>;
}

/**
 * Wraps `read` so that concurrent calls for the same key share reads as described in the module
 * doc: the first call starts a read at once; calls made while it runs share one read that starts
 * when it settles; calls made while no read runs start one.
 * @param keyOf the tenant's identity (e.g. `org/project`); calls with equal keys share.
 * @returns the shared reader; its promise settles with the read's value or error (a failed read
 *   fails every caller that shared it, each may retry).
 */
export function sharedReads<K, T>(read: TenantRead<K, T>, keyOf: (key: K) => string): TenantRead<K, T> {
  const slots = new Map<string, Slot<T>>();

  const run = (id: string, key: K): Promise<T> => {
    const p = read(key);
    const slot = slots.get(id);
    if (slot) slot.running = p;
    else slots.set(id, { running: p });
    const next = () => {
      const s = slots.get(id);
      if (!s) return;
      const w = s.waiting;
      if (w) {
        s.waiting = undefined;
        w.start();
      } else slots.delete(id);
    };
    p.then(next, next);
    return p;
  };

  return (key) => {
    const id = keyOf(key);
    const slot = slots.get(id);
    if (!slot) return run(id, key);
    if (slot.waiting) return slot.waiting.promise;
    let start!: () => void;
    const promise = new Promise<T>((resolve, reject) => {
      start = () => run(id, key).then(resolve, reject);
    });
    slot.waiting = { promise, start };
    return promise;
  };
}
