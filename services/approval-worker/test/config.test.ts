import { ConfigError, parseConfig } from "@nexus/platform";
import { describe, expect, test } from "vitest";
import { ApprovalWorkerConfig, workerOptionsFromConfig } from "../src/config.ts";

describe("configuration", () => {
  test("defaults: port 8083, 5 retries, 1 s sweep, no webhook relay", () => {
    const c = parseConfig(ApprovalWorkerConfig, {});
    expect(c).toMatchObject({
      PORT: 8083,
      MAX_RETRIES: 5,
      RETRY_BASE_MS: 500,
      RETRY_MAX_MS: 30_000,
      EXPIRY_SWEEP_MS: 1000,
      WEBHOOK_MAX_ATTEMPTS: 8,
      WEBHOOK_TIMEOUT_MS: 5000,
      WEBHOOK_POLL_MS: 500,
    });
    expect(workerOptionsFromConfig(c).webhook).toBeUndefined();
  });

  test("SHARE_WEBHOOK_URL without SHARE_WEBHOOK_SECRET is refused", () => {
    expect(() => parseConfig(ApprovalWorkerConfig, { SHARE_WEBHOOK_URL: "http://127.0.0.1:9/x" })).toThrow(ConfigError);
    const c = parseConfig(ApprovalWorkerConfig, {
      SHARE_WEBHOOK_URL: "http://127.0.0.1:9/x",
      SHARE_WEBHOOK_SECRET: "0123456789abcdef",
    });
    expect(workerOptionsFromConfig(c).webhook).toMatchObject({ url: "http://127.0.0.1:9/x", maxAttempts: 8 });
  });
});
