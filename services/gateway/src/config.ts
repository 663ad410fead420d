import { commaList } from "@nexus/contracts";
import { AuthConfig } from "@nexus/http";
import { BaseConfig } from "@nexus/runtime";
import { z } from "zod";

/** Gateway configuration (README "Configuration"). */
export const GatewayConfig = BaseConfig.extend(AuthConfig.shape).extend({
  /**
   * Requests wait on Postgres at most about 2 s, then answer 503 DEPENDENCY_UNAVAILABLE: a pooled
   * connection within 1 s (1000), a statement 1 s on the server and 2 s on the client (1000;
   * the client's bound also covers a Postgres that stopped answering altogether).
   */
  PG_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(50).default(1000),
  PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(1000),
  /** HTTP port. */
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** Where the stream service listens; `GET /agent/reports/stream` is proxied there. */
  STREAM_URL: z.string().url().default("http://127.0.0.1:8081"),
  /** JSON body limit in bytes (2 MiB, docs/contract.md). */
  BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(2 * 1024 * 1024),
  /** Profile photo limit in bytes (5 MiB); the multipart request may be up to 6 MiB. */
  PHOTO_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(5 * 1024 * 1024),
  /** Requests per minute per tenant (and client address) before 429. */
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(1200),
  /**
   * PubAck timeout in milliseconds. A publish whose PubAck does not arrive in time is answered
   * `504 ACCEPT_UNCONFIRMED` (it may still be stored; a retry of the same request learns the outcome).
   */
  PUBLISH_TIMEOUT_MS: z.coerce.number().int().min(100).default(5000),
  /** How often the report-outbox relay looks for settings reports whose publish was lost, ms. */
  OUTBOX_POLL_MS: z.coerce.number().int().min(10).default(1000),
  /**
   * Proxies whose `X-Forwarded-For` is trusted for the client address (`false`: the peer
   * address; `true`; or comma-separated addresses/CIDRs such as `10.0.0.0/8`).
   */
  TRUST_PROXY: z
    .string()
    .default("false")
    .transform((v) => (v === "true" ? true : v === "false" || v === "" ? false : v)),
  /** Upstream connections the stream proxy may open at once (each open stream holds one). */
  STREAM_PROXY_MAX_CONNECTIONS: z.coerce.number().int().min(1).default(65_536),
  /** Directory of the built console (packages/console/dist). */
  CONSOLE_DIR: z.string().optional(),
  /**
   * The console's sign-in in JWT mode (OpenID Connect authorization code flow with PKCE): the
   * provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
   * Its origin is added to `connect-src` of the console's CSP. Unset: the console has no sign-in.
   */
  CONSOLE_OIDC_ISSUER: z.url().optional(),
  /** The console's OAuth client id at that provider (a public client: no secret). */
  CONSOLE_OIDC_CLIENT_ID: z.string().min(1).optional(),
  /** Scopes the console asks for, space-separated. `offline_access` asks for a refresh token. */
  CONSOLE_OIDC_SCOPES: z.string().default("openid profile offline_access"),
  /** `audience` parameter of the authorization request, for providers that need it (Auth0); else unset. */
  CONSOLE_OIDC_AUDIENCE: z.string().min(1).optional(),
  /**
   * More origins the console must reach when the provider's token or end-session endpoint is
   * not on the issuer's origin (comma-separated `https://host[:port]`); added to `connect-src`.
   */
  CONSOLE_OIDC_CONNECT_ORIGINS: commaList,
  /**
   * Fault injection for tests and drills: comma-separated write-path steps (e.g.
   * `accept:after-command-publish`) at which the process kills itself with SIGKILL. Empty in production.
   */
  FAULT_INJECT_CRASH_AT: z.string().default(""),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;
