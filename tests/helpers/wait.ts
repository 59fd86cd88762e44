/**
 * The one way tests wait: poll a condition until it holds or a deadline passes (with a
 * message naming what was awaited), and a plain sleep for the few places that must let time
 * pass on purpose.
 * @module
 */

import { sleep as abortableSleep } from "../../lib/core/async.ts";

/** Resolves after `ms` milliseconds. */
export async function sleep(ms: number): Promise<void> {
  await abortableSleep(ms);
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; throws with `what`. */
export async function until<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10000,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}
