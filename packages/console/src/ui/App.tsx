import type { Tenant } from "@nexus/contracts";
import type { FunctionComponent } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { fetchHistory } from "../api.ts";
import { accentVars } from "../contrast.ts";
import { credentials } from "../credentials.ts";
import { effectiveTimeZone } from "../format.ts";
import {
  errorText,
  formatLocale,
  isLoaded,
  LANG_STORAGE_KEY,
  loadLang,
  pickLang,
  setLang,
  t,
  typeLabel,
} from "../i18n.ts";
import type { Identity } from "../oidc.ts";
import { permissions } from "../roles.ts";
import { autopilot, findWork, type LiveState, openAsks, resolvedAsks, worklogOrder } from "../state.ts";
import { createStore } from "../store.ts";
import { StreamClient } from "../stream.ts";
import { initialTenant, recentTenants, rememberTenant } from "../tenant.ts";
import { Asks } from "./Asks.tsx";
import { Composer } from "./Composer.tsx";
import { Header, type View } from "./Header.tsx";
import { focusById, focusLost } from "./memo.ts";
import type { Env } from "./Params.tsx";
import type { SettingsProps } from "./Settings.tsx";
import { type CancelReason, focusEntry, Worklog } from "./Worklog.tsx";

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function browserLanguages(): readonly string[] {
  return navigator.languages?.length ? navigator.languages : [navigator.language];
}

/** Puts the tenant in the URL's query (a new history entry, so Back returns to the previous tenant). */
function writeTenantToUrl(t: Tenant): void {
  const url = new URL(window.location.href);
  url.searchParams.set("org_id", t.org_id);
  url.searchParams.set("project_id", t.project_id);
  window.history.pushState(null, "", url);
}

function viewOf(hash: string): View {
  return hash === "#/settings" ? "settings" : "console";
}

/** The view named by the URL's hash (`#/settings`), following changes. */
function useView(): View {
  const [view, setView] = useState(() => viewOf(window.location.hash));
  useEffect(() => {
    const on = () => setView(viewOf(window.location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return view;
}

/** Applies theme and accent to the page: the accent only where it is readable (see contrast.ts). */
function useSkin(theme: string | undefined, accent: string | undefined): void {
  useEffect(() => {
    const root = document.documentElement;
    root.dataset.theme = theme === "light" || theme === "dark" ? theme : "system";
    for (const [k, v] of Object.entries(accentVars(accent))) root.style.setProperty(k, v);
  }, [theme, accent]);
}

/** Says what the stream just did in the status bar, at most every 1.5 s (a burst is not read out report by report). */
function useAnnouncement(s: LiveState, tenant: Tenant): string {
  const [text, setText] = useState("");
  const last = useRef(0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    setText("");
    last.current = 0;
    if (timer.current) clearTimeout(timer.current);
    timer.current = null;
  }, [tenant]);
  useEffect(() => {
    const ev = s.lastReport;
    if (!ev || timer.current) return;
    const say = () => {
      timer.current = null;
      last.current = Date.now();
      const r = s.lastReport;
      if (!r) return;
      if (r.report.type === "settings.updated") {
        setText(`${t("nav.settings")}: ${t("settings.saved")}`);
        return;
      }
      const id = r.report.command?.command_id ?? r.causality.command_id;
      const entry = id ? findWork(s, id) : undefined;
      const type = r.report.command?.type ?? entry?.type;
      setText(`${type ? typeLabel(type) : r.report.title}: ${entry ? t(`status.${entry.status}`) : r.report.title}`);
    };
    const wait = last.current + 1500 - Date.now();
    if (wait <= 0) say();
    else timer.current = setTimeout(say, wait);
  }, [s.lastReport]);
  useEffect(() => {
    if (s.connState === "resynced") setText(t("conn.resyncedNote"));
  }, [s.connState]);
  return text;
}

/** "Load older" for one tenant: pages of the history endpoint, hidden when the server has none. */
function useOlder(store: ReturnType<typeof createStore>, tenant: Tenant, s: LiveState) {
  const [st, setSt] = useState({ loading: false, failed: false, unsupported: false });
  const busy = useRef(false);
  useEffect(() => {
    setSt({ loading: false, failed: false, unsupported: false });
    busy.current = false;
  }, [tenant]);
  const load = useCallback(async () => {
    const state = store.get();
    if (busy.current || state.historyBefore === null) return;
    busy.current = true;
    setSt((x) => ({ ...x, loading: true, failed: false }));
    // Pages whose reports are all about commands already shown add nothing: go on (a few pages at most).
    for (let pages = 0; pages < 5; pages++) {
      const before = store.get().historyBefore;
      if (before === null) break;
      const page = await fetchHistory(tenant, before, 100);
      if (store.get() !== state) {
        busy.current = false;
        return; // the tenant changed meanwhile
      }
      if (page.kind === "unsupported") {
        setSt({ loading: false, failed: false, unsupported: true });
        break;
      }
      if (page.kind === "error") {
        setSt({ loading: false, failed: true, unsupported: false });
        break;
      }
      const added = store.addHistory(page.reports, page.next_before);
      setSt({ loading: false, failed: false, unsupported: false });
      if (added > 0 || page.next_before === null) break;
    }
    busy.current = false;
  }, [store, tenant]);
  // After a snapshot whose worklog was full, fetch one page at once: a reload shows as much as before.
  useEffect(() => {
    if (s.snapshotId !== null && s.snapshotFull && s.older.size === 0) void load();
  }, [s.snapshotId]);
  return {
    available: !st.unsupported && s.mayHaveOlder && s.settings !== null,
    loading: st.loading,
    failed: st.failed,
    done: s.historyDone,
    load: () => void load(),
  };
}

/** The settings view, loaded as its own chunk the first time it is opened. */
function useSettingsView(wanted: boolean): FunctionComponent<SettingsProps> | null {
  const [comp, setComp] = useState<FunctionComponent<SettingsProps> | null>(null);
  useEffect(() => {
    if (wanted && !comp) void import("./Settings.tsx").then((m) => setComp(() => m.Settings));
  }, [wanted]);
  return comp;
}

/** Props of {@link App}. */
export interface AppProps {
  /**
   * Who is signed in (JWT mode): the tenant is the token's, the controls follow its roles, and
   * the stream is opened with tickets. `null` in header mode.
   */
  identity: Identity | null;
  /** Signs out (JWT mode). */
  onSignOut?(): void;
}

/** The console page. */
export function App({ identity, onSignOut }: AppProps) {
  const fixedTenant = identity?.tenant ?? null;
  const [tenant, setTenant] = useState<Tenant>(() => fixedTenant ?? initialTenant(window.location.search, storage()));
  const [recent, setRecent] = useState<Tenant[]>(() => recentTenants(storage()));
  const store = useMemo(() => createStore(), []);
  const [, setTick] = useState(0);
  useEffect(() => store.subscribe(() => setTick((x) => x + 1)), [store]);
  useEffect(() => {
    store.dispatch({ kind: "reset" });
    store.setTenant(tenant);
    rememberTenant(tenant, storage());
    setRecent(recentTenants(storage()));
    const signedIn = credentials().kind === "bearer";
    const client = new StreamClient({
      tenant,
      getCursor: () => store.get().lastId,
      dispatch: store.dispatch,
      // Signed in: a fresh one-use ticket for every connection, never a token in the URL.
      ticket: signedIn,
    });
    client.start();
    return () => client.stop();
  }, [store, tenant]);
  useEffect(() => {
    if (fixedTenant) {
      // The token names the tenant: the address bar says which one is shown.
      const url = new URL(window.location.href);
      if (
        url.searchParams.get("org_id") !== tenant.org_id ||
        url.searchParams.get("project_id") !== tenant.project_id
      ) {
        url.searchParams.set("org_id", tenant.org_id);
        url.searchParams.set("project_id", tenant.project_id);
        window.history.replaceState(null, "", url);
      }
      return;
    }
    const on = () =>
      setTenant((cur) => {
        const next = initialTenant(window.location.search, null);
        return next.org_id === cur.org_id && next.project_id === cur.project_id ? cur : next;
      });
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  useEffect(() => store.rendered());

  const s = store.get();
  const settings = s.settings;
  const browser = browserLanguages();
  const wanted = pickLang(settings?.profile.locale, browser);
  // Korean comes in its own chunk: English until it is there.
  const [, setLangTick] = useState(0);
  useEffect(() => {
    if (!isLoaded(wanted)) void loadLang(wanted).then(() => setLangTick((x) => x + 1));
    try {
      localStorage.setItem(LANG_STORAGE_KEY, wanted);
    } catch {
      // No storage.
    }
  }, [wanted]);
  const lang = isLoaded(wanted) ? wanted : "en";
  setLang(lang);
  const locale = formatLocale(lang, settings?.profile.locale, browser);
  const tz = effectiveTimeZone(settings?.profile.timezone);
  const env = useMemo<Env>(() => ({ lang, locale, tz }), [lang, locale, tz]);
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);
  useEffect(() => {
    document.title = `${t("app.title")} · ${tenant.org_id}/${tenant.project_id}`;
  }, [lang, tenant]);
  useSkin(settings?.skin.theme, settings?.skin.accent_color);

  const view = useView();
  const SettingsView = useSettingsView(view === "settings");
  const firstView = useRef(true);
  const [settingsMounted, setSettingsMounted] = useState(view === "settings");
  useEffect(() => {
    if (view === "settings") setSettingsMounted(true);
    if (firstView.current) {
      firstView.current = false;
      return;
    }
    focusById(view === "settings" ? "settings-title" : "composer");
  }, [view]);

  const principal = useMemo(
    () => (identity ? { id: identity.principal, roles: identity.roles } : s.principal),
    [identity?.principal, identity?.roles.join(","), s.principal],
  );
  const perms = permissions(principal);
  const loaded = settings !== null;
  // Derived lists: recomputed only when their part of the state moved (per frame at most).
  const entries = useMemo(() => (loaded ? worklogOrder(s) : null), [s, s.worklogRev, loaded]);
  const open = useMemo(() => (loaded ? openAsks(s) : null), [s, s.asksRev, loaded]);
  const resolved = useMemo(() => resolvedAsks(s), [s, s.asksRev]);
  const reasons = useMemo(() => {
    const m = new Map<string, CancelReason>();
    for (const a of s.asks.values()) {
      if (a.status === "expired") m.set(a.action.command_id, "expired");
      else if (a.status === "cancelled" || a.decision === "reject") m.set(a.action.command_id, "rejected");
    }
    return m;
  }, [s, s.asksRev]);
  const ap = loaded ? autopilot(s) : null;
  const apMemo = useMemo(() => ap, [ap?.status, ap?.in_flight]);

  // The command sent from here: its row opens by itself, and focus moves to it when it appears.
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(() => new Set());
  const [mine, setMine] = useState<string | null>(null);
  const focusedMine = useRef<string | null>(null);
  const onToggle = useCallback(
    (id: string) =>
      setExpanded((prev) => {
        const next = new Set(prev);
        if (next.has(id)) next.delete(id);
        else next.add(id);
        return next;
      }),
    [],
  );
  const onAccepted = useCallback((id: string) => {
    setMine(id);
    setExpanded((prev) => new Set(prev).add(id));
  }, []);
  const onShow = useCallback((id: string) => focusEntry(id), []);
  useEffect(() => {
    if (!mine || focusedMine.current === mine || !findWork(s, mine)) return;
    focusedMine.current = mine;
    const a = document.activeElement;
    if (focusLost() || a?.id === "composer-status") focusEntry(mine);
  });
  useEffect(() => {
    setExpanded(new Set());
    setMine(null);
  }, [tenant]);

  const older = useOlder(store, tenant, s);
  const announcement = useAnnouncement(s, tenant);
  const [resyncSeen, setResyncSeen] = useState(false);
  useEffect(() => setResyncSeen(false), [s.connState]);

  const switchTenant = useCallback((next: Tenant) => {
    writeTenantToUrl(next);
    setTenant(next);
  }, []);

  const stale = s.connState === "reconnecting";
  const streamError = s.lastStreamError && s.lastStreamError.code !== "CURSOR_EXPIRED" ? s.lastStreamError : null;
  return (
    <>
      <a class="skip" href="#approvals">
        {t("app.skipApprovals")}
      </a>
      <a class="skip" href="#composer">
        {t("app.skipComposer")}
      </a>
      <Header
        tenant={tenant}
        recent={recent}
        onSwitch={switchTenant}
        connState={s.connState}
        autopilot={apMemo}
        view={view}
        showSettings={perms.administer}
        lang={lang}
        {...(identity ? { identity, onSignOut } : {})}
      />
      {stale && (
        <div class="banner warn" role="status" data-testid="conn-banner">
          <p>{t("conn.banner")}</p>
          {streamError && <p class="small">{errorText(streamError.code)}</p>}
        </div>
      )}
      {s.connState === "resynced" && !resyncSeen && (
        <div class="banner info" role="status" data-testid="resync-banner">
          <p>{t("conn.resyncedNote")}</p>
          <button type="button" class="link" onClick={() => setResyncSeen(true)}>
            {t("dismiss")}
          </button>
        </div>
      )}
      <main id="main">
        <div class="layout" hidden={view !== "console"} data-testid="console-view">
          <Asks
            key={`a-${tenant.org_id}/${tenant.project_id}`}
            tenant={tenant}
            open={open}
            resolved={resolved}
            env={env}
            canDecide={perms.decide}
            stale={stale}
          />
          {perms.operate ? (
            <Composer
              key={`c-${tenant.org_id}/${tenant.project_id}`}
              tenant={tenant}
              timezone={tz}
              lang={lang}
              overrides={settings?.compliance.risk_overrides}
              seen={mine ? findWork(s, mine)?.status : undefined}
              onAccepted={onAccepted}
              onShow={onShow}
            />
          ) : (
            <section class="panel compose-panel" id="composer" aria-labelledby="composer-h" tabIndex={-1}>
              <h2 id="composer-h">{t("composer.title")}</h2>
              <p class="notice" data-testid="composer-forbidden">
                {t("composer.noRole")}
              </p>
            </section>
          )}
          <Worklog
            entries={entries}
            env={env}
            tenant={tenant}
            progress={s.progress}
            progressRev={s.progressRev}
            reasons={reasons}
            expanded={expanded}
            onToggle={onToggle}
            older={older}
            stale={stale}
          />
        </div>
        {settingsMounted && (
          <div hidden={view !== "settings"}>
            {!SettingsView && (
              <p class="settings-view muted" aria-busy="true">
                {t("app.loading")}
              </p>
            )}
            {SettingsView && (
              <SettingsView
                key={`s-${tenant.org_id}/${tenant.project_id}`}
                tenant={tenant}
                lang={lang}
                settings={settings}
                seen={s.settingsSeen}
                settingsRev={s.settingsRev}
                sectionCid={s.sectionCid}
                allowed={perms.administer}
              />
            )}
          </div>
        )}
      </main>
      <footer class="statusbar">
        <div aria-live="polite" aria-atomic="true" role="status" data-testid="live-region" class="live-region">
          {announcement}
        </div>
      </footer>
    </>
  );
}
