import { COMMAND_TYPES, type CommandType, type RiskLevel, type Tenant, type WorklogStatus } from "@nexus/contracts";
import type { JSX } from "preact";
import { useRef, useState } from "preact/hooks";
import { type ApiResult, type CommandBody, isUnconfirmed, NETWORK_ERROR, sendCommand } from "../api.ts";
import {
  buildParams,
  COMMAND_FORMS,
  defaultValues,
  type FieldDef,
  type FormValues,
  fieldForPath,
} from "../commandForms.ts";
import { correlationId, uuid } from "../format.ts";
import { errorText, has, t, typeLabel } from "../i18n.ts";
import type { WireError } from "../wire.ts";
import { rememberZone } from "../zones.ts";
import { focusById, memo } from "./memo.ts";

type Phase =
  | { phase: "idle" }
  | { phase: "sending" }
  | { phase: "confirming" }
  | { phase: "accepted"; command_id: string }
  | { phase: "error"; error: WireError; retry?: () => void };

const TYPES = Object.keys(COMMAND_TYPES) as CommandType[];

function optionLabel(f: FieldDef, o: string): string {
  if (o === "") return t("composer.defaultOption");
  const group = f.key === "tone" ? "tones" : f.key === "channel" ? "channels" : null;
  return group && has(`${group}.${o}`) ? t(`${group}.${o}`) : o;
}

function Field(props: { def: FieldDef; value: string; error: string[] | undefined; onInput(v: string): void }) {
  const { def: f, value, error } = props;
  const id = `cmd-${f.key}`;
  const hint = has(`composer.hints.${f.key}`) ? t(`composer.hints.${f.key}`) : undefined;
  const describedBy = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
  const common = {
    id,
    name: f.key,
    "data-testid": `field-${f.key}`,
    value,
    "aria-invalid": error ? ("true" as const) : undefined,
    "aria-required": f.required ? ("true" as const) : undefined,
    "aria-describedby": describedBy,
    placeholder: f.placeholder,
    onInput: (e: Event) => props.onInput((e.currentTarget as HTMLInputElement).value),
  };
  let control: JSX.Element;
  switch (f.kind) {
    case "textarea":
    case "lines":
      control = <textarea {...common} rows={f.kind === "lines" ? 3 : 4} />;
      break;
    case "select":
      control = (
        <select {...common} onChange={common.onInput}>
          {(f.options ?? []).map((o) => (
            <option key={o} value={o}>
              {optionLabel(f, o)}
            </option>
          ))}
        </select>
      );
      break;
    case "number":
      control = <input {...common} type="number" inputMode="numeric" />;
      break;
    case "datetime":
      control = <input {...common} type="datetime-local" />;
      break;
    case "time":
      control = <input {...common} type="time" />;
      break;
    case "email":
      control = <input {...common} type="email" autocomplete="off" />;
      break;
    default:
      control = <input {...common} type="text" autocomplete="off" />;
  }
  const label = has(`composer.fields.${f.key}`) ? t(`composer.fields.${f.key}`) : f.label;
  return (
    <div class="field">
      <label for={id}>
        {label}
        {f.required ? (
          <span class="req" aria-hidden="true">
            {" "}
            *
          </span>
        ) : (
          <span class="opt"> ({t("composer.optional")})</span>
        )}
      </label>
      {control}
      {hint && (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && (
        <p class="field-error" id={`${id}-error`} data-testid={`field-error-${f.key}`}>
          {error.join(" ")}
        </p>
      )}
    </div>
  );
}

/** Required fields left empty, by key (checked before sending; the server validates the rest). */
function missing(type: CommandType, v: FormValues): string[] {
  return COMMAND_FORMS[type].filter((f) => f.required && (v[f.key] ?? "").trim() === "").map((f) => f.key);
}

/** Props of {@link Composer}. */
export interface ComposerProps {
  tenant: Tenant;
  timezone: string;
  lang: string;
  /** The tenant's risk overrides (a type raised to RED needs approval). */
  overrides: Record<string, RiskLevel> | undefined;
  /** What the stream says about the last command sent from here. */
  seen: WorklogStatus | undefined;
  /** Called with the command id the gateway accepted. */
  onAccepted(commandId: string): void;
  onShow(commandId: string): void;
}

/**
 * The command composer: one form per command type. Submitting POSTs `/sidecar/command`; a 202
 * only says "accepted" — the worklog changes when the stream reports the command. Focus goes
 * to the first invalid field on a validation error, else to the status message.
 */
export const Composer = memo(function Composer(props: ComposerProps) {
  const { tenant, timezone } = props;
  const [type, setType] = useState<CommandType>("draft_email.create");
  const [values, setValues] = useState<Partial<Record<CommandType, FormValues>>>({});
  const [phase, setPhase] = useState<Phase>({ phase: "idle" });
  const [local, setLocal] = useState<Record<string, string[]>>({});
  const form = useRef<HTMLFormElement>(null);

  const current: FormValues = { ...defaultValues(type, timezone), ...(values[type] ?? {}) };
  const setValue = (key: string, v: string) => {
    setValues((all) => ({ ...all, [type]: { ...(all[type] ?? {}), [key]: v } }));
    if (local[key]) setLocal(({ [key]: _, ...rest }) => rest);
  };
  const risk = (c: CommandType): RiskLevel => props.overrides?.[c] ?? COMMAND_TYPES[c].risk;

  // Server validation details at their fields; the rest stay in the summary.
  const fieldErrors: Record<string, string[]> = { ...local };
  const otherDetails: { path: string; issue: string }[] = [];
  if (phase.phase === "error") {
    for (const d of phase.error.details ?? []) {
      const key = fieldForPath(type, d.path);
      if (key) fieldErrors[key] = [...(fieldErrors[key] ?? []), d.issue];
      else otherDetails.push(d);
    }
  }

  const focusFirstInvalid = (keys: string[]) => {
    const first = COMMAND_FORMS[type].find((f) => keys.includes(f.key));
    focusById(first ? `cmd-${first.key}` : "composer-error");
  };

  const send = async (body: CommandBody, commandId: string) => {
    setPhase({ phase: "sending" });
    const r: ApiResult = await sendCommand(tenant, body, () => setPhase({ phase: "confirming" }));
    if (r.ok) {
      const id = typeof r.body.command_id === "string" ? r.body.command_id : commandId;
      if (type === "calendar.options.create" && typeof (body.params as { timezone?: unknown }).timezone === "string") {
        rememberZone(tenant, id, (body.params as { timezone: string }).timezone);
      }
      setPhase({ phase: "accepted", command_id: id });
      props.onAccepted(id);
      focusById("composer-status");
      return;
    }
    // Same command_id again is safe: it is the idempotency key.
    const retry =
      r.error.recoverable || isUnconfirmed(r) || r.status === 0 ? () => void send(body, commandId) : undefined;
    setPhase({ phase: "error", error: r.error, ...(retry ? { retry } : {}) });
    const keys = (r.error.details ?? []).map((d) => fieldForPath(type, d.path)).filter((k): k is string => k !== null);
    focusFirstInvalid(keys);
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const empty = missing(type, current);
    if (empty.length > 0) {
      setLocal(Object.fromEntries(empty.map((k) => [k, [t("composer.required")]])));
      setPhase({
        phase: "error",
        error: { code: "VALIDATION_FAILED", message: "", recoverable: false },
      });
      focusFirstInvalid(empty);
      return;
    }
    setLocal({});
    const command_id = uuid();
    void send(
      {
        command_id,
        type,
        params: buildParams(type, current),
        client_context: { surface: "console", correlation_id: correlationId() },
      },
      command_id,
    );
  };

  const busy = phase.phase === "sending" || phase.phase === "confirming";
  return (
    <section class="panel compose-panel" id="composer" aria-labelledby="composer-h" tabIndex={-1}>
      <h2 id="composer-h">{t("composer.title")}</h2>
      <form ref={form} onSubmit={submit} noValidate data-testid="composer-form">
        <div class="field">
          <label for="command-type">{t("composer.type")}</label>
          <select
            id="command-type"
            data-testid="command-type"
            value={type}
            onChange={(e) => {
              setType(e.currentTarget.value as CommandType);
              setPhase({ phase: "idle" });
              setLocal({});
            }}
          >
            {TYPES.map((c) => (
              <option key={c} value={c}>
                {typeLabel(c)}
                {risk(c) === "RED" ? ` — ${t("composer.needsApproval")}` : ""}
              </option>
            ))}
          </select>
        </div>
        <fieldset data-testid={`form-${type}`}>
          <legend class="sr-only">{typeLabel(type)}</legend>
          {COMMAND_FORMS[type].map((f) => (
            <Field
              key={`${type}:${f.key}`}
              def={f}
              value={current[f.key] ?? ""}
              error={fieldErrors[f.key]}
              onInput={(v) => setValue(f.key, v)}
            />
          ))}
        </fieldset>
        <div class="buttons">
          <button type="submit" class="primary" data-testid="submit-command" disabled={busy}>
            {busy ? t("composer.sending") : t("composer.submit")}
          </button>
        </div>
        <div class="composer-feedback" aria-live="polite">
          {phase.phase === "accepted" && (
            <p
              class="ok"
              id="composer-status"
              tabIndex={-1}
              data-testid="composer-status"
              data-command-id={phase.command_id}
            >
              {props.seen ? t("composer.onStream", { status: t(`status.${props.seen}`) }) : t("composer.accepted")}{" "}
              {props.seen && (
                <button type="button" class="link" onClick={() => props.onShow(phase.command_id)}>
                  {t("composer.show")}
                </button>
              )}
            </p>
          )}
          {busy && (
            <p class="muted" id="composer-status" tabIndex={-1} data-testid="composer-status">
              {phase.phase === "confirming" ? t("composer.confirming") : t("composer.sending")}
            </p>
          )}
        </div>
        {phase.phase === "error" && (
          <div
            class="error-box"
            id="composer-error"
            role="alert"
            tabIndex={-1}
            data-testid="composer-error"
            data-code={phase.error.code}
          >
            <p>
              {phase.error.code === "VALIDATION_FAILED"
                ? t("composer.fixFields")
                : phase.error.code === NETWORK_ERROR
                  ? t("errors.network")
                  : errorText(phase.error.code)}
            </p>
            {otherDetails.length > 0 && (
              <ul>
                {otherDetails.map((d) => (
                  <li key={`${d.path}:${d.issue}`}>
                    <code>{d.path}</code>: {d.issue}
                  </li>
                ))}
              </ul>
            )}
            {phase.error.code !== "VALIDATION_FAILED" && phase.error.code !== NETWORK_ERROR && (
              <p class="small">{t("errors.code", { code: phase.error.code })}</p>
            )}
            {phase.retry && (
              <button type="button" data-testid="composer-retry" onClick={phase.retry}>
                {t("composer.retry")}
              </button>
            )}
          </div>
        )}
      </form>
    </section>
  );
});
