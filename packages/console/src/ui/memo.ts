/**
 * `memo` without preact/compat: a component that re-renders only when a prop changed
 * (shallow, by identity). Rows of the worklog are memoised this way, so a report re-renders
 * the one row it changed.
 */
import { Component, type ComponentChildren, type FunctionComponent, h } from "preact";

/** True when `a` and `b` have the same keys with identical values. */
export function shallowEqual(a: object, b: object): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if ((a as Record<string, unknown>)[k] !== (b as Record<string, unknown>)[k]) return false;
  return true;
}

/** Wraps `fn` so it renders again only when its props change (shallow comparison). */
export function memo<P extends object>(fn: FunctionComponent<P>): FunctionComponent<P> {
  class Memo extends Component<P> {
    override shouldComponentUpdate(next: P): boolean {
      return !shallowEqual(this.props, next);
    }
    override render(props: P & { children?: ComponentChildren }) {
      return h(fn as FunctionComponent<P>, props);
    }
  }
  (Memo as unknown as { displayName: string }).displayName = `Memo(${fn.name})`;
  return Memo as unknown as FunctionComponent<P>;
}

/**
 * Focuses the element with `id` after the next render (and scrolls it into view when needed);
 * waits up to `tries` frames for it to appear (a lazily loaded view takes a few).
 */
export function focusById(id: string, tries = 60): void {
  const attempt = (left: number) => {
    const el = document.getElementById(id);
    if (el) {
      el.focus({ preventScroll: false });
      return;
    }
    if (left > 0) requestAnimationFrame(() => attempt(left - 1));
  };
  requestAnimationFrame(() => attempt(tries));
}

/** True when focus was lost (it sits on the body or nowhere). */
export function focusLost(): boolean {
  const a = document.activeElement;
  return a === null || a === document.body || !a.isConnected;
}
