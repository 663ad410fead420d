import { pino } from "pino";
import type { HandlerContext, LlmProvider } from "../handler.ts";
import { OfflineDraftProvider } from "../llm/offline-provider.ts";

/**
 * A {@link HandlerContext} for handler unit tests: silent logger, fixed clock
 * (2026-03-02T08:00:00Z), the offline drafting provider unless another is given, no-op progress.
 */
export function fakeContext(llm: LlmProvider = new OfflineDraftProvider()): HandlerContext {
  return {
    logger: pino({ enabled: false }),
    signal: new AbortController().signal,
    tenant: { org_id: "org-1", project_id: "project-1" },
    commandId: "cmd-1",
    correlationId: "c-001",
    now: () => new Date("2026-03-02T08:00:00Z"),
    llm,
    progress: async () => {},
  };
}
