/**
 * The registry: every scenario of `pnpm bench`, in the order its sections are printed. A new
 * scenario (archiver throughput, replay from the archive, …) is a module beside these, added here.
 */
import type { RegisteredScenario } from "../scenario.ts";
import { acceptScenario } from "./accept.ts";
import { archiveScenario } from "./archive.ts";
import { e2eScenario } from "./e2e.ts";
import { maxScenario } from "./max.ts";

export const SCENARIOS: readonly RegisteredScenario[] = [acceptScenario, e2eScenario, maxScenario, archiveScenario];
