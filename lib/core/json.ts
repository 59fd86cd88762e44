/**
 * JSON helpers with Go's `encoding/json` semantics, which upstream's config and lease values
 * are read with.
 * @module
 */

/**
 * Field lookup with Go's case-insensitive JSON matching (exact match preferred).
 */
export function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}
