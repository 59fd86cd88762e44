/**
 * Prometheus text exposition format 0.0.4, just what `/metrics` needs: families of
 * counters and gauges with `# HELP`/`# TYPE` lines and escaped label values.
 * @module
 */

/** Content-Type of the text format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** One sample of a family. */
export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

/** A metric family; counter names end in `_total`. */
export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Turns an arbitrary string into a valid metric or label name fragment. */
export function sanitizeName(s: string): string {
  const t = s.replace(/[^a-zA-Z0-9_]/g, "_");
  return /^[0-9]/.test(t) ? `_${t}` : t;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/**
 * Renders families in order; families without samples are left out. Throws on invalid
 * names (a programming error, caught by the unit tests).
 */
export function formatFamilies(families: Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    if (!NAME_RE.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
    if (f.type === "counter" && !f.name.endsWith("_total")) {
      throw new Error(`counter ${f.name} must end in _total`);
    }
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels) {
        if (!LABEL_RE.test(k)) {
          throw new Error(`invalid label name ${JSON.stringify(k)} on ${f.name}`);
        }
      }
      const l = labels.length
        ? `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`
        : "";
      lines.push(`${f.name}${l} ${formatValue(s.value)}`);
    }
  }
  return lines.length ? lines.join("\n") + "\n" : "";
}
