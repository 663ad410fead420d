import { describe, expect, it } from "vitest";
import { accentVars, contrastRatio, DEFAULT_ACCENT, relativeLuminance } from "./contrast.ts";
import { errorText, formatLocale, langOf, loadLang, pickLang, setLang, t, typeLabel } from "./i18n.ts";
import { en } from "./locales/en.ts";
import { ko } from "./locales/ko.ts";
import { permissions } from "./roles.ts";
import { recentTenants, rememberTenant } from "./tenant.ts";
import { readError } from "./wire.ts";

function keys(o: object, prefix = ""): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === "object" && v !== null ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

describe("i18n", () => {
  it("Korean has every English message and no other", () => {
    expect(keys(ko).sort()).toEqual(keys(en).sort());
  });

  it("picks the language from the profile, else the browser, else English", () => {
    expect(pickLang("ko-KR", ["en-GB"])).toBe("ko");
    expect(pickLang(undefined, ["de-DE", "ko"])).toBe("ko");
    expect(pickLang("fr", ["de"])).toBe("en");
    expect(langOf("KO_kr")).toBe("ko");
    expect(formatLocale("ko", "en-GB", ["ko-KR"])).toBe("ko-KR");
    expect(formatLocale("en", "en-GB", ["ko-KR"])).toBe("en-GB");
  });

  it("labels types, statuses and errors in both languages, with plurals and placeholders", async () => {
    await loadLang("ko");
    setLang("en");
    expect(typeLabel("draft_email.create")).toBe("Draft email");
    expect(typeLabel("weird.type")).toBe("weird.type");
    expect(t("status.cancelled")).toBe("Cancelled");
    expect(t("worklog.count", { n: 1 })).toBe("1 entry");
    expect(t("asks.expiresIn", { left: "3m" })).toBe("Expires in 3m");
    expect(errorText("DEPENDENCY_UNAVAILABLE")).toMatch(/nothing was saved/);
    expect(errorText("SOMETHING_NEW")).toBe(en.errors.generic);
    setLang("ko");
    expect(typeLabel("draft_email.create")).toBe("이메일 초안");
    expect(t("asks.expiresIn", { left: "3분" })).toBe("3분 후 만료");
    expect(t("worklog.count", { n: 3 })).toBe("3건");
    setLang("en");
  });
});

describe("contrast", () => {
  it("computes WCAG luminance and ratios", () => {
    expect(relativeLuminance("#000000")).toBe(0);
    expect(relativeLuminance("#ffffff")).toBe(1);
    expect(contrastRatio("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrastRatio("#facc15", "#ffffff")).toBeCloseTo(1.53, 1);
  });

  it("uses the accent only where it is readable", () => {
    const yellow = accentVars("#facc15");
    expect(yellow["--accent-light"]).toBe(DEFAULT_ACCENT); // 1.5:1 on white
    expect(yellow["--accent-dark"]).toBe("#facc15"); // readable on the dark surface
    expect(yellow["--accent-fill"]).toBe("#facc15");
    expect(yellow["--accent-on"]).toBe("#111318"); // dark text on the yellow button
    const teal = accentVars("#0e7490");
    expect(teal["--accent-light"]).toBe("#0e7490");
    expect(teal["--accent-on"]).toBe("#ffffff");
    const grey = accentVars("#777777"); // 4.48:1 on white, 3.9:1 on dark: neither
    expect(grey["--accent-light"]).toBe(DEFAULT_ACCENT);
    expect(accentVars("red")["--accent-fill"]).toBe(DEFAULT_ACCENT);
    for (const v of [yellow, teal, grey])
      expect(contrastRatio(v["--accent-fill"], v["--accent-on"])).toBeGreaterThanOrEqual(4.5);
  });
});

describe("roles", () => {
  it("shows everything without a principal and by role with one", () => {
    expect(permissions(null)).toEqual({ decide: true, operate: true, administer: true });
    expect(permissions({ id: "v", roles: ["viewer"] })).toEqual({ decide: false, operate: false, administer: false });
    expect(permissions({ id: "a", roles: ["approver"] })).toEqual({ decide: true, operate: false, administer: false });
    expect(permissions({ id: "o", roles: ["operator"] })).toEqual({ decide: false, operate: true, administer: false });
    expect(permissions({ id: "x", roles: ["admin"] })).toEqual({ decide: true, operate: true, administer: true });
  });
});

describe("wire", () => {
  it("reads any UPPER_SNAKE error code", () => {
    expect(readError({ code: "ACCEPT_UNCONFIRMED", message: "m", recoverable: true })).toEqual({
      code: "ACCEPT_UNCONFIRMED",
      message: "m",
      recoverable: true,
    });
    expect(readError({ code: "lower" })).toBeNull();
  });
});

describe("tenant", () => {
  it("remembers recent tenants, most recent first, without duplicates", () => {
    const m = new Map<string, string>();
    const store = { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) };
    rememberTenant({ org_id: "a", project_id: "1" }, store);
    rememberTenant({ org_id: "b", project_id: "2" }, store);
    rememberTenant({ org_id: "a", project_id: "1" }, store);
    expect(recentTenants(store)).toEqual([
      { org_id: "a", project_id: "1" },
      { org_id: "b", project_id: "2" },
    ]);
  });
});
