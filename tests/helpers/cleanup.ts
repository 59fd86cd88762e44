/**
 * Removes what test runs leave behind: a run's namespaces (with every process and link in
 * them), its temp dirs and its marker. As a script (`deno run -A tests/helpers/cleanup.ts`)
 * it removes the leftovers of every run whose owner process is gone; `--all` removes
 * every run's leftovers, live or not.
 * @module
 */

import { deleteNetnsSync, listNetns } from "./netns.ts";
import { markedPrefixes, ownerAlive, PREFIX_RE, readMarker, removeMarker } from "./owner.ts";

/**
 * Removes everything of run `prefix`: kills the processes in its namespaces, deletes the
 * namespaces, its temp dirs and its marker. Synchronous so exit handlers can call it.
 */
export function removeRunSync(prefix: string): void {
  for (const ns of listNetns()) {
    if (ns.startsWith(`${prefix}-`)) deleteNetnsSync(ns);
  }
  for (const dir of readMarker(prefix)?.dirs ?? []) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  }
  removeMarker(prefix);
}

/** Prefixes of all runs that left namespaces or markers behind. */
export function knownRuns(): string[] {
  const fromNs = listNetns().map((n) => PREFIX_RE.exec(n)?.[1]).filter((p) => p !== undefined);
  return [...new Set([...fromNs, ...markedPrefixes()])];
}

/** Removes the leftovers of every run whose owner is gone (or of all runs); returns their prefixes. */
export function cleanupStale(opts: { all?: boolean } = {}): string[] {
  const stale = knownRuns().filter((p) => opts.all || !ownerAlive(p));
  stale.forEach(removeRunSync);
  return stale;
}

if (import.meta.main) {
  const removed = cleanupStale({ all: Deno.args.includes("--all") });
  console.log(removed.length ? `removed runs: ${removed.join(" ")}` : "nothing to clean up");
}
