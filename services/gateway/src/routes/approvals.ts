import { AskId, DecideRequest, DecisionAccepted, ErrorBody } from "@nexus/contracts";
import { AppError } from "@nexus/core";
import { type App, bindRequestLog } from "@nexus/http";
import { z } from "zod";
import type { GatewayDeps } from "../deps.ts";
import { decide } from "../write/decide.ts";

/** `POST /approvals/{ask_id}/decide` (CONTRACT.md, LOCKED). */
export function approvalRoutes(app: App, deps: GatewayDeps): void {
  app.post(
    "/approvals/:ask_id/decide",
    {
      config: { tenant: true, roles: ["approver"] },
      schema: {
        tags: ["approvals"],
        summary: "Approve or reject an ask; answers 202, confirmed by ask.* reports",
        params: z.object({ ask_id: z.string() }),
        body: DecideRequest,
        response: {
          202: DecisionAccepted,
          400: ErrorBody,
          403: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
          503: ErrorBody,
          504: ErrorBody,
        },
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
