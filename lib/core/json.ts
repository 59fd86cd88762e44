/**
 * JSON helpers with Go's `encoding/json` semantics, which upstream's config and lease values
 * are read with.
 * @module
 */

/**
 * Field lookup as Go's `json.Unmarshal` fills a struct field: keys match the field name
 * case-insensitively, and when several keys match (`"Network"` and `"network"`) each one is
 * assigned in document order, so the last one wins. (A key repeated with the very same
 * spelling is merged by JSON.parse at its first position; Go would still take the last.)
 */
export function field(obj: Record<string, unknown>, name: string): unknown {
  const lower = name.toLowerCase();
  let found: unknown = undefined;
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) found = obj[k];
  return found;
}

// Escapes Go's encoder writes where JSON.stringify writes the character (or a short escape).
// A `\\` pair is matched first so that the `b` of an escaped backslash is never taken for `\b`.
const GO_ESCAPE = /\\\\|\\b|\\f|[<>&\u2028\u2029]/g;
const GO_ESCAPES: Record<string, string> = {
  "\\b": "\\u0008",
  "\\f": "\\u000c",
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/**
 * `JSON.stringify(v)` as Go's `json.Marshal` writes it: `<`, `>`, `&`, U+2028 and U+2029
 * escaped as `\u003c`…, backspace and form feed as `\u0008` and `\u000c` (Go before 1.22,
 * which upstream's v0.20 releases are built with). Upstream stores lease values marshalled
 * so; a string that an extension command printed may contain any of these.
 */
export function marshalGo(v: unknown): string {
  return JSON.stringify(v).replace(GO_ESCAPE, (m) => GO_ESCAPES[m] ?? m);
}
