/**
 * Leveled logging to stderr, one line per event, in klog's layout so that operators'
 * existing log tooling for upstream flanneld keeps working:
 *
 *   I1122 05:49:26.123456 4242 subnet] acquired lease subnet=10.5.52.0/24
 *
 * Verbosity follows klog's `-v`: errors, warnings and infos always print; `debug(n, …)`
 * prints when `-v` ≥ n. Fields are appended as `key=value` so one grep finds every line
 * about a subnet or a peer.
 * @module
 */

/** Key/value context appended to a log line. */
export type Fields = Record<string, unknown>;

let verbosity = 0;
/** `-vmodule`: per-component levels, first match wins; empty: `-v` for all. */
let modules: { pattern: RegExp; level: number }[] = [];
let sink: (line: string) => void = (line) => {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr gone (closed pipe): logging must never take the daemon down.
  }
};
const encoder = new TextEncoder();

/** Sets the `-v` level. */
export function setVerbosity(v: number): void {
  verbosity = v;
}

/**
 * Parses klog's `-vmodule` (`pattern=N,…`, `*` and `?` as globs). klog matches source file
 * names; ours matches component names, the word before `]` in every line. Throws with a
 * plain message for a malformed spec.
 */
export function parseVmodule(spec: string): { pattern: RegExp; level: number }[] {
  if (spec.trim() === "") return [];
  return spec.split(",").map((part) => {
    const m = /^([^=]+)=(\d+)$/.exec(part.trim());
    if (!m) throw new Error(`want pattern=N, got ${JSON.stringify(part)}`);
    const glob = m[1].replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    return { pattern: new RegExp(`^${glob}$`), level: Number(m[2]) };
  });
}

/** Sets the `-vmodule` levels (see {@link parseVmodule}). */
export function setModuleVerbosity(levels: { pattern: RegExp; level: number }[]): void {
  modules = levels;
}

/** The debug level in force for `component`: its `-vmodule` level, else `-v`. */
function levelOf(component: string): number {
  for (const m of modules) if (m.pattern.test(component)) return m.level;
  return verbosity;
}

/** Current `-v` level. */
export function getVerbosity(): number {
  return verbosity;
}

/** Redirects log lines (tests capture them); returns the previous sink. */
export function setSink(fn: (line: string) => void): (line: string) => void {
  const prev = sink;
  sink = fn;
  return prev;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

function fmtValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  let s: string;
  if (typeof v === "string" || typeof v === "bigint") s = String(v); // bigint (IPv6) is not JSON
  else {
    try {
      s = JSON.stringify(v, (_k, x) => typeof x === "bigint" ? String(x) : x) ?? String(v);
    } catch {
      s = String(v); // cyclic object: logging must never throw
    }
  }
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

/** Formats one line; exported for tests. */
export function formatLine(
  sev: string,
  component: string,
  msg: string,
  fields?: Fields,
  now = new Date(),
): string {
  const ts = `${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())} ${pad(now.getUTCHours())}:` +
    `${pad(now.getUTCMinutes())}:${pad(now.getUTCSeconds())}.${
      pad(now.getUTCMilliseconds(), 3)
    }000`;
  let line = `${sev}${ts} ${Deno.pid} ${component}] ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined) line += ` ${k}=${fmtValue(v)}`;
    }
  }
  return line;
}

/** A logger bound to a component name (`subnet`, `watch`, `udp`, …). */
export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  /** Printed only when `-v` ≥ level. */
  debug(level: number, msg: string, fields?: Fields): void;
}

/** Returns a logger for one component. */
export function logger(component: string): Logger {
  return {
    error: (m, f) => sink(formatLine("E", component, m, f)),
    warn: (m, f) => sink(formatLine("W", component, m, f)),
    info: (m, f) => sink(formatLine("I", component, m, f)),
    debug: (lvl, m, f) => {
      if (levelOf(component) >= lvl) sink(formatLine("I", component, m, f));
    },
  };
}

/**
 * Wraps a logger so that the same repeated condition logs once per `key` until `clear(key)`
 * or until the condition's message changes: a dead etcd or a flood of garbage datagrams
 * gives one line, not thousands. Remembers at most `limit` keys (then starts over), so
 * hostile input cannot grow it without bound.
 */
export class OnceLogger {
  #seen = new Map<string, string>();
  constructor(private readonly log: Logger, private readonly limit = 10_000) {}
  /** Logs at warn level unless `key` was last logged with the same `msg`; returns whether it logged. */
  warn(key: string, msg: string, fields?: Fields): boolean {
    if (this.#seen.get(key) === msg) return false;
    if (this.#seen.size >= this.limit) this.#seen.clear();
    this.#seen.set(key, msg);
    this.log.warn(msg, fields);
    return true;
  }
  /** Forgets `key`, so that the next occurrence logs again. Returns whether it was set. */
  clear(key: string): boolean {
    return this.#seen.delete(key);
  }
}
