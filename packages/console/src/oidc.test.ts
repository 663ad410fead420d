import { describe, expect, it } from "vitest";
import { decodeJwtPayload, identityOf } from "./oidc.ts";

/** An unsigned JWT-shaped string with `payload` (the console never verifies; the gateway does). */
function jwt(payload: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  return `${b64({ alg: "RS256" })}.${b64(payload)}.sig`;
}

describe("identityOf", () => {
  it("reads principal, known roles (dotted claim, array or string), tenant and expiry as the gateway does", () => {
    const token = jwt({
      sub: "민지",
      org_id: "acme",
      project_id: "nexus",
      exp: 1_900_000_000,
      realm_access: { roles: ["approver", "offline_access", "viewer", "approver"] },
    });
    expect(identityOf(token, "realm_access.roles", { name: "Kim Min-ji" })).toEqual({
      principal: "민지",
      roles: ["approver", "viewer"],
      tenant: { org_id: "acme", project_id: "nexus" },
      name: "Kim Min-ji",
      expiresAt: 1_900_000_000_000,
    });
    expect(identityOf(jwt({ sub: "a", roles: "operator admin,bogus" }), "roles")?.roles).toEqual(["operator", "admin"]);
  });

  it("no tenant when the claims are missing or not tenant tokens; null without sub or for garbage", () => {
    expect(identityOf(jwt({ sub: "a", org_id: "a.b", project_id: "x" }), "roles")?.tenant).toBeNull();
    expect(identityOf(jwt({ org_id: "a", project_id: "b" }), "roles")).toBeNull();
    expect(identityOf("not-a-jwt", "roles")).toBeNull();
    expect(decodeJwtPayload("a.!!!.c")).toBeNull();
  });
});
