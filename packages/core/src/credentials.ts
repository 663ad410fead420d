/**
 * Credentials kept by the back end, hashed at rest: admin-minted API keys and one-use stream
 * tickets. Secrets are random 32-byte strings (base64url); only their SHA-256 is stored, and
 * presented secrets are compared by hash (a timing-safe equality on fixed-length digests).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Tenant } from "@nexus/contracts";
import type { Db } from "./db/schema.ts";

/** SHA-256 (hex) of a secret. */
export function secretHash(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** True when `presented` hashes to `hash` (compared in constant time). */
export function secretMatches(presented: string, hash: string): boolean {
  const a = Buffer.from(secretHash(presented), "hex");
  const b = Buffer.from(hash, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A fresh secret: 32 random bytes, base64url. */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** The tenants an API key covers. */
export type KeyTenants = (Tenant | "*")[];

/** A stored API key (without its secret). */
export interface ApiKeyRecord {
  id: string;
  principal: string;
  roles: string[];
  tenants: KeyTenants;
  created_by: string;
  created_at: Date;
  revoked_at: Date | null;
}

/** API keys look like `nxk_<id>_<secret>`; the id (12 characters of base64url) finds the row. */
export const API_KEY_RE = /^nxk_([A-Za-z0-9_-]{12})_([A-Za-z0-9_-]{43})$/;

/**
 * Mints an API key: stores its id, the secret's hash, principal, roles and tenants.
 * @returns the record and the key itself, shown once and never stored.
 */
export async function createApiKey(
  db: Db,
  k: { principal: string; roles: string[]; tenants: KeyTenants; createdBy: string },
): Promise<{ record: ApiKeyRecord; key: string }> {
  const id = randomBytes(9).toString("base64url");
  const secret = newSecret();
  const row = await db
    .insertInto("api_keys")
    .values({
      id,
      secret_hash: secretHash(secret),
      principal: k.principal,
      roles: JSON.stringify(k.roles),
      tenants: JSON.stringify(k.tenants),
      created_by: k.createdBy,
    })
    .returning(["id", "principal", "roles", "tenants", "created_by", "created_at", "revoked_at"])
    .executeTakeFirstOrThrow();
  return { record: row, key: `nxk_${id}_${secret}` };
}

/** The unrevoked key a presented `nxk_…` string names, when its secret matches; else `undefined`. */
export async function findApiKey(db: Db, presented: string): Promise<ApiKeyRecord | undefined> {
  const m = API_KEY_RE.exec(presented);
  if (!m) return undefined;
  const row = await db
    .selectFrom("api_keys")
    .selectAll()
    .where("id", "=", m[1] as string)
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  if (!row || !secretMatches(m[2] as string, row.secret_hash)) return undefined;
  const { secret_hash: _hidden, ...record } = row;
  return record;
}

/** Every key, newest first (no secrets). */
export async function listApiKeys(db: Db): Promise<ApiKeyRecord[]> {
  return db
    .selectFrom("api_keys")
    .select(["id", "principal", "roles", "tenants", "created_by", "created_at", "revoked_at"])
    .orderBy("created_at", "desc")
    .execute();
}

/** Revokes a key. @returns false when there is no such unrevoked key. */
export async function revokeApiKey(db: Db, id: string, now: Date): Promise<boolean> {
  const r = await db
    .updateTable("api_keys")
    .set({ revoked_at: now })
    .where("id", "=", id)
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** What a stream ticket stands for. */
export interface TicketGrant {
  tenant: Tenant;
  principal: string;
  roles: string[];
  /** When the credential it was issued for expires (ms since the epoch), if it does. */
  credentialExpiresAt?: number;
}

/** Issues a one-use ticket valid for `ttlMs` (at most 60 s). @returns the ticket and its expiry. */
export async function issueTicket(
  db: Db,
  g: TicketGrant,
  now: Date,
  ttlMs = 60_000,
): Promise<{ ticket: string; expiresAt: Date }> {
  const ticket = `nxt_${newSecret()}`;
  const expiresAt = new Date(now.getTime() + Math.min(ttlMs, 60_000));
  await db
    .insertInto("stream_tickets")
    .values({
      ticket_hash: secretHash(ticket),
      org_id: g.tenant.org_id,
      project_id: g.tenant.project_id,
      principal: g.principal,
      roles: JSON.stringify(g.roles),
      expires_at: expiresAt,
      credential_expires_at: g.credentialExpiresAt ? new Date(g.credentialExpiresAt) : null,
    })
    .execute();
  return { ticket, expiresAt };
}

/**
 * Redeems a ticket, once: a conditional update marks it used only while unused and unexpired,
 * so of any number of concurrent redemptions exactly one gets the grant.
 * @returns the grant, or `undefined` (unknown, used or expired).
 */
export async function redeemTicket(db: Db, ticket: string, now: Date): Promise<TicketGrant | undefined> {
  if (!/^nxt_[A-Za-z0-9_-]{43}$/.test(ticket)) return undefined;
  const row = await db
    .updateTable("stream_tickets")
    .set({ used_at: now })
    .where("ticket_hash", "=", secretHash(ticket))
    .where("used_at", "is", null)
    .where("expires_at", ">", now)
    .returningAll()
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    tenant: { org_id: row.org_id, project_id: row.project_id },
    principal: row.principal,
    roles: row.roles,
    ...(row.credential_expires_at ? { credentialExpiresAt: row.credential_expires_at.getTime() } : {}),
  };
}

/** Deletes tickets that expired more than a minute ago. @returns how many. */
export async function pruneTickets(db: Db, now: Date): Promise<number> {
  const r = await db
    .deleteFrom("stream_tickets")
    .where("expires_at", "<", new Date(now.getTime() - 60_000))
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
