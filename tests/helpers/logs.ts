/**
 * Captures the daemon's log lines while a piece of code runs, for tests that assert what an
 * operator would read.
 * @module
 */

import { setSink } from "../../lib/core/log.ts";

/**
 * Runs `fn` with log lines captured (`fn` sees them arrive in `lines`); returns them. The
 * previous sink is restored; when `fn` throws, the lines are printed before the error.
 */
export async function captureLogs(
  fn: (lines: string[]) => Promise<void> | void,
): Promise<string[]> {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  try {
    await fn(lines);
  } catch (e) {
    console.error(lines.join("\n"));
    throw e;
  } finally {
    setSink(prev);
  }
  return lines;
}
