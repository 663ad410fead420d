import { type Autopilot, isTenantToken, type Tenant } from "@nexus/contracts";
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n.ts";
import type { Identity } from "../oidc.ts";
import type { ConnState } from "../state.ts";
import { sameTenant } from "../tenant.ts";
import { focusById, memo } from "./memo.ts";

/** The views of the page (the URL's hash). */
export type View = "console" | "settings";

/** The tenant switcher: the current tenant as a button; recent tenants and a form to open another. */
function TenantSwitcher(props: { tenant: Tenant; recent: Tenant[]; onSwitch(t: Tenant): void }) {
  const { tenant } = props;
  const menu = useRef<HTMLDetailsElement>(null);
  const [org, setOrg] = useState(tenant.org_id);
  const [project, setProject] = useState(tenant.project_id);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setOrg(tenant.org_id);
    setProject(tenant.project_id);
  }, [tenant]);

  const go = (next: Tenant) => {
    if (menu.current) menu.current.open = false;
    props.onSwitch(next);
    focusById("tenant-summary");
  };
  const submit = (e: Event) => {
    e.preventDefault();
    const o = org.trim();
    const p = project.trim();
    if (!isTenantToken(o) || !isTenantToken(p)) {
      setError(t("tenant.invalid"));
      focusById(isTenantToken(o) ? "tenant-project" : "tenant-org");
      return;
    }
    setError(null);
    go({ org_id: o, project_id: p });
  };
  const others = props.recent.filter((r) => !sameTenant(r, tenant));
  return (
    <details class="tenant-menu" ref={menu} data-testid="tenant-menu">
      <summary id="tenant-summary" data-testid="tenant-summary">
        <span class="pill-label">{t("tenant.label")}</span>{" "}
        <strong data-testid="tenant-current">{`${tenant.org_id}/${tenant.project_id}`}</strong>
        <span class="caret" aria-hidden="true">
          ▾
        </span>
      </summary>
      <div class="menu-body">
        {others.length > 0 && (
          <>
            <h2 class="sub" id="tenant-recent-h">
              {t("tenant.recent")}
            </h2>
            <ul class="plain tenant-list" aria-labelledby="tenant-recent-h">
              {others.map((r) => (
                <li key={`${r.org_id}/${r.project_id}`}>
                  <button
                    type="button"
                    class="link"
                    data-testid={`tenant-recent-${r.org_id}-${r.project_id}`}
                    onClick={() => go(r)}
                  >
                    {r.org_id}/{r.project_id}
                  </button>
                </li>
              ))}
            </ul>
          </>
        )}
        <form class="tenant" onSubmit={submit} aria-labelledby="tenant-other-h" data-testid="tenant-form">
          <h2 class="sub" id="tenant-other-h">
            {t("tenant.other")}
          </h2>
          <div class="field">
            <label for="tenant-org">{t("tenant.org")}</label>
            <input
              id="tenant-org"
              data-testid="tenant-org"
              value={org}
              onInput={(e) => setOrg(e.currentTarget.value)}
              autocomplete="off"
              spellcheck={false}
              aria-invalid={error ? "true" : undefined}
              aria-describedby={error ? "tenant-error" : undefined}
            />
          </div>
          <div class="field">
            <label for="tenant-project">{t("tenant.project")}</label>
            <input
              id="tenant-project"
              data-testid="tenant-project"
              value={project}
              onInput={(e) => setProject(e.currentTarget.value)}
              autocomplete="off"
              spellcheck={false}
              aria-invalid={error ? "true" : undefined}
              aria-describedby={error ? "tenant-error" : undefined}
            />
          </div>
          {error && (
            <p id="tenant-error" class="error small" role="alert" data-testid="tenant-error">
              {error}
            </p>
          )}
          <button type="submit" class="primary" data-testid="tenant-switch">
            {t("tenant.open")}
          </button>
        </form>
      </div>
    </details>
  );
}

/** Props of {@link Header}. */
export interface HeaderProps {
  tenant: Tenant;
  recent: Tenant[];
  onSwitch(t: Tenant): void;
  connState: ConnState;
  autopilot: Autopilot | null;
  view: View;
  showSettings: boolean;
  lang: string;
  /** Signed in (JWT mode): shown with its roles and a sign-out; the tenant is the token's (no switcher). */
  identity?: Identity;
  onSignOut?(): void;
}

/** The signed-in principal, its roles and the sign-out. */
function Account(props: { identity: Identity; onSignOut?(): void }) {
  const { identity } = props;
  const [leaving, setLeaving] = useState(false);
  return (
    <div class="account" data-testid="account">
      <span class="pill-label">{t("account.signedInAs")}</span>{" "}
      <strong data-testid="account-principal" title={identity.principal}>
        {identity.name ?? identity.principal}
      </strong>{" "}
      <span class="roles" data-testid="account-roles" data-roles={identity.roles.join(",")}>
        {identity.roles.length > 0 ? identity.roles.map((r) => t(`roles.${r}`)).join(", ") : t("account.noRoles")}
      </span>
      <button
        type="button"
        class="link"
        data-testid="sign-out"
        disabled={leaving}
        onClick={() => {
          setLeaving(true);
          props.onSignOut?.();
        }}
      >
        {t("account.signOut")}
      </button>
    </div>
  );
}

/** Page header: title, tenant switcher, views, connection and autopilot. */
export const Header = memo(function Header(props: HeaderProps) {
  const { connState, autopilot } = props;
  const apStatus = autopilot?.status ?? "unknown";
  return (
    <header class="topbar">
      <div class="brand">
        <p class="logo">{t("app.title")}</p>
        {props.identity ? (
          <p class="tenant-fixed" data-testid="tenant-fixed">
            <span class="pill-label">{t("tenant.label")}</span>{" "}
            <strong data-testid="tenant-current">{`${props.tenant.org_id}/${props.tenant.project_id}`}</strong>
          </p>
        ) : (
          <TenantSwitcher tenant={props.tenant} recent={props.recent} onSwitch={props.onSwitch} />
        )}
      </div>
      <nav aria-label={t("app.navLabel")} class="tabs">
        <a href="#/" aria-current={props.view === "console" ? "page" : undefined} data-testid="nav-console">
          {t("nav.console")}
        </a>
        {props.showSettings && (
          <a href="#/settings" aria-current={props.view === "settings" ? "page" : undefined} data-testid="nav-settings">
            {t("nav.settings")}
          </a>
        )}
      </nav>
      <div class="status-pills">
        <div class="pill">
          <span class="pill-label">{t("conn.label")}</span>
          <span class={`badge conn conn-${connState}`} data-testid="conn-state" data-state={connState}>
            {t(`conn.${connState}`)}
          </span>
        </div>
        <div class="pill">
          <span class="pill-label">{t("autopilot.label")}</span>
          <span
            class={`badge ap ap-${apStatus}`}
            data-testid="autopilot"
            data-status={apStatus}
            data-in-flight={autopilot ? String(autopilot.in_flight) : undefined}
          >
            {autopilot
              ? `${t(`autopilot.${autopilot.status}`)}${autopilot.in_flight > 0 ? ` · ${t("autopilot.inFlight", { n: autopilot.in_flight })}` : ""}`
              : "…"}
          </span>
        </div>
        {props.identity && (
          <Account identity={props.identity} {...(props.onSignOut ? { onSignOut: props.onSignOut } : {})} />
        )}
      </div>
    </header>
  );
});
