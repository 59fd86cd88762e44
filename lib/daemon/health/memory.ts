/**
 * Periodic memory report, for finding where the daemon's resident memory goes: RSS next to
 * the V8 heap (total/used) and `external` (ArrayBuffers and other off-heap V8 memory). RSS
 * minus heapTotal minus external is the runtime itself (code, Rust side, allocator).
 *
 * On with `FLANNEL_MEMORY_LOG_SECONDS=<n>` (a line every n seconds, at info level) or at
 * `-v=2` when the daemon starts (every 60 s).
 * @module
 */

import { getVerbosity, type Logger } from "../../core/log.ts";

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
