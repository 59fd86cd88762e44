/**
 * Giving freed heap memory back to the kernel. glibc keeps memory freed by V8's background
 * threads (compiler zones, GC) in per-thread arenas instead of returning it, ~15 MiB after a
 * burst of 1,000 lease events; `malloc_trim` gives those pages back.
 * @module
 */

import { libc } from "./libc.ts";

/** Not more often than this: a trim walks every malloc arena (~0.1–1 ms). */
const TRIM_MIN_INTERVAL_MS = 250;
let lastTrim = 0;

/**
 * Returns the free pages of every malloc arena to the kernel (glibc `malloc_trim(0)`); call
 * after a piece of work (a batch of lease events, a reconcile). Rate-limited, so callers on
 * busy paths need not care; no timer of its own (the next piece of work, at the latest the
 * periodic reconcile, trims what a skipped call left). A no-op without glibc. Returns whether
 * it trimmed.
 */
export function releaseFreedMemory(now = Date.now()): boolean {
  if (!libc.malloc_trim || now - lastTrim < TRIM_MIN_INTERVAL_MS) return false;
  lastTrim = now;
  libc.malloc_trim(0n);
  return true;
}
