/**
 * `pnpm audit:verify <file|url|-> [--header "name: value"]… [--genesis]`: checks an audit
 * export (`GET /agent/audit/export`, NDJSON) with the chain rules alone — `ChainVerifier` of
 * `@nexus/core` archive/chain.ts, nothing else of the system — and names the first broken link.
 *
 * - `<file>`: a saved export; `-`: standard input; `http(s)://…`: fetched (pass the tenant and
 *   credentials with `--header`, e.g. `--header "x-org-id: acme" --header "x-project-id: nexus"`).
 * - `--genesis`: the export must start at each tenant's first report (`prev_hash` = 64 zeros);
 *   without it the first line of each tenant is the anchor, taken as given. Compare the printed
 *   head with one kept earlier (or the `x-nexus-chain-head` header) to detect a cut-off end.
 *
 * Exit codes: 0 the chain holds; 1 a broken link (printed with its line and report_id);
 * 2 usage or I/O errors.
 */
import fs from "node:fs";
import readline from "node:readline";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { ChainVerifier } from "@nexus/core";

const USAGE = 'usage: pnpm audit:verify <file|url|-> [--header "name: value"]... [--genesis]\n';

async function open(source: string, headers: Record<string, string>): Promise<NodeJS.ReadableStream> {
  if (source === "-") return process.stdin;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { headers });
    if (!res.ok || !res.body) throw new Error(`${source}: HTTP ${res.status} ${await res.text().catch(() => "")}`);
    return Readable.fromWeb(res.body as import("node:stream/web").ReadableStream);
  }
  return fs.createReadStream(source);
}

/** Verifies the lines of `input`; resolves with the verdict (stops reading at the first broken link). */
export async function verifyStream(input: NodeJS.ReadableStream, o: { genesis?: boolean } = {}) {
  const v = new ChainVerifier({ genesis: o.genesis === true });
  const lines = readline.createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    v.push(line);
    if (v.failed) {
      lines.close();
      break;
    }
  }
  return v.result();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let parsed: ReturnType<
    typeof parseArgs<{
      options: { header: { type: "string"; multiple: true }; genesis: { type: "boolean" }; help: { type: "boolean" } };
      allowPositionals: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2).filter((a) => a !== "--"),
      options: { header: { type: "string", multiple: true }, genesis: { type: "boolean" }, help: { type: "boolean" } },
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const source = parsed.positionals[0];
  if (parsed.values.help || !source) {
    process.stdout.write(USAGE);
    process.exit(parsed.values.help ? 0 : 2);
  }
  const headers: Record<string, string> = {};
  for (const h of parsed.values.header ?? []) {
    const i = h.indexOf(":");
    if (i <= 0) {
      process.stderr.write(`bad --header ${JSON.stringify(h)}\n`);
      process.exit(2);
    }
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  let verdict: Awaited<ReturnType<typeof verifyStream>>;
  try {
    verdict = await verifyStream(await open(source, headers), { genesis: parsed.values.genesis === true });
  } catch (err) {
    process.stderr.write(`audit:verify: ${(err as Error).message}\n`);
    process.exit(2);
  }
  for (const [tenant, t] of Object.entries(verdict.tenants))
    process.stdout.write(
      `${tenant}: ${t.links} links, report_id ${t.first_report_id}..${t.last_report_id}, head ${t.head}\n`,
    );
  if (verdict.broken) {
    const b = verdict.broken;
    process.stdout.write(`BROKEN: line ${b.line}${b.report_id ? ` (report_id ${b.report_id})` : ""}: ${b.reason}\n`);
    process.exit(1);
  }
  process.stdout.write(`chain ok: ${verdict.lines} lines\n`);
  process.exit(0);
}
