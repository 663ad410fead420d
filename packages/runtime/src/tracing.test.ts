import { describe, expect, it } from "vitest";
import { tracingEnabled } from "./tracing.ts";

describe("tracingEnabled (OTEL_* variables; off by default)", () => {
  it("is off without an exporter or an endpoint, and when disabled or `none`", () => {
    expect(tracingEnabled({})).toBe(false);
    expect(tracingEnabled({ OTEL_SERVICE_NAME: "gateway" })).toBe(false);
    expect(tracingEnabled({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })).toBe(false);
    expect(tracingEnabled({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" })).toBe(false);
  });
  it("is on with an OTLP endpoint or a named exporter", () => {
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracingEnabled({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingEnabled({ OTEL_TRACES_EXPORTER: "zipkin", OTEL_SDK_DISABLED: "false" })).toBe(true);
  });
});
