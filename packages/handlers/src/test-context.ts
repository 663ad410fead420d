import { pino } from "pino";
import type { ShareConnector } from "./connectors/share.ts";
import type { HandlerContext, LlmProvider } from "./handler.ts";
import { OfflineDraftProvider } from "./llm/offline-provider.ts";

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
 * (2026-03-02T08:00:00Z), the offline drafting provider unless another is given, a recording
 * share connector, no-op progress.
 */
export function fakeContext(
  llm: LlmProvider = new OfflineDraftProvider(),
  extra: Partial<HandlerContext> = {},
): HandlerContext {
  return {
    logger: pino({ enabled: false }),
    signal: new AbortController().signal,
    tenant: { org_id: "org-1", project_id: "project-1" },
    commandId: "cmd-1",
    correlationId: "c-001",
    now: () => new Date("2026-03-02T08:00:00Z"),
    llm,
    connectors: { share: recordingShareConnector() },
    progress: async () => {},
    ...extra,
  };
}
