import { AskId, DecideRequest, DecisionAccepted } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import { type App, bindRequestLog } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { BODY_ERRORS, errorResponses, TENANT_SECURITY, WRITE_ERRORS } from "../openapi.ts";
import { decide } from "../write/decide.ts";

/** `POST /approvals/{ask_id}/decide` (docs/contract.md, LOCKED). */
export function approvalRoutes(app: App, deps: GatewayDeps): void {
  app.post(
    "/approvals/:ask_id/decide",
    {
      config: { tenant: true, roles: ["approver"] },
      schema: {
        tags: ["approvals"],
        operationId: "decideAsk",
        summary: "Approve or reject an ask; answers 202, confirmed by ask.* reports",
        description:
          "Needs the approver role. The same decision again answers 202 and runs once. 404 ASK_NOT_FOUND (also another tenant's ask); 409 ASK_ALREADY_DECIDED, ASK_EXPIRED or ACTION_CHANGED; 403 SELF_APPROVAL_FORBIDDEN when the requester of the RED command approves it and the tenant does not allow that.",
        security: TENANT_SECURITY,
        params: z.object({ ask_id: z.string().describe("The ask_id of an `ask.created` report") }),
        body: DecideRequest,
        response: { 202: DecisionAccepted, ...errorResponses(...BODY_ERRORS, 404, 409, ...WRITE_ERRORS) },
      },
    },
    async (req, reply) => {
      const { ask_id } = req.params;
      if (req.body.correlation_id) req.correlationId = req.body.correlation_id;
      // An id that could never exist is simply not found (no hint about the id format).
      if (!AskId.safeParse(ask_id).success) throw new AppError("ASK_NOT_FOUND");
      bindRequestLog(req, { ask_id, correlation_id: req.correlationId });
      const accepted = await decide(deps, req.tenant, req.principal, ask_id, req.body, req.traceparent);
      return reply.code(202).send(accepted);
    },
  );
}
