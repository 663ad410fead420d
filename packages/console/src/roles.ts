/**
 * What the signed-in principal may do, from `snapshot.principal.roles` (docs/contract.md "Roles").
 * Without a principal (header mode, a trusted network) everything is shown; the server decides
 * in any case and answers `403 FORBIDDEN` otherwise.
 */
import type { Principal } from "./state.ts";

/** The controls the console shows. */
export interface Permissions {
  /** Approve / Reject: `approver` or `admin`. */
  decide: boolean;
  /** The composer: `operator` or `admin`. */
  operate: boolean;
  /** Settings: `admin`. */
  administer: boolean;
}

/** Permissions of `principal`; all `true` when there is none. */
export function permissions(principal: Principal | null): Permissions {
  if (!principal) return { decide: true, operate: true, administer: true };
  const has = (r: string) => principal.roles.includes(r);
  const admin = has("admin");
  return { decide: admin || has("approver"), operate: admin || has("operator"), administer: admin };
}
