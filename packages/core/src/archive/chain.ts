/**
 * The chain rules of the tamper-evident audit (docs/archive.md "Audit"): everything a verifier
 * needs and nothing else, so `pnpm audit:verify` and the archiver agree by construction.
 *
 * Per tenant, the archived reports form a hash chain in `report_id` order:
 *
 *     hash(n) = hex(SHA-256(UTF-8(canonical({ prev_hash: hash(n-1), org_id, project_id,
 *                                             report_id, report }))))
 *
 * - `report_id` is the decimal string of the JetStream sequence; `report` is the ReportMessage
 *   exactly as published, parsed as JSON (so it is the value, not the bytes, that is hashed:
 *   whitespace or key order of a re-serialisation cannot break the chain, any change of a value
 *   does).
 * - `canonical` is RFC 8785, the JSON Canonicalization Scheme (JCS): keys sorted by UTF-16 code
 *   units, no whitespace, strings and numbers serialised as ECMAScript's `JSON.stringify` does.
 *   It is computed by `canonicalJson` of `@nexus/contracts`, which is exactly JCS for every
 *   value `JSON.parse` produces (the only inputs here); the contracts tests check it against
 *   RFC 8785's own examples and against the `canonicalize` reference implementation.
 * - The first report of a tenant has `prev_hash` = {@link GENESIS_HASH} (64 zeros). A purge or a
 *   pruning does not restart the chain: the next report links to the last hash before it.
 */
import { hash } from "node:crypto";
import { canonicalJson } from "@nexus/contracts";

/** `prev_hash` of a tenant's first archived report: 64 zeros. */
export const GENESIS_HASH = "0".repeat(64);

const HEX64 = /^[0-9a-f]{64}$/;
const REPORT_ID = /^(0|[1-9][0-9]*)$/;

/** What a chain link is computed from. */
export interface ChainInput {
  org_id: string;
  project_id: string;
  /** Decimal report_id. */
  report_id: string;
  /** The published ReportMessage, parsed. */
  report: unknown;
}

/** The hash of one link: SHA-256 (hex) of the canonical JSON of the input and `prevHash` (see module doc). */
export function chainHash(prevHash: string, e: ChainInput): string {
  const canonical = canonicalJson({
    prev_hash: prevHash,
    org_id: e.org_id,
    project_id: e.project_id,
    report_id: e.report_id,
    report: e.report,
  });
  return hash("sha256", canonical, "hex");
}

/** One line of an audit export as the verifier reads it (see `AuditLine` in contracts). */
export interface ChainLine extends ChainInput {
  prev_hash: string;
  hash: string;
}

/** The first problem found in a chain. */
export interface BrokenLink {
  /** 1-based line number in the input. */
  line: number;
  /** The report_id on that line, when it has one. */
  report_id?: string;
  /** What is wrong, in words. */
  reason: string;
}

/** Result of {@link ChainVerifier.result}. */
export interface ChainVerdict {
  ok: boolean;
  /** Lines read. */
  lines: number;
  /** Per tenant (`org/project`): links checked and the last hash (the head an auditor keeps). */
  tenants: Record<string, { links: number; first_report_id: string; last_report_id: string; head: string }>;
  broken?: BrokenLink;
}

/**
 * Checks an audit export line by line with the chain rules only:
 * 1. every line has the fields of a link (`report_id`, `org_id`, `project_id`, `report` object,
 *    `prev_hash`, `hash`);
 * 2. per tenant, report_ids strictly increase;
 * 3. per tenant, a line's `prev_hash` is the previous line's `hash` (the tenant's first line in
 *    the input is the anchor: its `prev_hash` is taken as given, or must equal `anchors[tenant]`
 *    — e.g. {@link GENESIS_HASH} for a complete export — when one is supplied);
 * 4. `hash` = {@link chainHash}(`prev_hash`, line).
 * An edited row fails 4, a deleted row fails 3 at the next one, reordered rows fail 2, 3 or 4.
 * It stops at the first broken link.
 */
export class ChainVerifier {
  private readonly heads = new Map<string, { last: string; hash: string; links: number; first: string }>();
  private n = 0;
  private broken: BrokenLink | undefined;
  private readonly anchors: Record<string, string>;
  private readonly genesis: boolean;

  /**
   * @param opts.anchors per tenant (`org/project`), the `prev_hash` its first line must have.
   * @param opts.genesis every tenant's first line must start the chain ({@link GENESIS_HASH}).
   */
  constructor(opts: { anchors?: Record<string, string>; genesis?: boolean } = {}) {
    this.anchors = opts.anchors ?? {};
    this.genesis = opts.genesis ?? false;
  }

  /** True once a broken link was found (later lines are ignored). */
  get failed(): boolean {
    return this.broken !== undefined;
  }

  /** Checks one line: raw text (NDJSON) or an already parsed object. Blank lines are skipped. */
  push(line: string | unknown): void {
    this.n++;
    if (this.broken) return;
    let v: unknown = line;
    if (typeof line === "string") {
      if (line.trim() === "") return;
      try {
        v = JSON.parse(line);
      } catch {
        this.fail("not JSON");
        return;
      }
    }
    const l = v as Partial<ChainLine> | null;
    const rid = typeof l?.report_id === "string" ? l.report_id : undefined;
    const problem = this.check(l, rid);
    if (problem !== undefined) this.fail(problem, rid);
  }

  /** The problem with one parsed line, or undefined when it extends its tenant's chain (then recorded). */
  private check(l: Partial<ChainLine> | null, rid: string | undefined): string | undefined {
    if (!l || typeof l !== "object" || Array.isArray(l)) return "not a JSON object";
    if (!rid || !REPORT_ID.test(rid)) return "report_id is not a decimal string";
    if (typeof l.org_id !== "string" || typeof l.project_id !== "string") return "org_id/project_id missing";
    if (typeof l.report !== "object" || l.report === null || Array.isArray(l.report))
      return "report is not a JSON object";
    if (typeof l.prev_hash !== "string" || !HEX64.test(l.prev_hash)) return "prev_hash is not 64 hex digits";
    if (typeof l.hash !== "string" || !HEX64.test(l.hash)) return "hash is not 64 hex digits";
    const key = `${l.org_id}/${l.project_id}`;
    const head = this.heads.get(key);
    if (head) {
      if (BigInt(rid) <= BigInt(head.last))
        return `report_id ${rid} does not follow ${head.last} (out of order or repeated)`;
      if (l.prev_hash !== head.hash)
        return `prev_hash does not match the hash of report ${head.last}: a report between them was removed, or ${head.last} was altered`;
    } else {
      const anchor = this.anchors[key] ?? (this.genesis ? GENESIS_HASH : undefined);
      if (anchor !== undefined && l.prev_hash !== anchor)
        return `prev_hash does not match the expected anchor ${anchor}`;
    }
    const expected = chainHash(l.prev_hash, {
      org_id: l.org_id,
      project_id: l.project_id,
      report_id: rid,
      report: l.report,
    });
    if (expected !== l.hash) return "hash does not match the report: the report or its hash was altered";
    this.heads.set(key, { last: rid, hash: l.hash, links: (head?.links ?? 0) + 1, first: head?.first ?? rid });
    return undefined;
  }

  private fail(reason: string, reportId?: string): void {
    this.broken = { line: this.n, ...(reportId ? { report_id: reportId } : {}), reason };
  }

  /** The verdict so far. */
  result(): ChainVerdict {
    const tenants: ChainVerdict["tenants"] = {};
    for (const [k, h] of this.heads)
      tenants[k] = { links: h.links, first_report_id: h.first, last_report_id: h.last, head: h.hash };
    return { ok: !this.broken, lines: this.n, tenants, ...(this.broken ? { broken: this.broken } : {}) };
  }
}
