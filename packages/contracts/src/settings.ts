import { z } from "zod";
import { RiskLevel, TimeZone } from "./commands.ts";

const HexColor = z.string().regex(/^#[0-9a-fA-F]{6}$/, "must be a #rrggbb colour");

/** `PATCH /profile` body. */
export const ProfilePatch = z
  .object({
    display_name: z.string().min(1).max(100).optional(),
    locale: z
      .string()
      .regex(/^[a-z]{2}(-[A-Z]{2})?$/, "must be a locale such as en or de-DE")
      .optional(),
    timezone: TimeZone.optional(),
  })
  .strict();
export type ProfilePatch = z.infer<typeof ProfilePatch>;

/** `PATCH /assistant/persona` body. */
export const PersonaPatch = z
  .object({
    name: z.string().min(1).max(60).optional(),
    tone: z.enum(["neutral", "friendly", "formal", "firm", "apologetic"]).optional(),
    instructions: z.string().max(4000).optional(),
  })
  .strict();
export type PersonaPatch = z.infer<typeof PersonaPatch>;

/** `PATCH /assistant/skin` body. */
export const SkinPatch = z
  .object({ theme: z.enum(["light", "dark", "system"]).optional(), accent_color: HexColor.optional() })
  .strict();
export type SkinPatch = z.infer<typeof SkinPatch>;

/** Ask time-to-live bounds in seconds: one minute to thirty days. */
export const ASK_TTL_SECONDS_MIN = 60;
export const ASK_TTL_SECONDS_MAX = 30 * 24 * 3600;

/** `PATCH /compliance/settings` body. `risk_overrides` maps a command type to a level. */
export const CompliancePatch = z
  .object({
    risk_overrides: z.record(z.string(), RiskLevel).optional(),
    ask_ttl_seconds: z.number().int().min(ASK_TTL_SECONDS_MIN).max(ASK_TTL_SECONDS_MAX).nullable().optional(),
    /** Distinct approvers needed per command type (default 1; at most 10). */
    approvals_required: z.record(z.string(), z.number().int().min(1).max(10)).optional(),
    /** Whether the requester of a RED command may approve it (default false). */
    allow_self_approval: z.boolean().optional(),
  })
  .strict();
export type CompliancePatch = z.infer<typeof CompliancePatch>;

/** Profile photo metadata; the bytes are served at `url`. */
export const PhotoInfo = z.object({
  url: z.string(),
  content_type: z.enum(["image/png", "image/jpeg", "image/webp"]),
  bytes: z.number().int(),
  sha256: z.string(),
});
export type PhotoInfo = z.infer<typeof PhotoInfo>;

/** The stored state of each settings section (what `settings.updated` carries as `values`). */
export const Profile = z.object({
  display_name: z.string().optional(),
  locale: z.string().optional(),
  timezone: z.string().optional(),
  photo: PhotoInfo.optional(),
});
export type Profile = z.infer<typeof Profile>;
export const Persona = PersonaPatch.partial();
export type Persona = z.infer<typeof Persona>;
export const Skin = SkinPatch.partial();
export type Skin = z.infer<typeof Skin>;
export const Compliance = z.object({
  risk_overrides: z.record(z.string(), RiskLevel).default({}),
  ask_ttl_seconds: z.number().int().nullable().optional(),
  approvals_required: z.record(z.string(), z.number().int()).optional(),
  allow_self_approval: z.boolean().optional(),
  policy_version: z.number().int().default(0),
});
export type Compliance = z.infer<typeof Compliance>;

/** Settings sections as named in `settings.updated` reports. */
export const SettingsSection = z.enum(["profile", "persona", "skin", "compliance"]);
export type SettingsSection = z.infer<typeof SettingsSection>;

/** The `202` body of every settings endpoint. */
export const SettingsAccepted = z.object({
  accepted: z.literal(true),
  correlation_id: z.string(),
  first_followup_report_id: z.string().optional(),
});
export type SettingsAccepted = z.infer<typeof SettingsAccepted>;
