import { CircuitState, type IBreaker } from "cockatiel";

/** Options of {@link WindowBreaker}. */
export interface WindowBreakerOptions {
  /** `BREAKER_FAIL_THRESHOLD`: failures within the window that open the circuit. */
  failThreshold: number;
  /** `BREAKER_WINDOW_SECONDS` × 1000: the sliding window, ms. */
  windowMs: number;
  now?: () => number;
}

/**
 * A cockatiel breaker (the circuit's open/half-open/closed machine is cockatiel's
 * `CircuitBreakerPolicy`; this decides when to open): the circuit opens when
 * `failThreshold` calls failed within the last `windowMs`, and again at once when the one
 * trial call of the half-open state fails. A successful trial call closes it and forgets the
 * failures.
 */
export class WindowBreaker implements IBreaker {
  private failures: number[] = [];
  private readonly o: WindowBreakerOptions;
  private readonly now: () => number;

  constructor(o: WindowBreakerOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  get state(): unknown {
    return { failures: [...this.failures] };
  }

  set state(value: unknown) {
    const f = (value as { failures?: unknown } | null)?.failures;
    this.failures = Array.isArray(f) ? f.filter((x): x is number => typeof x === "number") : [];
  }

  success(state: CircuitState): void {
    if (state === CircuitState.HalfOpen) this.failures = [];
  }

  failure(state: CircuitState): boolean {
    const t = this.now();
    this.failures = this.failures.filter((x) => x > t - this.o.windowMs);
    this.failures.push(t);
    if (state === CircuitState.HalfOpen) return true;
    return this.failures.length >= this.o.failThreshold;
  }
}

/** A breaker state as metrics and logs name it. */
export type BreakerStateName = "closed" | "open" | "half_open" | "isolated";

/** cockatiel's state as a {@link BreakerStateName}. */
export function breakerStateName(s: CircuitState): BreakerStateName {
  switch (s) {
    case CircuitState.Closed:
      return "closed";
    case CircuitState.Open:
      return "open";
    case CircuitState.HalfOpen:
      return "half_open";
    default:
      return "isolated";
  }
}
