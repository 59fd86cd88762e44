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
