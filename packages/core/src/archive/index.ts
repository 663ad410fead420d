/** The report archive (docs/archive.md): chain rules, appending, reads, retention and purge. */
export * from "./append.ts";
export * from "./chain.ts";
export * from "./maintain.ts";
export * from "./read.ts";
