/**
 * Timing helpers shared by every retry loop of the daemon: an abortable sleep, one
 * exponential backoff, and one "failing → recovered" logger, so that a dead etcd gives one
 * warning when it starts failing and one line when it answers again, not a line per retry.
 * @module
 */

import type { Fields, Logger } from "./log.ts";

/**
 * Resolves after `ms`, or as soon as `signal` aborts. Resolves true when the time passed,
 * false when aborted (so loops can `if (!await sleep(ms, signal)) return;`).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Bounds of a {@link Backoff}. */
export interface BackoffOptions {
  /** First delay (ms). */
  minMs: number;
  /** Largest delay (ms). */
  maxMs: number;
  /** Growth per failure (default 2). */
  factor?: number;
}

/** Exponential backoff: `next()` returns min, 2·min, 4·min … up to max; `reset()` after a success. */
export class Backoff {
  #current: number;
  constructor(readonly options: BackoffOptions) {
    this.#current = options.minMs;
  }

  /** The delay to wait now; the following one grows. */
  next(): number {
    const d = this.#current;
    this.#current = Math.min(this.#current * (this.options.factor ?? 2), this.options.maxMs);
    return d;
  }

  /** The delay `next()` will return, without consuming it. */
  peek(): number {
    return this.#current;
  }

  /** Back to the first delay. */
  reset(): void {
    this.#current = this.options.minMs;
  }
}

/**
 * Logs an operation that keeps failing once, at warn level, then at `-v=1` until it
 * succeeds, and then one info line saying how long it failed. One instance per thing that
 * can fail (the watch, lease renewal, the etcd probe).
 */
export class FailureLog {
  #since = 0;

  /**
   * @param log where lines go
   * @param recoveredText the info line on recovery, e.g. "watch resumed"
   */
  constructor(private readonly log: Logger, private readonly recoveredText: string) {}

  /** Whether the last outcome was a failure. */
  get failing(): boolean {
    return this.#since !== 0;
  }

  /** When failures began (ms since epoch), 0 while things work. */
  get since(): number {
    return this.#since;
  }

  /** Records a failure: a warning the first time, a debug line after that. */
  failed(msg: string, fields?: Fields, now = Date.now()): void {
    if (this.#since) return this.log.debug(1, msg, fields);
    this.#since = now;
    this.log.warn(msg, fields);
  }

  /** Records a success: one info line when it ends a run of failures. */
  ok(fields?: Fields, now = Date.now()): void {
    if (!this.#since) return;
    this.log.info(this.recoveredText, { afterMs: now - this.#since, ...fields });
    this.#since = 0;
  }
}
