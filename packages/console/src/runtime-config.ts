/**
 * The console's runtime configuration, `GET /ui/config.json`, served by the gateway
 * (services/gateway/src/console-static.ts): the auth mode and, in JWT mode, the OpenID Connect
 * provider to sign in with. Kept apart from `oidc.ts` so that header mode never loads the
 * OAuth library (`oidc.ts` is a chunk of its own).
 */

/** `GET /ui/config.json` (services/gateway/src/console-static.ts). */
export interface RuntimeConfig {
  auth: "header" | "jwt";
  roles_claim: string;
  oidc?: { issuer: string; client_id: string; scopes: string; audience?: string };
}

/**
 * Reads the console's runtime configuration from the gateway. A server without it (an older
 * gateway, the Vite dev server) means header mode.
 */
export async function loadRuntimeConfig(fetchFn: typeof fetch = fetch): Promise<RuntimeConfig> {
  const fallback: RuntimeConfig = { auth: "header", roles_claim: "roles" };
  try {
    const res = await fetchFn("/ui/config.json", { headers: { accept: "application/json" }, cache: "no-cache" });
    if (!res.ok) return fallback;
    const j = (await res.json()) as Partial<RuntimeConfig>;
    if (j.auth !== "jwt") return fallback;
    const o = j.oidc;
    return {
      auth: "jwt",
      roles_claim: typeof j.roles_claim === "string" ? j.roles_claim : "roles",
      ...(o && typeof o.issuer === "string" && typeof o.client_id === "string"
        ? {
            oidc: {
              issuer: o.issuer,
              client_id: o.client_id,
              scopes: typeof o.scopes === "string" && o.scopes ? o.scopes : "openid",
              ...(typeof o.audience === "string" ? { audience: o.audience } : {}),
            },
          }
        : {}),
    };
  } catch {
    return fallback;
  }
}
