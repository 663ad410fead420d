/**
 * The alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard (deploy/grafana/nexus.json)
 * against what the services really export: every expression parses (the Prometheus project's
 * PromQL grammar, @prometheus-io/lezer-promql), every metric it names is in the `/metrics` of
 * a running four-process stack, every alert has a runbook entry, and the metrics follow the
 * conventions (one `nexus_` prefix besides Node's defaults, no tenant labels). `promtool check
 * rules` runs too when promtool is installed (Debian: `apt-get install prometheus`); it is not
 * on CI machines, so that step is skipped there — visibly.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { REPO_ROOT, uniqueTenant, waitFor } from "@nexus/testkit";
import { parser } from "@prometheus-io/lezer-promql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { command, type E2E, startE2E } from "../e2e/fixture.ts";

const read = (p: string) => fs.readFileSync(path.join(REPO_ROOT, p), "utf8");

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
  annotations: { summary: string; description: string; runbook: string };
}
const rules: Rule[] = parse(read("deploy/prometheus/alerts.yml")).groups.flatMap((g: { rules: Rule[] }) => g.rules);
const dashboard = JSON.parse(read("deploy/grafana/nexus.json"));
const panelExprs: { title: string; expr: string }[] = dashboard.panels.flatMap(
  (p: { title: string; targets?: { expr: string }[] }) =>
    (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })),
);

/** The metric names an expression selects, or the position of its first syntax error. */
function metricsOf(expr: string): { names: string[]; error?: number } {
  const names: string[] = [];
  let error: number | undefined;
  parser.parse(expr).iterate({
    enter(n) {
      if (n.type.isError && error === undefined) error = n.from;
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        if (id) names.push(expr.slice(id.from, id.to));
      }
    },
  });
  return { names, ...(error !== undefined ? { error } : {}) };
}

/** Metrics Prometheus makes itself (not scraped from the services). */
const PROMETHEUS_OWN = new Set(["up"]);

describe("alert rules and dashboard (static)", () => {
  it("every alert is well-formed, parses, and has a runbook entry in deploy/README.md", () => {
    expect(rules.length).toBeGreaterThanOrEqual(15);
    const readme = read("deploy/README.md");
    const headings = new Set([...readme.matchAll(/^#{2,4} (\S+)/gm)].map((m) => m[1]));
    for (const r of rules) {
      expect(r.alert).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(["critical", "warning"]).toContain(r.labels.severity);
      expect(r.annotations.summary && r.annotations.description).toBeTruthy();
      expect(r.annotations.runbook).toBe(`deploy/README.md#${r.alert.toLowerCase()}`);
      expect(headings.has(r.alert), `runbook heading for ${r.alert}`).toBe(true);
      const m = metricsOf(r.expr);
      expect(m.error, `${r.alert}: syntax error at ${m.error} in ${r.expr}`).toBeUndefined();
      expect(m.names.length).toBeGreaterThan(0);
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    // The parser does catch mistakes.
    expect(metricsOf("sum(rate(nexus_jobs_total[5m])").error).toBeDefined();
  });

  it("every dashboard query parses", () => {
    expect(panelExprs.length).toBeGreaterThanOrEqual(15);
    for (const p of panelExprs) expect(metricsOf(p.expr).error, `${p.title}: ${p.expr}`).toBeUndefined();
  });

  const promtool = spawnSync("promtool", ["--version"]).error === undefined;
  it.skipIf(!promtool)("promtool accepts alerts.yml and the compose Prometheus config", () => {
    for (const args of [
      ["check", "rules", path.join(REPO_ROOT, "deploy/prometheus/alerts.yml")],
      ["check", "config", path.join(REPO_ROOT, "deploy/prometheus/prometheus.yml")],
    ]) {
      const r = spawnSync("promtool", args, { encoding: "utf8" });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
  });
});

describe("alert rules and dashboard against a running stack", () => {
  let e2e: E2E;
  const exported = new Map<string, string>(); // sample name → service
  const scraped: string[] = [];

  beforeAll(async () => {
    e2e = await startE2E({ env: { CONSUMER_STALL_MS: "30000" } });
    // A little traffic: a command end to end, a stream, an admin read.
    const t = uniqueTenant("obs");
    const sse = await e2e.stream(t);
    const cmd = command("echo.test", { hello: "metrics" });
    expect((await e2e.call("POST", "/sidecar/command", t, cmd)).status).toBe(202);
    await sse.waitForReport("command.completed", { command_id: cmd.command_id });
    expect((await e2e.call("GET", "/admin/dead-letters", t)).status).toBe(200);
    // Each worker reads its consumer's info every 5 s; the gateway the streams' every 15 s (and
    // at start): scrape until the polled gauges are there (a loaded machine may take longer).
    const services = ["gateway", "stream", "command-worker", "approval-worker"] as const;
    let texts: string[] = [];
    await waitFor(
      async () => {
        texts = await Promise.all(
          services.map(async (s) => (await fetch(`http://127.0.0.1:${e2e.stack.ports[s]}/metrics`)).text()),
        );
        const all = texts.join("\n");
        return (
          /^nexus_consumer_pending\{[^}]*consumer="command-worker"[^}]*\} \d+/m.test(all) &&
          /^nexus_consumer_pending\{[^}]*consumer="approval-worker"[^}]*\} \d+/m.test(all) &&
          /^nexus_stream_max_bytes\{[^}]*stream="NEXUS_COMMANDS"[^}]*\} -?\d+/m.test(all)
        );
      },
      30_000,
      "the polled gauges in /metrics",
    );
    for (const [i, s] of services.entries()) {
      const text = texts[i] as string;
      scraped.push(text);
      for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        const [name, type] = [m[1] as string, m[2] as string];
        const samples = type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
        for (const x of samples) exported.set(x, s);
      }
    }
  });
  afterAll(async () => {
    await e2e?.close();
  });

  it("every metric an alert or a dashboard panel names is exported by a service", () => {
    expect(exported.size).toBeGreaterThan(40);
    const missing: string[] = [];
    for (const { expr, title } of [...rules.map((r) => ({ expr: r.expr, title: r.alert })), ...panelExprs])
      for (const name of metricsOf(expr).names)
        if (!PROMETHEUS_OWN.has(name) && !exported.has(name)) missing.push(`${title}: ${name}`);
    expect(missing).toEqual([]);
  });

  it("metrics follow the conventions: one prefix, base units, no tenant labels; the gauges have values", () => {
    const all = scraped.join("\n");
    for (const name of exported.keys()) expect(name, name).toMatch(/^(nexus_|process_|nodejs_)/);
    for (const name of exported.keys())
      if (/duration|latency/.test(name)) expect(name, name).toMatch(/_seconds(_bucket|_sum|_count)?$/);
    expect(all).not.toMatch(/\b(org_id|project_id|tenant)="/);
    // Polled gauges carry values once read: consumer pending (workers), stream usage (gateway).
    expect(all).toMatch(/^nexus_consumer_pending\{[^}]*consumer="command-worker"[^}]*\} \d+/m);
    expect(all).toMatch(/^nexus_stream_max_bytes\{[^}]*stream="NEXUS_COMMANDS"[^}]*\} -?\d+/m);
    expect(all).toMatch(/^nexus_nats_publish_duration_seconds_count\{[^}]*kind="nexus.cmd"[^}]*outcome="ok"/m);
    expect(all).toMatch(/^nexus_db_query_duration_seconds_count\{[^}]*outcome="ok"/m);
    expect(all).toMatch(/^nexus_job_duration_seconds_count\{[^}]*worker="command-worker"[^}]*\} [1-9]/m);
    expect(all).toMatch(/^nexus_sse_connections\{[^}]*\} 1/m);
  });
});
