/**
 * The language-model providers, each through its Vercel AI SDK package (which speaks the
 * vendor's wire format, including its streaming format):
 *
 * | name        | package                     | wire format                                                   |
 * | ----------- | --------------------------- | ------------------------------------------------------------- |
 * | `openai`    | `@ai-sdk/openai-compatible` | Chat Completions, SSE `data:` chunks ending in `data: [DONE]`  |
 * | `anthropic` | `@ai-sdk/anthropic`         | Messages, event stream `message_start` … `message_stop`        |
 * | `gemini`    | `@ai-sdk/google`            | `models/<m>:streamGenerateContent?alt=sse`                     |
 *
 * `openai` covers every OpenAI-compatible server: OpenAI, Azure OpenAI (with `apiVersion`),
 * vLLM, Ollama, llama.cpp server, LM Studio — point `baseUrl` at it.
 */
import { createAnthropic } from "@ai-sdk/anthropic";
import { createGoogleGenerativeAI } from "@ai-sdk/google";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import type { LanguageModel } from "ai";

/** The model providers (the offline provider is not one: it has no model). */
export const MODEL_PROVIDERS = ["openai", "anthropic", "gemini"] as const;
export type ModelProviderName = (typeof MODEL_PROVIDERS)[number];

/** Model used when `<PROVIDER>_MODEL` is not set. */
export const DEFAULT_MODELS: Record<ModelProviderName, string> = {
  openai: "gpt-4o-mini",
  anthropic: "claude-3-5-haiku-latest",
  gemini: "gemini-2.0-flash",
};

/** Base URL used when `<PROVIDER>_BASE_URL` is not set (the vendor's public API). */
export const DEFAULT_BASE_URLS: Record<ModelProviderName, string> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com/v1",
  gemini: "https://generativelanguage.googleapis.com/v1beta",
};

/** How to reach one provider. */
export interface ProviderSpec {
  name: ModelProviderName;
  model: string;
  /** Secret; never logged. Optional for OpenAI-compatible local servers. */
  apiKey?: string;
  baseUrl?: string;
  /** Azure OpenAI: the `api-version` query parameter; the key is then also sent as `api-key`. */
  apiVersion?: string;
}

/** A configured provider: its name, model id and the AI SDK model object. */
export interface ModelProvider {
  name: ModelProviderName;
  model: string;
  languageModel: LanguageModel;
}

/** Builds the AI SDK model for a provider spec (no I/O happens here). */
export function createModelProvider(spec: ProviderSpec): ModelProvider {
  const baseURL = (spec.baseUrl ?? DEFAULT_BASE_URLS[spec.name]).replace(/\/+$/, "");
  let languageModel: LanguageModel;
  switch (spec.name) {
    case "openai":
      languageModel = createOpenAICompatible({
        name: "openai",
        baseURL,
        ...(spec.apiKey ? { apiKey: spec.apiKey } : {}),
        includeUsage: true,
        ...(spec.apiVersion
          ? { queryParams: { "api-version": spec.apiVersion }, headers: spec.apiKey ? { "api-key": spec.apiKey } : {} }
          : {}),
      }).chatModel(spec.model);
      break;
    case "anthropic":
      languageModel = createAnthropic({ baseURL, apiKey: spec.apiKey ?? "" })(spec.model);
      break;
    case "gemini":
      languageModel = createGoogleGenerativeAI({ baseURL, apiKey: spec.apiKey ?? "" })(spec.model);
      break;
  }
  return { name: spec.name, model: spec.model, languageModel };
}
