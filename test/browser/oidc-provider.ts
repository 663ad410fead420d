/**
 * A small OpenID Connect provider for the console's sign-in tests, speaking the real wire format:
 *
 * - discovery (`<issuer>/.well-known/openid-configuration`, RFC 8414 / OIDC Discovery 1.0);
 * - `GET /authorize`: the authorization code flow with PKCE (S256 only). Without a session it
 *   shows a sign-in form (a username, as a person would type it); `prompt=none` without a session
 *   answers `error=login_required` (OIDC Core §3.1.2.6). The answer carries `iss` (RFC 9207);
 * - `POST /token`: `authorization_code` (one-use codes, `redirect_uri` and the PKCE verifier
 *   checked, RFC 7636 §4.6) and `refresh_token` (rotated on every use) for a public client;
 *   CORS for the console's origin, as real providers do for single-page apps;
 * - `GET /jwks`: the public key (RS256) the gateway verifies access tokens with;
 * - `GET /logout`: RP-initiated logout (ends the session, back to a registered URI).
 *
 * Access tokens are RS256 JWTs with `iss`, `aud`, `sub`, `exp`, `org_id`, `project_id`, `roles`,
 * signed with `jose`; their lifetime can be changed while running (expiry tests). Every request
 * and every token issued is recorded, so a test can check where tokens went.
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

/** A user the provider knows. */
export interface IdpUser {
  org_id: string;
  project_id: string;
  roles: string[];
  name: string;
}

/** Options of {@link startOidcProvider}. */
export interface OidcProviderOptions {
  clientId: string;
  /** Redirect URIs the client registered (exact match, as OAuth 2.1 requires). */
  redirectUris: string[];
  /** Origins allowed by CORS on the token endpoint. */
  corsOrigins: string[];
  audience: string;
  users: Record<string, IdpUser>;
  /** Access token lifetime, seconds (default 300). */
  accessTtlSeconds?: number;
}

/** A running provider. */
export interface OidcProvider {
  /** The issuer identifier (`http://127.0.0.1:<port>/idp`). */
  issuer: string;
  jwksUrl: string;
  /** Every request: method and URL (path and query). */
  requests: { method: string; url: string; origin?: string }[];
  /** Every token issued (access, refresh and ID tokens). */
  issued: string[];
  /** Token endpoint calls by grant type (successful ones). */
  grants: Record<string, number>;
  /** Changes the lifetime of access tokens issued from now on, seconds. */
  setAccessTtl(seconds: number): void;
  /** An access token for `user` signed by this provider (for the test's own API calls). */
  accessTokenFor(user: string, ttlSeconds?: number): Promise<string>;
  close(): Promise<void>;
}

interface CodeGrant {
  user: string;
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce?: string;
  scope: string;
  expires: number;
}

const b64url = (b: Buffer) => b.toString("base64url");
const random = () => b64url(randomBytes(24));

/** Starts the provider on 127.0.0.1 (a free port). */
export async function startOidcProvider(o: OidcProviderOptions): Promise<OidcProvider> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = `k-${random().slice(0, 8)}`;
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  let accessTtl = o.accessTtlSeconds ?? 300;
  const codes = new Map<string, CodeGrant>();
  const refreshTokens = new Map<string, { user: string; scope: string }>();
  const sessions = new Map<string, string>(); // session id → user
  const requests: OidcProvider["requests"] = [];
  const issued: string[] = [];
  const grants: Record<string, number> = {};
  let issuer = "";

  const now = () => Math.floor(Date.now() / 1000);
  const sign = async (claims: Record<string, unknown>, ttl: number) => {
    const t = await new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime(now() + ttl)
      .sign(privateKey);
    issued.push(t);
    return t;
  };
  const accessToken = (user: string, scope: string, ttl = accessTtl) => {
    const u = o.users[user] as IdpUser;
    return sign(
      {
        sub: user,
        aud: o.audience,
        org_id: u.org_id,
        project_id: u.project_id,
        roles: u.roles,
        scope,
        client_id: o.clientId,
      },
      ttl,
    );
  };

  const send = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
    res.end(JSON.stringify(body));
  };
  const redirect = (res: http.ServerResponse, to: string, headers: Record<string, string> = {}) => {
    res.writeHead(302, { location: to, ...headers });
    res.end();
  };
  const readBody = (req: http.IncomingMessage) =>
    new Promise<URLSearchParams>((resolve) => {
      let s = "";
      req.on("data", (c: Buffer) => {
        s += c.toString();
      });
      req.on("end", () => resolve(new URLSearchParams(s)));
    });
  const sessionOf = (req: http.IncomingMessage) => {
    const m = /(?:^|;\s*)idp_session=([^;]+)/.exec(req.headers.cookie ?? "");
    return m ? sessions.get(m[1] as string) : undefined;
  };
  const cors = (req: http.IncomingMessage): Record<string, string> => {
    const origin = req.headers.origin;
    return origin && o.corsOrigins.includes(origin)
      ? {
          "access-control-allow-origin": origin,
          vary: "origin",
          "access-control-allow-headers": "content-type, accept",
        }
      : {};
  };

  /** Answers an authorization request for a signed-in user with a code. */
  const answerWithCode = (
    res: http.ServerResponse,
    user: string,
    q: URLSearchParams,
    headers: Record<string, string> = {},
  ) => {
    const code = random();
    codes.set(code, {
      user,
      clientId: q.get("client_id") as string,
      redirectUri: q.get("redirect_uri") as string,
      challenge: q.get("code_challenge") as string,
      ...(q.get("nonce") ? { nonce: q.get("nonce") as string } : {}),
      scope: q.get("scope") ?? "openid",
      expires: Date.now() + 60_000,
    });
    const back = new URL(q.get("redirect_uri") as string);
    back.searchParams.set("code", code);
    if (q.get("state")) back.searchParams.set("state", q.get("state") as string);
    back.searchParams.set("iss", issuer);
    redirect(res, back.href, headers);
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push({
      method: req.method ?? "GET",
      url: req.url ?? "/",
      ...(req.headers.origin ? { origin: req.headers.origin } : {}),
    });
    const path = url.pathname.replace(/^\/idp/, "");
    try {
      if (req.method === "OPTIONS") {
        res.writeHead(204, { ...cors(req), "access-control-allow-methods": "GET, POST" });
        res.end();
        return;
      }
      if (path === "/.well-known/openid-configuration") {
        send(
          res,
          200,
          {
            issuer,
            authorization_endpoint: `${issuer}/authorize`,
            token_endpoint: `${issuer}/token`,
            jwks_uri: `${issuer}/jwks`,
            end_session_endpoint: `${issuer}/logout`,
            response_types_supported: ["code"],
            response_modes_supported: ["query"],
            grant_types_supported: ["authorization_code", "refresh_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256"],
            code_challenge_methods_supported: ["S256"],
            token_endpoint_auth_methods_supported: ["none"],
            scopes_supported: ["openid", "profile", "offline_access"],
            authorization_response_iss_parameter_supported: true,
          },
          cors(req),
        );
        return;
      }
      if (path === "/jwks") {
        send(res, 200, { keys: [jwk] }, cors(req));
        return;
      }
      if (path === "/authorize" && req.method === "GET") {
        const q = url.searchParams;
        const redirectUri = q.get("redirect_uri") ?? "";
        if (q.get("client_id") !== o.clientId || !o.redirectUris.includes(redirectUri)) {
          // Never redirect to an unregistered URI (RFC 6749 §4.1.2.1).
          res.writeHead(400, { "content-type": "text/plain" }).end("unknown client or redirect_uri");
          return;
        }
        const fail = (error: string) => {
          const back = new URL(redirectUri);
          back.searchParams.set("error", error);
          if (q.get("state")) back.searchParams.set("state", q.get("state") as string);
          back.searchParams.set("iss", issuer);
          redirect(res, back.href);
        };
        if (q.get("response_type") !== "code") return fail("unsupported_response_type");
        if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) return fail("invalid_request");
        const user = sessionOf(req);
        if (user) return answerWithCode(res, user, q);
        if (q.get("prompt") === "none") return fail("login_required");
        const hidden = [...q.entries()]
          .map(([k, v]) => `<input type="hidden" name="${k}" value="${v.replace(/"/g, "&quot;")}">`)
          .join("");
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(
          `<!doctype html><html lang="en"><head><title>Test identity provider</title></head><body><main><h1>Sign in</h1>` +
            `<form method="post" action="${issuer}/login">${hidden}<label for="username">Username</label>` +
            `<input id="username" name="username" autocomplete="username"><button type="submit" id="idp-submit">Continue</button></form></main></body></html>`,
        );
        return;
      }
      if (path === "/login" && req.method === "POST") {
        const q = await readBody(req);
        const user = q.get("username") ?? "";
        if (!o.users[user]) {
          res.writeHead(401, { "content-type": "text/plain" }).end("unknown user");
          return;
        }
        const sid = random();
        sessions.set(sid, user);
        return answerWithCode(res, user, q, { "set-cookie": `idp_session=${sid}; Path=/idp; HttpOnly; SameSite=Lax` });
      }
      if (path === "/token" && req.method === "POST") {
        const h = cors(req);
        const q = await readBody(req);
        const err = (error: string, description: string) =>
          send(res, 400, { error, error_description: description }, h);
        if (q.get("client_id") !== o.clientId) return err("invalid_client", "unknown client");
        const grant = q.get("grant_type");
        if (grant === "authorization_code") {
          const code = q.get("code") ?? "";
          const c = codes.get(code);
          codes.delete(code); // one use, whatever happens
          if (!c || c.expires < Date.now()) return err("invalid_grant", "unknown, used or expired code");
          if (c.redirectUri !== q.get("redirect_uri")) return err("invalid_grant", "redirect_uri differs");
          const verifier = q.get("code_verifier") ?? "";
          if (b64url(createHash("sha256").update(verifier).digest()) !== c.challenge)
            return err("invalid_grant", "PKCE verification failed");
          const refresh = random();
          refreshTokens.set(refresh, { user: c.user, scope: c.scope });
          issued.push(refresh);
          const u = o.users[c.user] as IdpUser;
          const idToken = await sign(
            { sub: c.user, aud: o.clientId, name: u.name, ...(c.nonce ? { nonce: c.nonce } : {}) },
            600,
          );
          grants[grant] = (grants[grant] ?? 0) + 1;
          return send(
            res,
            200,
            {
              access_token: await accessToken(c.user, c.scope),
              token_type: "Bearer",
              expires_in: accessTtl,
              id_token: idToken,
              refresh_token: refresh,
              scope: c.scope,
            },
            h,
          );
        }
        if (grant === "refresh_token") {
          const old = q.get("refresh_token") ?? "";
          const r = refreshTokens.get(old);
          refreshTokens.delete(old); // rotated
          if (!r) return err("invalid_grant", "unknown or used refresh token");
          const refresh = random();
          refreshTokens.set(refresh, r);
          issued.push(refresh);
          grants[grant] = (grants[grant] ?? 0) + 1;
          return send(
            res,
            200,
            {
              access_token: await accessToken(r.user, r.scope),
              token_type: "Bearer",
              expires_in: accessTtl,
              refresh_token: refresh,
              scope: r.scope,
            },
            h,
          );
        }
        return err("unsupported_grant_type", String(grant));
      }
      if (path === "/logout" && req.method === "GET") {
        const m = /(?:^|;\s*)idp_session=([^;]+)/.exec(req.headers.cookie ?? "");
        if (m) sessions.delete(m[1] as string);
        const back = url.searchParams.get("post_logout_redirect_uri") ?? "";
        const clear = { "set-cookie": "idp_session=; Path=/idp; Max-Age=0" };
        if (o.redirectUris.includes(back)) return redirect(res, back, clear);
        res.writeHead(200, { "content-type": "text/plain", ...clear }).end("signed out");
        return;
      }
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(e));
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/idp`;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    requests,
    issued,
    grants,
    setAccessTtl: (s) => {
      accessTtl = s;
    },
    accessTokenFor: (user, ttl) => accessToken(user, "openid", ttl ?? 600),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
