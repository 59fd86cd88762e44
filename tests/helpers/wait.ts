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

/**
 * Thrown by an {@link until} condition when what it waits for can no longer happen (the
 * process it reads has exited, say): {@link until} stops at once and rethrows it, instead of
 * polling on until the deadline as it does for other errors.
 */
export class GiveUp extends Error {
  override name = "GiveUp";
}

/** What a truthy result of type `T` can be. */
export type Truthy<T> = Exclude<T, null | undefined | false | 0 | "">;

/**
 * Polls `fn` every `everyMs` until it returns a truthy value (returned) or `timeoutMs` passes;
 * then throws, naming `what` and the last error `fn` threw. Errors from `fn` count as "not
 * yet", except {@link GiveUp}, which ends the wait at once.
 */
export async function until<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10000,
  everyMs = 50,
): Promise<Truthy<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v as Truthy<T>;
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** {@link until} for a condition; returns how many milliseconds it took to hold. */
export async function timeUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10000,
  everyMs = 50,
): Promise<number> {
  const t0 = Date.now();
  await until(what, cond, timeoutMs, everyMs);
  return Date.now() - t0;
}
