/**
 * Follows a JSON object as it streams in and yields the decoded text of one string field
 * (e.g. `body` of `{"subject": "…", "body": "…"}`) as it grows, so the live progress can
 * show the text a model writes while the answer as a whole is still being generated as JSON.
 * Escapes (`\n`, `\"`, `\uXXXX`, surrogate pairs) are decoded; a chunk that ends inside an
 * escape keeps it back until the next chunk. The full answer is parsed and validated separately.
 */
export class JsonStringFieldStream {
  private buffer = "";
  private start = -1;
  private pos = 0;
  private done = false;
  private readonly field: string;

  constructor(field: string) {
    this.field = field;
  }

  /** Adds a chunk of the JSON text. @returns the field's text decoded since the last call ("" when none). */
  push(chunk: string): string {
    this.buffer += chunk;
    if (this.done) return "";
    if (this.start < 0) {
      const m = new RegExp(`"${this.field}"\\s*:\\s*"`).exec(this.buffer);
      if (!m) return "";
      this.start = m.index + m[0].length;
      this.pos = this.start;
    }
    let out = "";
    while (this.pos < this.buffer.length) {
      const c = this.buffer[this.pos] as string;
      if (c === '"') {
        this.done = true;
        break;
      }
      if (c !== "\\") {
        out += c;
        this.pos++;
        continue;
      }
      const next = this.buffer[this.pos + 1];
      if (next === undefined) break;
      if (next === "u") {
        const hex = this.buffer.slice(this.pos + 2, this.pos + 6);
        if (hex.length < 4) break;
        out += String.fromCharCode(Number.parseInt(hex, 16));
        this.pos += 6;
        continue;
      }
      out += ESCAPES[next] ?? next;
      this.pos += 2;
    }
    return out;
  }
}

const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", b: "\b", f: "\f", '"': '"', "\\": "\\", "/": "/" };
