import { AnyCommandRequest, CommandAccepted, ErrorBody, normaliseCommandRequest, zodDetails } from "@nexus/contracts";
import { AppError } from "@nexus/platform";
import type { FastifyInstance } from "fastify";
import { acceptCommand, validateCommand } from "../accept-command.ts";
import type { GatewayDeps } from "../deps.ts";

/** `POST /sidecar/command` (CONTRACT.md, LOCKED): both dialects, 202 after the PubAck. */
export function commandRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post(
    "/sidecar/command",
    {
      config: { tenant: true },
      schema: {
        tags: ["commands"],
        summary: "Submit a command; answers 202 once it is durably accepted",
        body: AnyCommandRequest,
        response: { 202: CommandAccepted, 400: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
      // The body is validated in the handler so that each failure gets its precise code
      // (UNKNOWN_COMMAND_TYPE vs VALIDATION_FAILED with params.* paths); the schema documents it.
      validatorCompiler: () => (data) => ({ value: data }),
    },
    async (req, reply) => {
      const body = req.body as Record<string, unknown> | null;
      const corr =
        body && typeof body === "object"
          ? ((body.client_context as { correlation_id?: unknown } | undefined)?.correlation_id ?? body.correlation_id)
          : undefined;
      if (typeof corr === "string") req.correlationId = corr;
      if (!body || typeof body !== "object" || Array.isArray(body))
        throw new AppError("VALIDATION_FAILED", "The body must be a JSON object", [
          { path: "", issue: "Expected object" },
        ]);
      const n = normaliseCommandRequest(body);
      if (!n.ok) throw new AppError("VALIDATION_FAILED", undefined, zodDetails(n.error));
      const cmd = validateCommand(n.command);
      req.correlationId = cmd.correlation_id;
      const accepted = await acceptCommand(deps, req.tenant, req.principal, cmd);
      return reply.code(202).send(accepted);
    },
  );
}
