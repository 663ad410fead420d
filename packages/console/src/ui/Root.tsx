/**
 * What the page shows first: reads `/ui/config.json`; in header mode the console at once; in
 * JWT mode the OpenID Connect sign-in (oidc.ts) and, once signed in, the console as that
 * principal. A sign-out, or a token the server refuses, brings the sign-in screen back.
 */
import { useEffect, useState } from "preact/hooks";
import { bearerCredentials, headerCredentials, setCredentials } from "../credentials.ts";
import { isLoaded, LANG_STORAGE_KEY, loadLang, pickLang, setLang, t } from "../i18n.ts";
import type { Identity, OidcSession, StartResult } from "../oidc.ts";
import { loadRuntimeConfig } from "../runtime-config.ts";
import { App } from "./App.tsx";
import { focusById } from "./memo.ts";

type Phase =
  | { kind: "loading" }
  | { kind: "header" }
  | { kind: "unconfigured" }
  | {
      kind: "jwt";
      session: OidcSession;
      status: StartResult["kind"] | "checking";
      error?: { code: string; detail?: string };
    };

function browserLanguages(): readonly string[] {
  return navigator.languages?.length ? navigator.languages : [navigator.language];
}

/** The language of the screens shown before the profile is known: the last one shown, else the browser's. */
function useBootLang(): void {
  let last: string | null = null;
  try {
    last = localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    // No storage.
  }
  const wanted = pickLang(last, browserLanguages());
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!isLoaded(wanted)) void loadLang(wanted).then(() => setTick((x) => x + 1));
  }, [wanted]);
  const lang = isLoaded(wanted) ? wanted : "en";
  setLang(lang);
  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = t("signin.pageTitle");
  }, [lang]);
}

/** The sign-in screen (JWT mode): why it is shown, and one button to the provider. */
export function SignIn(props: {
  status: "checking" | "redirecting" | "signed-out" | "error" | "unconfigured";
  issuer?: string;
  error?: { code: string; detail?: string };
  onSignIn?(): void;
}) {
  useBootLang();
  const busy = props.status === "checking" || props.status === "redirecting";
  const host = props.issuer ? new URL(props.issuer).host : "";
  useEffect(() => {
    if (props.status === "error") focusById("signin-error");
  }, [props.status]);
  return (
    <>
      <header class="topbar">
        <div class="brand">
          <p class="logo">{t("app.title")}</p>
        </div>
      </header>
      <main id="main" class="signin" data-testid="signin" data-status={props.status}>
        <section class="panel signin-card" aria-labelledby="signin-h" aria-busy={busy ? "true" : undefined}>
          <h1 id="signin-h">{t("signin.title")}</h1>
          {props.status === "unconfigured" ? (
            <p data-testid="signin-unconfigured">{t("signin.unconfigured")}</p>
          ) : (
            <>
              <p>{t("signin.intro")}</p>
              {props.status === "error" && props.error && (
                <div class="error-box" id="signin-error" tabIndex={-1} role="alert" data-testid="signin-error">
                  <p>{t("signin.failed")}</p>
                  <p class="small">
                    {t("signin.reason", { code: props.error.code })}
                    {props.error.detail ? ` — ${props.error.detail}` : ""}
                  </p>
                </div>
              )}
              <button
                type="button"
                class="primary signin-button"
                data-testid="sign-in"
                disabled={busy}
                onClick={() => props.onSignIn?.()}
              >
                {busy ? t("signin.redirecting") : t("signin.button", { host })}
              </button>
              <p class="muted small">{t("signin.where", { host })}</p>
            </>
          )}
        </section>
      </main>
    </>
  );
}

/** The page: configuration, then the sign-in or the console. */
export function Root() {
  const [phase, setPhase] = useState<Phase>({ kind: "loading" });
  const [identity, setIdentity] = useState<Identity | null>(null);
  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const cfg = await loadRuntimeConfig();
      if (cancelled) return;
      if (cfg.auth === "header") {
        setCredentials(headerCredentials);
        setPhase({ kind: "header" });
        return;
      }
      if (!cfg.oidc) {
        setPhase({ kind: "unconfigured" });
        return;
      }
      // The OAuth code is a chunk of its own: header mode never loads it.
      const { OidcSession } = await import("../oidc.ts");
      if (cancelled) return;
      const session = new OidcSession(cfg);
      setCredentials(
        bearerCredentials({
          token: () => session.accessToken(),
          renew: () => session.renew(),
          rejected: () => session.rejected(),
        }),
      );
      session.subscribe(() => {
        setIdentity(session.identity);
        if (!session.identity) setPhase({ kind: "jwt", session, status: "signed-out" });
      });
      setPhase({ kind: "jwt", session, status: "checking" });
      let r: StartResult;
      try {
        r = await session.start();
      } catch (err) {
        r = { kind: "error", code: "provider_unreachable", detail: err instanceof Error ? err.message : String(err) };
      }
      if (cancelled) return;
      setIdentity(session.identity);
      setPhase({
        kind: "jwt",
        session,
        status: r.kind,
        ...(r.kind === "error" ? { error: { code: r.code, ...(r.detail ? { detail: r.detail } : {}) } } : {}),
      });
    })();
    return () => {
      cancelled = true;
    };
  }, []);

  if (phase.kind === "loading") {
    return (
      <p class="boot" role="status" aria-busy="true">
        {t("app.loading")}
      </p>
    );
  }
  if (phase.kind === "header") return <App identity={null} />;
  if (phase.kind === "unconfigured") return <SignIn status="unconfigured" />;
  const { session } = phase;
  if (phase.status === "signed-in" && identity && !identity.tenant) {
    return (
      <SignIn
        status="error"
        issuer={session.config.issuer}
        error={{ code: "no_tenant" }}
        onSignIn={() => void session.signIn()}
      />
    );
  }
  if (phase.status === "signed-in" && identity) {
    return (
      <App
        identity={identity}
        onSignOut={async () => {
          if (!(await session.signOut())) setPhase({ kind: "jwt", session, status: "signed-out" });
        }}
      />
    );
  }
  const signIn = async () => {
    setPhase({ kind: "jwt", session, status: "redirecting" });
    try {
      await session.signIn();
    } catch (err) {
      setPhase({
        kind: "jwt",
        session,
        status: "error",
        error: { code: "provider_unreachable", detail: err instanceof Error ? err.message : String(err) },
      });
    }
  };
  return (
    <SignIn
      status={phase.status === "signed-in" ? "signed-out" : phase.status}
      issuer={session.config.issuer}
      {...(phase.error ? { error: phase.error } : {})}
      onSignIn={() => void signIn()}
    />
  );
}
