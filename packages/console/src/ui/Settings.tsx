import {
  type ApiError,
  COMMAND_TYPES,
  type CommandType,
  type ReportEvent,
  type RiskLevel,
  type SettingsSection,
  type Snapshot,
  type Tenant,
} from "@nexus/contracts";
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { type ApiResult, acceptedCorrelationId, sendJson, uploadPhoto } from "../api.ts";
import { TONES } from "../commandForms.ts";
import { correlationId } from "../format.ts";

/** Where a settings request stands (UI-only: the values shown always come from the stream). */
type Pending =
  | { phase: "idle" }
  | { phase: "sending" }
  | { phase: "waiting"; correlation_id: string }
  | { phase: "updated" }
  | { phase: "error"; error: ApiError };

type Key = SettingsSection | "photo";
const TYPES = Object.keys(COMMAND_TYPES) as CommandType[];
const LEVELS: RiskLevel[] = ["GREEN", "YELLOW", "RED"];
const DEFAULT_ACCENT = "#4f46e5";

function Status(props: { k: Key; p: Pending | undefined }) {
  const p = props.p;
  if (!p || p.phase === "idle") return null;
  if (p.phase === "error") {
    return (
      <div class="error-box" role="alert" data-testid={`settings-error-${props.k}`}>
        <p>
          <strong>{p.error.code}</strong>: {p.error.message}
        </p>
        {(p.error.details ?? []).length > 0 && (
          <ul>
            {(p.error.details ?? []).map((d) => (
              <li key={`${d.path}:${d.issue}`}>
                <code>{d.path}</code>: {d.issue}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
  const text =
    p.phase === "sending" ? "sending…" : p.phase === "waiting" ? "saved — waiting for the stream" : "updated";
  return (
    <p
      class={p.phase === "updated" ? "ok small" : "muted small"}
      role="status"
      data-testid={`settings-status-${props.k}`}
    >
      {text}
    </p>
  );
}

function Section(props: { title: string; id: string; children: ComponentChildren }) {
  return (
    <section class="settings-section" aria-labelledby={`${props.id}-h`}>
      <h3 id={`${props.id}-h`} class="sub">
        {props.title}
      </h3>
      {props.children}
    </section>
  );
}

/** A labelled text-like input. */
function Input(props: {
  id: string;
  label: string;
  value: string;
  onInput(v: string): void;
  type?: string;
  hint?: string;
  placeholder?: string;
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
  options: readonly string[];
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
        {props.options.map((o) => (
          <option key={o} value={o}>
            {o === "" ? "(not set)" : o}
          </option>
        ))}
      </select>
    </div>
  );
}

/** Keeps a form's draft in step with the stream's values: when they change, the draft is reset to them. */
function useDraft<T>(fromState: T): [T, (patch: Partial<T>) => void] {
  const key = JSON.stringify(fromState);
  const [draft, setDraft] = useState(fromState);
  useEffect(() => setDraft(fromState), [key]);
  return [draft, (patch) => setDraft((d) => ({ ...d, ...patch }))];
}

/**
 * Profile, persona, skin and compliance. Each form PATCHes its endpoint; the values shown
 * change only when the stream's `settings.updated` report arrives.
 */
export function Settings(props: { tenant: Tenant; snapshot: Snapshot | null; lastReport: ReportEvent | null }) {
  const { tenant, snapshot: s, lastReport } = props;
  const [pending, setPending] = useState<Partial<Record<Key, Pending>>>({});

  // A settings.updated report whose correlation_id we are waiting for completes that request.
  useEffect(() => {
    const r = lastReport;
    if (r?.report.type !== "settings.updated") return;
    setPending((all) => {
      let changed = false;
      const next = { ...all };
      for (const k of Object.keys(all) as Key[]) {
        const p = all[k];
        if (p?.phase === "waiting" && p.correlation_id === r.causality.correlation_id) {
          next[k] = { phase: "updated" };
          changed = true;
        }
      }
      return changed ? next : all;
    });
  }, [lastReport]);

  const run = async (k: Key, request: (cid: string) => Promise<ApiResult>) => {
    const cid = correlationId();
    setPending((p) => ({ ...p, [k]: { phase: "sending" } }));
    const r = await request(cid);
    setPending((p) => ({
      ...p,
      [k]: r.ok
        ? { phase: "waiting", correlation_id: acceptedCorrelationId(r) ?? cid }
        : { phase: "error", error: r.error },
    }));
  };
  const patch = (k: SettingsSection, path: string, body: Record<string, unknown>) =>
    run(k, (cid) => sendJson(tenant, "PATCH", path, body, cid));

  const profile = s?.profile ?? {};
  const persona = s?.assistant.persona ?? {};
  const skin = s?.assistant.skin ?? {};
  const compliance = s?.compliance ?? { risk_overrides: {}, policy_version: 0 };

  const [pDraft, setP] = useDraft({
    display_name: profile.display_name ?? "",
    locale: profile.locale ?? "",
    timezone: profile.timezone ?? "",
  });
  const [perDraft, setPer] = useDraft({
    name: persona.name ?? "",
    tone: persona.tone ?? "",
    instructions: persona.instructions ?? "",
  });
  const [skDraft, setSk] = useDraft({
    theme: skin.theme ?? "system",
    accent_color: skin.accent_color ?? DEFAULT_ACCENT,
  });
  const levels = Object.fromEntries(
    TYPES.map((t) => [t, compliance.risk_overrides[t] ?? COMMAND_TYPES[t].risk]),
  ) as Record<CommandType, RiskLevel>;
  const [cDraft, setC] = useDraft({
    levels,
    ttl: compliance.ask_ttl_seconds == null ? "" : String(compliance.ask_ttl_seconds),
  });
  const [photo, setPhoto] = useState<File | null>(null);

  const nonEmpty = (o: Record<string, string>) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v.trim() !== ""));
  const disabled = s === null;

  return (
    <section class="panel" aria-labelledby="settings-h">
      <h2 id="settings-h">Settings</h2>
      {disabled && <p class="muted small">Waiting for the first snapshot…</p>}

      <Section title="Profile" id="profile">
        <div class="photo-row">
          {profile.photo?.url ? (
            <img
              src={profile.photo.url}
              alt={`${profile.display_name ?? "Your"} avatar`}
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
              if (photo) run("photo", (cid) => uploadPhoto(tenant, photo, cid));
            }}
          >
            <div class="field">
              <label for="profile-photo">Photo (PNG, JPEG or WebP, at most 5 MiB)</label>
              <input
                id="profile-photo"
                data-testid="profile-photo"
                type="file"
                accept="image/png,image/jpeg,image/webp"
                onChange={(e) => setPhoto(e.currentTarget.files?.[0] ?? null)}
              />
            </div>
            <button type="submit" data-testid="upload-photo" disabled={disabled || !photo}>
              Upload photo
            </button>
            <Status k="photo" p={pending.photo} />
          </form>
        </div>
        <form
          data-testid="settings-profile"
          onSubmit={(e) => {
            e.preventDefault();
            patch("profile", "/profile", nonEmpty(pDraft));
          }}
        >
          <Input
            id="profile-display_name"
            label="Display name"
            value={pDraft.display_name}
            onInput={(v) => setP({ display_name: v })}
          />
          <Input
            id="profile-locale"
            label="Locale"
            value={pDraft.locale}
            placeholder="en"
            hint="e.g. en or de-DE"
            onInput={(v) => setP({ locale: v })}
          />
          <Input
            id="profile-timezone"
            label="Time zone"
            value={pDraft.timezone}
            placeholder="Europe/Berlin"
            hint="IANA name; times on this page are shown in it"
            onInput={(v) => setP({ timezone: v })}
          />
          <button type="submit" data-testid="save-profile" disabled={disabled}>
            Save profile
          </button>
          <Status k="profile" p={pending.profile} />
        </form>
      </Section>

      <Section title="Assistant persona" id="persona">
        <form
          data-testid="settings-persona"
          onSubmit={(e) => {
            e.preventDefault();
            const body: Record<string, string> = { ...nonEmpty({ name: perDraft.name, tone: perDraft.tone }) };
            body.instructions = perDraft.instructions;
            patch("persona", "/assistant/persona", body);
          }}
        >
          <Input id="persona-name" label="Name" value={perDraft.name} onInput={(v) => setPer({ name: v })} />
          <Select
            id="persona-tone"
            label="Tone"
            value={perDraft.tone}
            options={["", ...TONES]}
            onChange={(v) => setPer({ tone: v })}
          />
          <div class="field">
            <label for="persona-instructions">Instructions</label>
            <textarea
              id="persona-instructions"
              data-testid="persona-instructions"
              rows={3}
              maxLength={4000}
              value={perDraft.instructions}
              onInput={(e) => setPer({ instructions: e.currentTarget.value })}
            />
          </div>
          <button type="submit" data-testid="save-persona" disabled={disabled}>
            Save persona
          </button>
          <Status k="persona" p={pending.persona} />
        </form>
      </Section>

      <Section title="Skin" id="skin">
        <form
          data-testid="settings-skin"
          onSubmit={(e) => {
            e.preventDefault();
            patch("skin", "/assistant/skin", { theme: skDraft.theme, accent_color: skDraft.accent_color });
          }}
        >
          <Select
            id="skin-theme"
            label="Theme"
            value={skDraft.theme}
            options={["light", "dark", "system"]}
            onChange={(v) => setSk({ theme: v as "light" | "dark" | "system" })}
          />
          <div class="field">
            <label for="skin-accent_color">Accent colour</label>
            <div class="color-row">
              <input
                id="skin-accent_color"
                data-testid="skin-accent_color"
                type="color"
                value={skDraft.accent_color}
                onInput={(e) => setSk({ accent_color: e.currentTarget.value })}
              />
              <code data-testid="skin-accent-current">{skin.accent_color ?? "(default)"}</code>
            </div>
          </div>
          <button type="submit" data-testid="save-skin" disabled={disabled}>
            Save skin
          </button>
          <Status k="skin" p={pending.skin} />
        </form>
      </Section>

      <Section title="Compliance" id="compliance">
        <form
          data-testid="settings-compliance"
          onSubmit={(e) => {
            e.preventDefault();
            // Send the levels that differ from the default or were already overridden.
            const risk_overrides = Object.fromEntries(
              TYPES.filter((t) => cDraft.levels[t] !== COMMAND_TYPES[t].risk || t in compliance.risk_overrides).map(
                (t) => [t, cDraft.levels[t]],
              ),
            );
            const ttl = cDraft.ttl.trim();
            patch("compliance", "/compliance/settings", {
              risk_overrides,
              ask_ttl_seconds: ttl === "" ? null : Number(ttl),
            });
          }}
        >
          <table class="risk-table">
            <caption class="sr-only">Risk level per command type</caption>
            <thead>
              <tr>
                <th scope="col">Command type</th>
                <th scope="col">Risk level</th>
              </tr>
            </thead>
            <tbody>
              {TYPES.map((t) => (
                <tr key={t}>
                  <th scope="row">
                    <label for={`compliance-risk-${t}`}>{t}</label>
                    <span class="muted small"> (default {COMMAND_TYPES[t].risk})</span>
                  </th>
                  <td>
                    <select
                      id={`compliance-risk-${t}`}
                      data-testid={`compliance-risk-${t}`}
                      value={cDraft.levels[t]}
                      onChange={(e) => setC({ levels: { ...cDraft.levels, [t]: e.currentTarget.value as RiskLevel } })}
                    >
                      {LEVELS.map((l) => (
                        <option key={l} value={l}>
                          {l}
                        </option>
                      ))}
                    </select>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Input
            id="compliance-ask_ttl_seconds"
            label="Ask time-to-live (seconds)"
            type="number"
            value={cDraft.ttl}
            hint="60 to 2592000; empty for the deployment's default"
            onInput={(v) => setC({ ttl: v })}
          />
          <p class="muted small">Policy version {compliance.policy_version}</p>
          <button type="submit" data-testid="save-compliance" disabled={disabled}>
            Save compliance
          </button>
          <Status k="compliance" p={pending.compliance} />
        </form>
      </Section>
    </section>
  );
}
