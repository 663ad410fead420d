import { CommandAccepted, normaliseCommandRequest, zodDetails } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import { type App, bindRequestLog } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { BODY_ERRORS, errorResponses, TENANT_SECURITY, WRITE_ERRORS } from "../openapi.ts";
import { acceptCommand, validateCommand } from "../write/accept-command.ts";

/**
 * The body as Fastify checks it: any JSON object. The dialects (canonical and legacy) and each
 * type's params are checked in the handler, so every failure gets its precise code
 * (`UNKNOWN_COMMAND_TYPE` vs `VALIDATION_FAILED` with `params.*` paths).
 */
const CommandBody = z
  .looseObject({})
  .describe(
    "A command in the canonical dialect ({command_id?, type, context?, params, client_context?}) or the legacy one ({command_type, params, correlation_id?})",
  );

function correlationOf(body: Record<string, unknown>): string | undefined {
  const cc = body.client_context;
  const fromCc = cc && typeof cc === "object" ? (cc as { correlation_id?: unknown }).correlation_id : undefined;
  const c = fromCc ?? body.correlation_id;
  return typeof c === "string" ? c : undefined;
}

/** `POST /sidecar/command` (docs/contract.md, LOCKED): both dialects, 202 after the PubAck. */
export function commandRoutes(app: App, deps: GatewayDeps): void {
  app.post(
    "/sidecar/command",
    {
      config: { tenant: true, roles: ["operator"] },
      schema: {
        tags: ["commands"],
        operationId: "sendCommand",
        summary: "Submit a command; answers 202 once it is durably accepted",
        description:
          "Needs the operator role. Publishes the command to JetStream with an expected last subject sequence of 0: the publish is the idempotency check. 400 UNKNOWN_COMMAND_TYPE or VALIDATION_FAILED (with `params.*` details) for bad input; 409 IDEMPOTENCY_CONFLICT when the command_id names another body.",
        security: TENANT_SECURITY,
        body: CommandBody,
        response: { 202: CommandAccepted, ...errorResponses(...BODY_ERRORS, 409, ...WRITE_ERRORS) },
      },
    },
    async (req, reply) => {
      const corr = correlationOf(req.body);
      if (corr) req.correlationId = corr;
      const n = normaliseCommandRequest(req.body);
      if (!n.ok) throw new AppError("VALIDATION_FAILED", undefined, zodDetails(n.error), { stage: "validate" });
      const cmd = validateCommand(n.command);
      req.correlationId = cmd.correlation_id;
      bindRequestLog(req, { correlation_id: cmd.correlation_id, command_id: cmd.command_id });
      const accepted = await acceptCommand(deps, req.tenant, req.principal, cmd, req.traceparent);
      return reply.code(202).send(accepted);
    },
  );
}
