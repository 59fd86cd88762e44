/**
 * Per-process CPU time and memory from /proc (every thread included, so a daemon's Workers
 * count too), and percentiles over samples.
 * @module
 */

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux port). */
const USER_HZ = 100;

/** User + system CPU seconds `pid` has used so far (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may contain spaces; the fields after it are space-separated.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / USER_HZ; // rest[0] is field 3
}

/** Resident memory of a process in KiB: now (VmRSS) and the peak so far (VmHWM). */
export interface Memory {
  rssKiB: number;
  hwmKiB: number;
}

/** Reads {@link Memory} from /proc/<pid>/status. */
export function memory(pid: number): Memory {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM") };
}

/** The `p`-th percentile (0..100, nearest rank) of `xs`; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
