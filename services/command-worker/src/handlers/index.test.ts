import { COMMAND_TYPES } from "@nexus/contracts";
import { describe, expect, it } from "vitest";
import { greenHandlers } from "./index.ts";

describe("greenHandlers", () => {
  it("lists one handler per GREEN command type, matching the registry", () => {
    const green = Object.values(COMMAND_TYPES).filter((spec) => spec.risk === "GREEN");
    expect(greenHandlers.map((h) => h.type).sort()).toEqual(green.map((spec) => spec.type).sort());
    for (const handler of greenHandlers) {
      expect(handler.risk).toBe("GREEN");
      expect(handler.params).toBe(COMMAND_TYPES[handler.type].params);
    }
  });
});
