import { pino } from "pino";
import type { ShareConnector } from "./connectors/share.ts";
import type { HandlerContext } from "./handler.ts";
import { type LlmClient, OFFLINE_LLM } from "./llm/client.ts";

/** A share connector for handler unit tests that records what it was asked to share. */
export function recordingShareConnector(): ShareConnector & { shared: unknown[] } {
  const shared: unknown[] = [];
  return {
    shared,
    async share(req) {
      shared.push(req);
      return {
        share_id: req.share_id,
        recipient: req.recipient,
        channel: req.channel,
        resource: req.resource,
        status: "queued",
      };
    },
  };
}

/**
 * A {@link HandlerContext} for handler unit tests: silent logger, fixed clock
 * (2026-03-02T08:00:00Z), no model providers (the offline paths) unless a client is given,
 * empty profile and persona, a recording share connector, no-op progress and warnings.
 */
export function fakeContext(llm: LlmClient = OFFLINE_LLM, extra: Partial<HandlerContext> = {}): HandlerContext {
  return {
    logger: pino({ enabled: false }),
    signal: new AbortController().signal,
    tenant: { org_id: "org-1", project_id: "project-1" },
    commandId: "cmd-1",
    correlationId: "c-001",
    now: () => new Date("2026-03-02T08:00:00Z"),
    llm,
    profile: {},
    persona: {},
    connectors: { share: recordingShareConnector() },
    progress: async () => {},
    live: () => {},
    budgetWarning: async () => {},
    ...extra,
  };
}
