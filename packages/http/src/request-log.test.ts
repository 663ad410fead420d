import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { RequestLogger } from "./request-log.ts";

/** A pino logger writing JSON lines into `lines`, with `child()` calls counted. */
function capture(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const logger = pino({ level }, dest);
  let children = 0;
  const original = logger.child;
  // pino's children inherit from their parent, so this counts children of children too.
  logger.child = function (this: pino.Logger, b: pino.Bindings, o?: pino.ChildLoggerOptions) {
    children++;
    return Reflect.apply(original, this, [b, o]) as pino.Logger;
  } as unknown as typeof logger.child;
  return { logger, lines, children: () => children };
}

describe("RequestLogger", () => {
  it("writes the access line with every bound field and creates no child logger", () => {
    const c = capture();
    const log = new RequestLogger(c.logger, { reqId: "r1" });
    log.bind({ trace_id: "t1" });
    log.bind({ org_id: "acme", project_id: undefined });
    log.bind({ trace_id: "other" }); // already bound: the first value stays
    log.infoWith({ status: 202 }, "http");
    expect(c.children()).toBe(0);
    expect(c.lines).toHaveLength(1);
    expect(c.lines[0]).toMatchObject({ reqId: "r1", trace_id: "t1", org_id: "acme", status: 202, msg: "http" });
    expect(c.lines[0]).not.toHaveProperty("project_id");
  });

  it("creates one child on the first line of its own; later bindings go to that child", () => {
    const c = capture();
    const log = new RequestLogger(c.logger, { reqId: "r2" });
    log.bind({ trace_id: "t2" });
    log.warn({ x: 1 }, "first");
    log.info("second");
    expect(c.children()).toBe(1);
    log.bind({ command_id: "cmd_1" });
    log.infoWith({ status: 500 }, "http");
    expect(c.lines.map((l) => l.msg)).toEqual(["first", "second", "http"]);
    for (const l of c.lines) expect(l).toMatchObject({ reqId: "r2", trace_id: "t2" });
    expect(c.lines[2]).toMatchObject({ command_id: "cmd_1", status: 500 });
    expect(c.children()).toBe(2);
  });

  it("a disabled level neither writes nor creates a child", () => {
    const c = capture("info");
    const log = new RequestLogger(c.logger, { reqId: "r3" });
    log.debug({ big: "x" }, "hidden");
    expect(c.children()).toBe(0);
    expect(c.lines).toHaveLength(0);
    expect(log.level).toBe("info");
  });
});
