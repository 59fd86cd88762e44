/**
 * Periodic memory report, for finding where the daemon's resident memory goes: RSS next to
 * the V8 heap (total/used) and `external` (ArrayBuffers and other off-heap V8 memory). RSS
 * minus heapTotal minus external is the runtime itself (code, Rust side, allocator).
 *
 * On with `FLANNEL_MEMORY_LOG_SECONDS=<n>` (a line every n seconds, at info level) or at
 * `-v=2` when the daemon starts (every 60 s).
 *
 * Also {@link releaseFreedMemory}: glibc keeps memory freed by V8's background threads
 * (compiler zones, GC) in per-thread arenas instead of returning it, ~15 MiB after a burst of
 * 1,000 lease events; `malloc_trim` gives those pages back.
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { getVerbosity, type Logger } from "../log.ts";

const MiB = 1024 * 1024;

/** `Deno.memoryUsage()` in MiB, one decimal, as log fields. */
export function memoryFields(): Record<string, string> {
  const u = Deno.memoryUsage();
  const f = (n: number) => (n / MiB).toFixed(1);
  return {
    rssMiB: f(u.rss),
    heapTotalMiB: f(u.heapTotal),
    heapUsedMiB: f(u.heapUsed),
    externalMiB: f(u.external),
  };
}

/** Starts the report if asked for (see the module comment); returns a function that stops it. */
export function startMemoryLog(
  log: Logger,
  env = Deno.env.get("FLANNEL_MEMORY_LOG_SECONDS"),
): () => void {
  const seconds = Number(env);
  const fromEnv = Number.isFinite(seconds) && seconds > 0;
  if (!fromEnv && getVerbosity() < 2) return () => {};
  const write = () =>
    fromEnv ? log.info("memory", memoryFields()) : log.debug(2, "memory", memoryFields());
  write();
  const t = setInterval(write, (fromEnv ? seconds : 60) * 1000);
  Deno.unrefTimer(t); // never keeps the process alive on its own
  return () => clearInterval(t);
}

/** Not more often than this: a trim walks every malloc arena (~0.1–1 ms). */
const TRIM_MIN_INTERVAL_MS = 250;
let lastTrim = 0;

/**
 * Returns the free pages of every malloc arena to the kernel (glibc `malloc_trim(0)`); call
 * after a piece of work (a batch of lease events, a reconcile). Rate-limited, so callers on
 * busy paths need not care; no timer of its own (the next piece of work, at the latest the
 * periodic reconcile, trims what a skipped call left). A no-op without glibc.
 */
export function releaseFreedMemory(now = Date.now()): void {
  if (!libc.malloc_trim || now - lastTrim < TRIM_MIN_INTERVAL_MS) return;
  lastTrim = now;
  libc.malloc_trim(0n);
}
