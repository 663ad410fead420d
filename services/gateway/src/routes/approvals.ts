import { AskId, DecideRequest, DecisionAccepted, ErrorBody } from "@nexus/contracts";
import { AppError } from "@nexus/platform";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { decide } from "../decide.ts";
import type { GatewayDeps } from "../deps.ts";

/** `POST /approvals/{ask_id}/decide` (CONTRACT.md, LOCKED). */
export function approvalRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post(
    "/approvals/:ask_id/decide",
    {
      config: { tenant: true },
      schema: {
        tags: ["approvals"],
        summary: "Approve or reject an ask; answers 202, confirmed by ask.* reports",
        params: z.object({ ask_id: z.string() }),
        body: DecideRequest,
        response: { 202: DecisionAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const { ask_id } = req.params as { ask_id: string };
      const body = req.body as DecideRequest;
      if (body.correlation_id) req.correlationId = body.correlation_id;
      // An id that could never exist is simply not found (no hint about the id format).
      if (!AskId.safeParse(ask_id).success) throw new AppError("ASK_NOT_FOUND");
      const accepted = await decide(deps, req.tenant, req.principal, ask_id, body);
      return reply.code(202).send(accepted);
    },
  );
}
