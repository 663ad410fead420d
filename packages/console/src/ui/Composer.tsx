import { type ApiError, COMMAND_TYPES, type CommandType, type Snapshot, type Tenant } from "@nexus/contracts";
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { sendJson } from "../api.ts";
import {
  buildParams,
  COMMAND_FORMS,
  defaultValues,
  type FieldDef,
  type FormValues,
  fieldForPath,
} from "../commandForms.ts";
import { correlationId, uuid } from "../format.ts";
import { findWork } from "../state.ts";

type Phase =
  | { phase: "idle" }
  | { phase: "sending" }
  | { phase: "accepted"; command_id: string; correlation_id: string }
  | { phase: "error"; error: ApiError };

const TYPES = Object.keys(COMMAND_TYPES) as CommandType[];

function Field(props: { def: FieldDef; value: string; error: string[] | undefined; onInput(v: string): void }) {
  const { def: f, value, error } = props;
  const id = `cmd-${f.key}`;
  const describedBy = [f.hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
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
      control = <textarea {...common} rows={f.kind === "lines" ? 3 : 5} />;
      break;
    case "select":
      control = (
        <select {...common} onChange={common.onInput}>
          {(f.options ?? []).map((o) => (
            <option key={o} value={o}>
              {o === "" ? "(default)" : o}
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
  return (
    <div class="field">
      <label for={id}>
        {f.label}
        {f.required && (
          <span class="req" aria-hidden="true">
            {" "}
            *
          </span>
        )}
      </label>
      {control}
      {f.hint && (
        <p class="hint" id={`${id}-hint`}>
          {f.hint}
        </p>
      )}
      {error && (
        <p class="field-error" id={`${id}-error`} data-testid={`field-error-${f.key}`}>
          {error.join("; ")}
        </p>
      )}
    </div>
  );
}

/**
 * The command composer: one form per command type. Submitting POSTs `/sidecar/command`; a
 * 202 only says "accepted" — the worklog changes when the stream reports the command.
 */
export function Composer(props: { tenant: Tenant; snapshot: Snapshot | null; timezone: string }) {
  const { tenant, snapshot, timezone } = props;
  const [type, setType] = useState<CommandType>("draft_email.create");
  const [values, setValues] = useState<Partial<Record<CommandType, FormValues>>>({});
  const [phase, setPhase] = useState<Phase>({ phase: "idle" });

  const current: FormValues = { ...defaultValues(type, timezone), ...(values[type] ?? {}) };
  const setValue = (key: string, v: string) =>
    setValues((all) => ({ ...all, [type]: { ...(all[type] ?? {}), [key]: v } }));

  // Validation details from the server, placed at their fields; the rest stay in the summary.
  const fieldErrors: Record<string, string[]> = {};
  const otherDetails: { path: string; issue: string }[] = [];
  if (phase.phase === "error") {
    for (const d of phase.error.details ?? []) {
      const key = fieldForPath(type, d.path);
      if (key) {
        fieldErrors[key] = [...(fieldErrors[key] ?? []), d.issue];
      } else otherDetails.push(d);
    }
  }

  const submit = async (e: Event) => {
    e.preventDefault();
    const command_id = uuid();
    const correlation_id = correlationId();
    setPhase({ phase: "sending" });
    const r = await sendJson(tenant, "POST", "/sidecar/command", {
      command_id,
      type,
      params: buildParams(type, current),
      client_context: { surface: "console", correlation_id },
    });
    if (r.ok) {
      const id = typeof r.body.command_id === "string" ? r.body.command_id : command_id;
      setPhase({ phase: "accepted", command_id: id, correlation_id });
    } else setPhase({ phase: "error", error: r.error });
  };

  const seen = phase.phase === "accepted" ? findWork(snapshot, phase.command_id) : undefined;
  return (
    <section class="panel col-compose" id="composer" aria-labelledby="composer-h">
      <h2 id="composer-h">New command</h2>
      <form onSubmit={submit} noValidate data-testid="composer-form">
        <div class="field">
          <label for="command-type">Command type</label>
          <select
            id="command-type"
            data-testid="command-type"
            value={type}
            onChange={(e) => {
              setType(e.currentTarget.value as CommandType);
              setPhase({ phase: "idle" });
            }}
          >
            {TYPES.map((t) => (
              <option key={t} value={t}>
                {t} — {COMMAND_TYPES[t].title}
                {COMMAND_TYPES[t].risk === "RED" ? " (needs approval)" : ""}
              </option>
            ))}
          </select>
        </div>
        <fieldset data-testid={`form-${type}`}>
          <legend>{COMMAND_TYPES[type].title}</legend>
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
          <button type="submit" class="primary" data-testid="submit-command" disabled={phase.phase === "sending"}>
            {phase.phase === "sending" ? "Sending…" : "Submit"}
          </button>
        </div>
        <div aria-live="polite" class="composer-feedback">
          {phase.phase === "accepted" && (
            <p class="ok" data-testid="composer-status" data-command-id={phase.command_id}>
              {seen ? `accepted — on the stream: ${seen.status}` : "accepted — waiting for the stream"}
              <span class="muted small"> · command {phase.command_id.slice(0, 8)}</span>
            </p>
          )}
          {phase.phase === "sending" && (
            <p class="muted" data-testid="composer-status">
              sending…
            </p>
          )}
        </div>
        {phase.phase === "error" && (
          <div class="error-box" role="alert" data-testid="composer-error" data-code={phase.error.code}>
            <p>
              <strong>{phase.error.code}</strong>: {phase.error.message}
            </p>
            {(phase.error.details ?? []).length > 0 && (
              <ul>
                {(phase.error.details ?? []).map((d) => (
                  <li key={`${d.path}:${d.issue}`}>
                    <code>{d.path}</code>: {d.issue}
                  </li>
                ))}
              </ul>
            )}
            {otherDetails.length > 0 && <p class="small">Some problems are not tied to a field above.</p>}
          </div>
        )}
      </form>
    </section>
  );
}
