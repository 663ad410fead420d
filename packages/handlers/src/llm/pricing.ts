import { z } from "zod";

/** Price of one model in USD per million tokens, input and output. */
export const ModelPrice = z.object({
  input_per_mtok: z.number().min(0),
  output_per_mtok: z.number().min(0),
});
export type ModelPrice = z.infer<typeof ModelPrice>;

/**
 * A price table: keys are `<provider>:<model>`, `<model>`, a model prefix (`claude-3-5-haiku`
 * matches `claude-3-5-haiku-20241022`), `<provider>:*`, or `*` (everything else).
 */
export const PriceTable = z.record(z.string().min(1), ModelPrice);
export type PriceTable = z.infer<typeof PriceTable>;

/**
 * Default prices, USD per million tokens. **Estimates** from the vendors' public list prices
 * (standard tier, no caching or batch discounts) at the time of writing; set `LLM_PRICES` to
 * your contract's prices. `*` is a deliberately non-zero fallback so that an unknown paid model
 * still counts against the budget; local servers (vLLM, Ollama, llama.cpp) should set
 * `{"openai:*": {"input_per_mtok": 0, "output_per_mtok": 0}}` or their model's entry.
 */
export const DEFAULT_PRICES: PriceTable = {
  "gpt-4o-mini": { input_per_mtok: 0.15, output_per_mtok: 0.6 },
  "gpt-4o": { input_per_mtok: 2.5, output_per_mtok: 10 },
  "gpt-4.1-mini": { input_per_mtok: 0.4, output_per_mtok: 1.6 },
  "gpt-4.1": { input_per_mtok: 2, output_per_mtok: 8 },
  "claude-3-5-haiku": { input_per_mtok: 0.8, output_per_mtok: 4 },
  "claude-haiku-4-5": { input_per_mtok: 1, output_per_mtok: 5 },
  "claude-sonnet-4": { input_per_mtok: 3, output_per_mtok: 15 },
  "gemini-2.0-flash": { input_per_mtok: 0.1, output_per_mtok: 0.4 },
  "gemini-2.5-flash": { input_per_mtok: 0.3, output_per_mtok: 2.5 },
  "gemini-2.5-pro": { input_per_mtok: 1.25, output_per_mtok: 10 },
  "*": { input_per_mtok: 1, output_per_mtok: 4 },
};

/**
 * The price of `model` at `provider`: the first of `<provider>:<model>`, `<model>`, the
 * longest key that is a prefix of the model id, `<provider>:*`, `*`; zero when none matches.
 */
export function priceFor(table: PriceTable, provider: string, model: string): ModelPrice {
  const exact = table[`${provider}:${model}`] ?? table[model];
  if (exact) return exact;
  let best: string | undefined;
  for (const key of Object.keys(table)) {
    if (key.includes(":") || key === "*") continue;
    if (model.startsWith(key) && (best === undefined || key.length > best.length)) best = key;
  }
  if (best !== undefined) return table[best] as ModelPrice;
  return table[`${provider}:*`] ?? table["*"] ?? { input_per_mtok: 0, output_per_mtok: 0 };
}

/** Cost in USD of a call: tokens × price per million tokens. */
export function costUsd(price: ModelPrice, tokensIn: number, tokensOut: number): number {
  return (tokensIn * price.input_per_mtok + tokensOut * price.output_per_mtok) / 1_000_000;
}

/**
 * The effective table: {@link DEFAULT_PRICES} overlaid with `overrides` (entries of the same key
 * replace the default).
 */
export function priceTable(overrides: PriceTable = {}): PriceTable {
  return { ...DEFAULT_PRICES, ...overrides };
}
