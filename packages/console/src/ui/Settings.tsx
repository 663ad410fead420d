import { COMMAND_TYPES, type CommandType, type RiskLevel, type SettingsSection, type Tenant } from "@nexus/contracts";
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  type ApiResult,
  acceptedCorrelationId,
  fetchImage,
  NETWORK_ERROR,
  type SettingsPatch,
  saveSettings,
  uploadPhoto,
} from "../api.ts";
import { TONES } from "../commandForms.ts";
import { accentVars, contrastRatio, DEFAULT_ACCENT, MIN_CONTRAST, parseHex, SURFACE } from "../contrast.ts";
import { credentials } from "../credentials.ts";
import { correlationId } from "../format.ts";
import { errorText, t, typeLabel } from "../i18n.ts";
import type { SettingsState } from "../state.ts";
import type { WireError } from "../wire.ts";
import { focusById, memo } from "./memo.ts";

/**
 * The `src` for an image of the API: the URL itself in header mode; signed in, an object URL of
 * the image fetched with the bearer token (an `<img>` cannot send `Authorization`, and the token
 * never goes in a URL).
 */
function useApiImage(tenant: Tenant, url: string | undefined): string | undefined {
  const bearer = credentials().kind === "bearer";
  const [src, setSrc] = useState<string | undefined>(bearer ? undefined : url);
  useEffect(() => {
    if (!bearer || !url) {
      setSrc(url);
      return;
    }
    let gone = false;
    let made: string | null = null;
    void fetchImage(tenant, url).then((u) => {
      made = u;
      if (gone) {
        if (u) URL.revokeObjectURL(u);
      } else setSrc(u ?? undefined);
    });
    return () => {
      gone = true;
      if (made) URL.revokeObjectURL(made);
    };
  }, [url, bearer, tenant.org_id, tenant.project_id]);
  return src;
}

type Key = SettingsSection | "photo";

/** Where a settings request stands (UI-only: the values shown come from the stream). */
type Pending =
  | { phase: "sending" }
  | { phase: "waiting"; cids: string[]; sent: Record<string, string> }
  | { phase: "updated" }
  | { phase: "error"; error: WireError };

/** Unsaved input of one section: only the fields the user changed (the rest show the stream's values). */
type Edits = Record<string, string>;

const TYPES = Object.keys(COMMAND_TYPES) as CommandType[];
const LEVELS: RiskLevel[] = ["GREEN", "YELLOW", "RED"];

function Status(props: { k: Key; p: Pending | undefined }) {
  const p = props.p;
  if (!p) return null;
  if (p.phase === "error") {
    return (
      <div class="error-box" role="alert" data-testid={`settings-error-${props.k}`} data-code={p.error.code}>
        <p>{p.error.code === NETWORK_ERROR ? t("errors.network") : errorText(p.error.code)}</p>
        {(p.error.details ?? []).length > 0 && (
          <ul>
            {(p.error.details ?? []).map((d) => (
              <li key={`${d.path}:${d.issue}`}>
                <code>{d.path}</code>: {d.issue}
              </li>
            ))}
          </ul>
        )}
        {p.error.code !== NETWORK_ERROR && <p class="small">{t("errors.code", { code: p.error.code })}</p>}
      </div>
    );
  }
  const text =
    p.phase === "sending" ? t("settings.saving") : p.phase === "waiting" ? t("settings.applying") : t("settings.saved");
  return (
    <p
      class={p.phase === "updated" ? "ok small" : "muted small"}
      role="status"
      data-testid={`settings-status-${props.k}`}
      data-phase={p.phase}
    >
      {text}
    </p>
  );
}

function Section(props: { title: string; id: string; children: ComponentChildren }) {
  return (
    <section class="panel settings-section" aria-labelledby={`${props.id}-h`}>
      <h2 id={`${props.id}-h`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

function Input(props: {
  id: string;
  label: string;
  value: string;
  onInput(v: string): void;
  type?: string;
  hint?: string;
  placeholder?: string;
  list?: string;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        data-testid={props.id}
        type={props.type ?? "text"}
        value={props.value}
        placeholder={props.placeholder}
        list={props.list}
        aria-describedby={props.hint ? `${props.id}-hint` : undefined}
        onInput={(e) => props.onInput(e.currentTarget.value)}
      />
      {props.hint && (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
    </div>
  );
}

function Select(props: {
  id: string;
  label: string;
  value: string;
  options: readonly (readonly [string, string])[];
  onChange(v: string): void;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <select
        id={props.id}
        data-testid={props.id}
        value={props.value}
        onChange={(e) => props.onChange(e.currentTarget.value)}
      >
        {props.options.map(([v, label]) => (
          <option key={v} value={v}>
            {label}
          </option>
        ))}
      </select>
    </div>
  );
}

/** Props of {@link Settings}. */
export interface SettingsProps {
  tenant: Tenant;
  lang: string;
  settings: SettingsState | null;
  /** `settings.updated` correlation ids seen (the store's map) and a counter that moves when it changes. */
  seen: ReadonlyMap<string, SettingsSection>;
  settingsRev: number;
  /** Correlation id of the update that last changed each section. */
  sectionCid: Partial<Record<SettingsSection, string>>;
  allowed: boolean;
}

/**
 * Profile, assistant persona, appearance and compliance, each its own form. A save is
 * confirmed by the stream's `settings.updated` with the request's correlation id, whether it
 * arrives before or after the HTTP answer. Unsaved input is kept when the section changes
 * elsewhere (another tab, another person): only fields the user touched are drafts.
 */
export const Settings = memo(function Settings(props: SettingsProps) {
  const { tenant, settings: s, seen, settingsRev } = props;
  const [pending, setPending] = useState<Partial<Record<Key, Pending>>>({});
  const [edits, setEdits] = useState<Partial<Record<SettingsSection, Edits>>>({});
  const [elsewhere, setElsewhere] = useState<Partial<Record<SettingsSection, boolean>>>({});
  const [photo, setPhoto] = useState<File | null>(null);
  const mine = useRef(new Set<string>());
  const lastCid = useRef<Partial<Record<SettingsSection, string>>>({});

  const edit = (section: SettingsSection, patch: Edits) =>
    setEdits((all) => ({ ...all, [section]: { ...(all[section] ?? {}), ...patch } }));

  /** Completes a waiting request: forget the sent drafts that are still what was sent. */
  const complete = (k: Key, p: Pending) => {
    if (p.phase !== "waiting") return;
    setPending((all) => ({ ...all, [k]: { phase: "updated" } }));
    if (k === "photo") return;
    setEdits((all) => {
      const cur = { ...(all[k] ?? {}) };
      for (const [f, v] of Object.entries(p.sent)) if (cur[f] === v) delete cur[f];
      return { ...all, [k]: cur };
    });
    setElsewhere((all) => ({ ...all, [k]: false }));
  };

  // The stream confirmed (or had already confirmed) a request we wait for.
  useEffect(() => {
    for (const [k, p] of Object.entries(pending) as [Key, Pending][]) {
      if (p.phase === "waiting" && p.cids.some((c) => seen.has(c))) complete(k, p);
    }
    // Someone else changed a section this page has drafts for.
    for (const section of ["profile", "persona", "skin", "compliance"] as const) {
      const cid = props.sectionCid[section];
      if (!cid || cid === lastCid.current[section]) continue;
      lastCid.current[section] = cid;
      const draft = edits[section];
      if (!mine.current.has(cid) && draft && Object.keys(draft).length > 0) {
        setElsewhere((all) => ({ ...all, [section]: true }));
      }
    }
  }, [settingsRev, pending]);

  const run = async (k: Key, sent: Edits, request: (cid: string) => Promise<ApiResult>) => {
    const cid = correlationId();
    mine.current.add(cid);
    setPending((p) => ({ ...p, [k]: { phase: "sending" } }));
    const r = await request(cid);
    if (!r.ok) {
      setPending((p) => ({ ...p, [k]: { phase: "error", error: r.error } }));
      focusById(`settings-${k}-save`);
      return;
    }
    const accepted = acceptedCorrelationId(r);
    if (accepted) mine.current.add(accepted);
    // Waiting; the effect above completes it at once if the report came before this answer.
    setPending((p) => ({ ...p, [k]: { phase: "waiting", cids: accepted ? [cid, accepted] : [cid], sent } }));
  };
  const patch = (k: SettingsSection, body: Record<string, unknown>, sent: Edits) =>
    run(k, sent, (cid) => saveSettings(tenant, { section: k, patch: body } as SettingsPatch, cid));

  if (!props.allowed) {
    return (
      <div class="settings-view">
        <p class="notice" data-testid="settings-forbidden">
          {t("settings.noAccess")}
        </p>
      </div>
    );
  }
  if (s === null) {
    return (
      <div class="settings-view" aria-busy="true">
        <p class="muted">{t("app.loading")}</p>
      </div>
    );
  }

  const profile = s.profile;
  const persona = s.persona;
  const skin = s.skin;
  const compliance = s.compliance;
  const view = <T extends Record<string, string>>(section: SettingsSection, base: T): T => ({
    ...base,
    ...(edits[section] ?? {}),
  });
  const p = view("profile", {
    display_name: profile.display_name ?? "",
    locale: profile.locale ?? "",
    timezone: profile.timezone ?? "",
  });
  const per = view("persona", {
    name: persona.name ?? "",
    tone: persona.tone ?? "",
    instructions: persona.instructions ?? "",
  });
  const sk = view("skin", { theme: skin.theme ?? "system", accent_color: skin.accent_color ?? DEFAULT_ACCENT });
  const compBase: Record<string, string> = {
    ttl: compliance.ask_ttl_seconds == null ? "" : String(compliance.ask_ttl_seconds),
  };
  for (const ty of TYPES) {
    compBase[`risk:${ty}`] = compliance.risk_overrides[ty] ?? COMMAND_TYPES[ty].risk;
    compBase[`need:${ty}`] = String(compliance.approvals_required?.[ty] ?? 1);
  }
  const c = view("compliance", compBase);
  const dirty = (section: SettingsSection) => Object.keys(edits[section] ?? {}).length > 0;
  const nonEmpty = (o: Record<string, string>) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v.trim() !== ""));

  const notice = (section: SettingsSection) =>
    elsewhere[section] && dirty(section) ? (
      <div class="notice" role="status" data-testid={`settings-elsewhere-${section}`}>
        <p>{t("settings.changedElsewhere")}</p>
        <button
          type="button"
          class="link"
          onClick={() => {
            setEdits((all) => ({ ...all, [section]: {} }));
            setElsewhere((all) => ({ ...all, [section]: false }));
          }}
        >
          {t("settings.discard")}
        </button>
      </div>
    ) : null;

  const save = (k: SettingsSection, testId: string) => (
    <div class="save-row">
      <button type="submit" class="primary" id={`settings-${k}-save`} data-testid={testId}>
        {t("settings.save")}
      </button>
      {dirty(k) && (
        <span class="small muted" data-testid={`settings-dirty-${k}`}>
          {t("settings.unsaved")}
        </span>
      )}
      <Status k={k} p={pending[k]} />
    </div>
  );

  const accentOk = parseHex(sk.accent_color) !== null;
  const readable =
    accentOk &&
    contrastRatio(sk.accent_color, SURFACE.light) >= MIN_CONTRAST &&
    contrastRatio(sk.accent_color, SURFACE.dark) >= MIN_CONTRAST;
  const fill = accentVars(sk.accent_color);
  const localeOptions: [string, string][] = [
    ["", t("settings.localeBrowser")],
    ["en", "English"],
    ["ko", "한국어"],
  ];
  if (p.locale && !localeOptions.some(([v]) => v === p.locale)) localeOptions.push([p.locale, p.locale]);
  const photoSrc = useApiImage(tenant, profile.photo?.url);

  return (
    <div class="settings-view" data-testid="settings-view">
      <h1 class="view-title" id="settings-title" tabIndex={-1}>
        {t("settings.title")}
      </h1>
      <Section title={t("settings.profile")} id="profile">
        <div class="photo-row">
          {photoSrc ? (
            <img
              src={photoSrc}
              alt={t("settings.avatarAlt", { name: profile.display_name ?? "" })}
              class="avatar"
              data-testid="profile-photo-preview"
              width={64}
              height={64}
            />
          ) : (
            <div class="avatar placeholder" aria-hidden="true">
              {(profile.display_name ?? "?").slice(0, 1).toUpperCase()}
            </div>
          )}
          <form
            class="photo-form"
            data-testid="settings-photo"
            onSubmit={(e) => {
              e.preventDefault();
              if (photo) void run("photo", {}, (cid) => uploadPhoto(tenant, photo, cid));
            }}
          >
            <div class="field">
              <label for="profile-photo">{t("settings.photo")}</label>
              <input
                id="profile-photo"
                data-testid="profile-photo"
                type="file"
                accept="image/png,image/jpeg,image/webp"
                aria-describedby="profile-photo-hint"
                onChange={(e) => setPhoto(e.currentTarget.files?.[0] ?? null)}
              />
              <p class="hint" id="profile-photo-hint">
                {t("settings.photoHint")}
              </p>
            </div>
            <button type="submit" id="settings-photo-save" data-testid="upload-photo" disabled={!photo}>
              {t("settings.upload")}
            </button>
            <Status k="photo" p={pending.photo} />
          </form>
        </div>
        <form
          data-testid="settings-profile"
          onSubmit={(e) => {
            e.preventDefault();
            void patch("profile", nonEmpty(p), { ...(edits.profile ?? {}) });
          }}
        >
          {notice("profile")}
          <Input
            id="profile-display_name"
            label={t("settings.display_name")}
            value={p.display_name}
            onInput={(v) => edit("profile", { display_name: v })}
          />
          <Select
            id="profile-locale"
            label={t("settings.locale")}
            value={p.locale}
            options={localeOptions}
            onChange={(v) => edit("profile", { locale: v })}
          />
          <Input
            id="profile-timezone"
            label={t("settings.timezone")}
            value={p.timezone}
            placeholder="Asia/Seoul"
            hint={t("settings.timezoneHint")}
            onInput={(v) => edit("profile", { timezone: v })}
          />
          {save("profile", "save-profile")}
        </form>
      </Section>

      <Section title={t("settings.persona")} id="persona">
        <form
          data-testid="settings-persona"
          onSubmit={(e) => {
            e.preventDefault();
            const body: Record<string, string> = { ...nonEmpty({ name: per.name, tone: per.tone }) };
            body.instructions = per.instructions;
            void patch("persona", body, { ...(edits.persona ?? {}) });
          }}
        >
          {notice("persona")}
          <Input
            id="persona-name"
            label={t("settings.name")}
            value={per.name}
            onInput={(v) => edit("persona", { name: v })}
          />
          <Select
            id="persona-tone"
            label={t("settings.tone")}
            value={per.tone}
            options={[["", t("settings.notSet")], ...TONES.map((x) => [x, t(`tones.${x}`)] as [string, string])]}
            onChange={(v) => edit("persona", { tone: v })}
          />
          <div class="field">
            <label for="persona-instructions">{t("settings.instructions")}</label>
            <textarea
              id="persona-instructions"
              data-testid="persona-instructions"
              rows={3}
              maxLength={4000}
              value={per.instructions}
              onInput={(e) => edit("persona", { instructions: e.currentTarget.value })}
            />
          </div>
          {save("persona", "save-persona")}
        </form>
      </Section>

      <Section title={t("settings.skin")} id="skin">
        <form
          data-testid="settings-skin"
          onSubmit={(e) => {
            e.preventDefault();
            void patch("skin", { theme: sk.theme, accent_color: sk.accent_color }, { ...(edits.skin ?? {}) });
          }}
        >
          {notice("skin")}
          <Select
            id="skin-theme"
            label={t("settings.theme")}
            value={sk.theme}
            options={(["light", "dark", "system"] as const).map(
              (x) => [x, t(`settings.themes.${x}`)] as [string, string],
            )}
            onChange={(v) => edit("skin", { theme: v })}
          />
          <div class="field">
            <label for="skin-accent_color">{t("settings.accent")}</label>
            <div class="color-row">
              <input
                id="skin-accent_color"
                data-testid="skin-accent_color"
                type="color"
                value={accentOk ? sk.accent_color : DEFAULT_ACCENT}
                aria-describedby="skin-accent-note"
                onInput={(e) => edit("skin", { accent_color: e.currentTarget.value })}
              />
              <code data-testid="skin-accent-current">{skin.accent_color ?? "—"}</code>
              <span
                class="swatch"
                aria-hidden="true"
                style={{ background: fill["--accent-fill"], color: fill["--accent-on"] }}
              >
                {t("composer.submit")}
              </span>
            </div>
            <p class="hint" id="skin-accent-note" data-testid="skin-accent-note" data-readable={String(readable)}>
              {readable ? t("settings.accentReadable") : t("settings.accentUnreadable")}
            </p>
          </div>
          {save("skin", "save-skin")}
        </form>
      </Section>

      <Section title={t("settings.compliance")} id="compliance">
        <form
          data-testid="settings-compliance"
          onSubmit={(e) => {
            e.preventDefault();
            const ed = edits.compliance ?? {};
            // Levels that differ from the default or were already overridden.
            const risk_overrides = Object.fromEntries(
              TYPES.filter((ty) => c[`risk:${ty}`] !== COMMAND_TYPES[ty].risk || ty in compliance.risk_overrides).map(
                (ty) => [ty, c[`risk:${ty}`]],
              ),
            );
            const body: Record<string, unknown> = {
              risk_overrides,
              ask_ttl_seconds: (c.ttl ?? "").trim() === "" ? null : Number(c.ttl),
            };
            // Sent only when changed here: older servers do not know the field.
            if (TYPES.some((ty) => `need:${ty}` in ed)) {
              body.approvals_required = Object.fromEntries(
                TYPES.filter(
                  (ty) => Number(c[`need:${ty}`]) > 1 || compliance.approvals_required?.[ty] !== undefined,
                ).map((ty) => [ty, Number(c[`need:${ty}`])]),
              );
            }
            void patch("compliance", body, { ...ed });
          }}
        >
          {notice("compliance")}
          <div class="table-scroll">
            <table class="risk-table">
              <caption class="sr-only">{t("settings.compliance")}</caption>
              <thead>
                <tr>
                  <th scope="col">{t("settings.type")}</th>
                  <th scope="col">{t("settings.level")}</th>
                  <th scope="col">{t("settings.approvers")}</th>
                </tr>
              </thead>
              <tbody>
                {TYPES.map((ty) => (
                  <tr key={ty}>
                    <th scope="row">
                      <span id={`compliance-type-${ty}`}>{typeLabel(ty)}</span>
                      <span class="muted small">
                        {" "}
                        ({t("settings.defaultLevel", { level: t(`risk.${COMMAND_TYPES[ty].risk}`) })})
                      </span>
                    </th>
                    <td>
                      <select
                        id={`compliance-risk-${ty}`}
                        data-testid={`compliance-risk-${ty}`}
                        aria-labelledby={`compliance-type-${ty}`}
                        value={c[`risk:${ty}`]}
                        onChange={(e) => edit("compliance", { [`risk:${ty}`]: e.currentTarget.value })}
                      >
                        {LEVELS.map((l) => (
                          <option key={l} value={l}>
                            {t(`risk.${l}`)}
                          </option>
                        ))}
                      </select>
                    </td>
                    <td>
                      <input
                        type="number"
                        min={1}
                        max={10}
                        class="narrow"
                        data-testid={`compliance-need-${ty}`}
                        aria-label={`${typeLabel(ty)}: ${t("settings.approvers")}`}
                        value={c[`need:${ty}`]}
                        onInput={(e) => edit("compliance", { [`need:${ty}`]: e.currentTarget.value })}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Input
            id="compliance-ask_ttl_seconds"
            label={t("settings.ttl")}
            type="number"
            value={c.ttl ?? ""}
            hint={t("settings.ttlHint")}
            onInput={(v) => edit("compliance", { ttl: v })}
          />
          <p class="muted small">{t("settings.policyVersion", { v: compliance.policy_version })}</p>
          {save("compliance", "save-compliance")}
        </form>
      </Section>
    </div>
  );
});
