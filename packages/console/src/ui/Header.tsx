import { type Autopilot, isTenantToken, type Tenant } from "@nexus/contracts";
import { useEffect, useState } from "preact/hooks";
import type { ConnState } from "../state.ts";

const CONN_LABEL: Record<ConnState, string> = {
  connecting: "Connecting to the report stream",
  live: "Live: receiving reports",
  reconnecting: "Connection lost: reconnecting and resuming from the last report",
  resynced: "Resynced: the cursor had expired, state reloaded from a fresh snapshot",
};

/** Page header: title, tenant selector, connection badge and autopilot status. */
export function Header(props: {
  tenant: Tenant;
  onSwitch(t: Tenant): void;
  connState: ConnState;
  autopilot: Autopilot | null;
}) {
  const { tenant, connState, autopilot } = props;
  const [org, setOrg] = useState(tenant.org_id);
  const [project, setProject] = useState(tenant.project_id);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setOrg(tenant.org_id);
    setProject(tenant.project_id);
  }, [tenant]);

  const submit = (e: Event) => {
    e.preventDefault();
    const o = org.trim();
    const p = project.trim();
    if (!isTenantToken(o) || !isTenantToken(p)) {
      setError("Organisation and project must be 1–64 characters of letters, digits, _ or -.");
      return;
    }
    setError(null);
    props.onSwitch({ org_id: o, project_id: p });
  };

  const apStatus = autopilot?.status ?? "unknown";
  return (
    <header class="topbar">
      <div class="brand">
        <h1>NEXUS Console</h1>
        <p class="muted small">
          Tenant <strong data-testid="tenant-current">{`${tenant.org_id}/${tenant.project_id}`}</strong>
        </p>
      </div>
      <form class="tenant" onSubmit={submit} aria-label="Tenant" data-testid="tenant-form">
        <div class="field inline">
          <label for="tenant-org">Organisation</label>
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
        <div class="field inline">
          <label for="tenant-project">Project</label>
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
        <button type="submit" data-testid="tenant-switch">
          Switch
        </button>
        {error && (
          <p id="tenant-error" class="error small" role="alert" data-testid="tenant-error">
            {error}
          </p>
        )}
      </form>
      <div class="status-pills">
        <div class="pill" title={CONN_LABEL[connState]}>
          <span class="pill-label">Connection</span>
          <span class={`badge conn conn-${connState}`} data-testid="conn-state" data-state={connState}>
            {connState}
          </span>
        </div>
        <div class="pill">
          <span class="pill-label">Autopilot</span>
          <span
            class={`badge ap ap-${apStatus}`}
            data-testid="autopilot"
            data-status={apStatus}
            data-in-flight={autopilot ? String(autopilot.in_flight) : undefined}
          >
            {autopilot ? `${autopilot.status} · ${autopilot.in_flight} in flight` : "unknown"}
          </span>
        </div>
      </div>
    </header>
  );
}
