/**
 * A strict little parser of the Prometheus text format 0.0.4, so tests check that
 * `/metrics` really parses (not just that it contains some substring): every line must be
 * HELP, TYPE or a sample; a family's TYPE precedes its samples, which are contiguous;
 * counters end in `_total`; label values use only the three escapes; no series repeats.
 * @module
 */

/** One parsed sample. */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One parsed family. */
export interface ParsedFamily {
  type: string;
  help?: string;
  samples: ParsedSample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const HELP_RE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL_RE = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;

function parseValue(s: string, line: number): number {
  if (s === "NaN") return NaN;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) {
    throw new Error(`line ${line}: bad value ${JSON.stringify(s)}`);
  }
  return Number(s);
}

function parseLabels(s: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let rest = s;
  while (rest.length) {
    const m = rest.match(LABEL_RE);
    if (!m) throw new Error(`line ${line}: bad labels {${s}}`);
    if (m[1] in out) throw new Error(`line ${line}: label ${m[1]} repeated`);
    out[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    rest = rest.slice(m[0].length);
  }
  return out;
}

/** Parses `text`; throws with the line number on the first violation. */
export function parsePrometheus(text: string): Map<string, ParsedFamily> {
  if (text !== "" && !text.endsWith("\n")) throw new Error("output must end with a newline");
  const fams = new Map<string, ParsedFamily>();
  const series = new Set<string>();
  let current = "";
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((l, i) => {
    const n = i + 1;
    let m: RegExpMatchArray | null;
    if ((m = l.match(HELP_RE))) {
      const f = fams.get(m[1]);
      if (f?.help !== undefined || (f && f.samples.length)) {
        throw new Error(`line ${n}: late or repeated HELP for ${m[1]}`);
      }
      fams.set(m[1], { type: f?.type ?? "", help: m[2], samples: [] });
      current = m[1];
    } else if ((m = l.match(TYPE_RE))) {
      const f = fams.get(m[1]);
      if (f?.type) throw new Error(`line ${n}: repeated TYPE for ${m[1]}`);
      if (m[2] === "counter" && !m[1].endsWith("_total")) {
        throw new Error(`line ${n}: counter ${m[1]} does not end in _total`);
      }
      fams.set(m[1], { type: m[2], help: f?.help, samples: [] });
      current = m[1];
    } else if (l.startsWith("#")) {
      throw new Error(`line ${n}: unexpected comment ${JSON.stringify(l)}`);
    } else if ((m = l.match(SAMPLE_RE))) {
      const f = fams.get(m[1]);
      if (!f?.type || m[1] !== current) {
        throw new Error(
          `line ${n}: sample ${m[1]} outside its family (TYPE first, samples together)`,
        );
      }
      const labels = parseLabels(m[2] ?? "", n);
      const id = `${m[1]}${JSON.stringify(Object.entries(labels).sort())}`;
      if (series.has(id)) throw new Error(`line ${n}: duplicate series ${id}`);
      series.add(id);
      f.samples.push({ name: m[1], labels, value: parseValue(m[3], n) });
    } else {
      throw new Error(`line ${n}: not HELP, TYPE or a sample: ${JSON.stringify(l)}`);
    }
  });
  for (const [name, f] of fams) if (!f.type) throw new Error(`family ${name} has HELP but no TYPE`);
  return fams;
}

/** Sum of the samples of `name` whose labels include `labels`; undefined when none match. */
export function metricValue(
  fams: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const hits = (fams.get(name)?.samples ?? []).filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return hits.length ? hits.reduce((a, s) => a + s.value, 0) : undefined;
}
