/**
 * Who owns a test run's namespaces. Every run gets a prefix `fl<4 hex>-<pid>` that starts
 * all its namespace names, plus a marker file under /run/flannel-tests/ recording the
 * owner's process start time (so a recycled pid is not mistaken for the owner) and the
 * temp dirs to remove. A run whose owner is gone can then be cleaned up by anyone.
 * @module
 */

/** Where run markers live (tmpfs: a reboot clears them together with the namespaces). */
export const MARKER_DIR = "/run/flannel-tests";

/** Matches a run prefix at the start of a namespace name; group 1 is the prefix, 2 the pid. */
export const PREFIX_RE = /^(fl[0-9a-f]{4}-(\d+))-/;

/** What a marker file holds. */
export interface Marker {
  pid: number;
  /** Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22). */
  startTime: string | null;
  /** Temp dirs to remove with the run. */
  dirs: string[];
}

/** A fresh prefix for a run of this process, e.g. `fl3a9c-4242`. */
export function newRunPrefix(): string {
  const hex = crypto.getRandomValues(new Uint16Array(1))[0].toString(16).padStart(4, "0");
  return `fl${hex}-${Deno.pid}`;
}

/** Start time of a process, or null when it does not exist. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces and parens; fields restart after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function markerPath(prefix: string): string {
  return `${MARKER_DIR}/${prefix}.json`;
}

/** Writes (or rewrites) the marker of a run owned by this process. */
export function writeMarker(prefix: string, dirs: string[]): void {
  Deno.mkdirSync(MARKER_DIR, { recursive: true });
  const m: Marker = { pid: Deno.pid, startTime: processStartTime(Deno.pid), dirs };
  Deno.writeTextFileSync(markerPath(prefix), JSON.stringify(m));
}

/** Reads a run's marker; null when there is none or it is unreadable. */
export function readMarker(prefix: string): Marker | null {
  try {
    return JSON.parse(Deno.readTextFileSync(markerPath(prefix)));
  } catch {
    return null;
  }
}

/** Removes a run's marker file. */
export function removeMarker(prefix: string): void {
  try {
    Deno.removeSync(markerPath(prefix));
  } catch { /* already gone */ }
}

/** Prefixes of all runs that have a marker. */
export function markedPrefixes(): string[] {
  try {
    return [...Deno.readDirSync(MARKER_DIR)].filter((e) => e.name.endsWith(".json"))
      .map((e) => e.name.slice(0, -5));
  } catch {
    return [];
  }
}

/** Whether the process that created run `prefix` is still alive. */
export function ownerAlive(prefix: string): boolean {
  const m = PREFIX_RE.exec(`${prefix}-`);
  if (!m) return false;
  const pid = Number(m[2]);
  const now = processStartTime(pid);
  if (now === null) return false;
  const started = readMarker(prefix)?.startTime;
  return started == null || started === now;
}
