import { COMMAND_TYPES } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { HANDLERS, handlerFor } from "./index.ts";

describe("handler registry", () => {
  it("has exactly one handler per command type of the contracts registry", () => {
    expect(HANDLERS.map((h) => h.type).sort()).toEqual(Object.keys(COMMAND_TYPES).sort());
    for (const type of Object.keys(COMMAND_TYPES)) expect(handlerFor(type)?.type).toBe(type);
    expect(handlerFor("nope.nope")).toBeUndefined();
  });
});
