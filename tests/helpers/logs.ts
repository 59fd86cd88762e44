/**
 * Captures the daemon's log lines while a piece of code runs, for tests that assert what an
 * operator would read.
 * @module
 */

import { setSink } from "../../lib/core/log.ts";

/** Runs `fn` with log lines captured; returns them (the previous sink is restored). */
export async function captureLogs(fn: () => Promise<void> | void): Promise<string[]> {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  try {
    await fn();
  } finally {
    setSink(prev);
  }
  return lines;
}
