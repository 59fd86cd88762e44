import { assert, assertEquals } from "../helpers/assert.ts";
import { memoryFields, startMemoryLog } from "../../lib/daemon/health/memory.ts";
import { releaseFreedMemory } from "../../ffi/malloc.ts";
import { libc } from "../../ffi/libc.ts";
import { type Logger, setVerbosity } from "../../lib/core/log.ts";

/** A logger recording the messages it gets, at any level. */
function recorder(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const rec = (m: string) => void lines.push(m);
  return { log: { error: rec, warn: rec, info: rec, debug: (_l, m) => rec(m) }, lines };
}

Deno.test("memoryFields: rss, heap and external in MiB", () => {
  const f = memoryFields();
  assertEquals(Object.keys(f), ["rssMiB", "heapTotalMiB", "heapUsedMiB", "externalMiB"]);
  for (const v of Object.values(f)) assert(/^\d+\.\d$/.test(v), v);
  assert(Number(f.rssMiB) > 0);
});

Deno.test("startMemoryLog: off by default, one line at once when asked, stops cleanly", () => {
  setVerbosity(0);
  const off = recorder();
  startMemoryLog(off.log, undefined)();
  startMemoryLog(off.log, "not a number")();
  assertEquals(off.lines, []);
  const on = recorder();
  const stop = startMemoryLog(on.log, "60");
  stop(); // the interval must not outlive the test (op sanitizer)
  assertEquals(on.lines, ["memory"]);
});

Deno.test("releaseFreedMemory: trims with glibc, at most once per 250 ms, no timers", () => {
  // Debian's glibc has malloc_trim; without it the call is a no-op that never trims.
  assert(libc.malloc_trim !== null, "glibc malloc_trim found");
  const t0 = 1e12; // far from any earlier call's timestamp
  assertEquals(releaseFreedMemory(t0), true);
  let trims = 0;
  for (let i = 1; i < 100; i++) if (releaseFreedMemory(t0 + i)) trims++;
  assertEquals(trims, 0, "rate-limited within 250 ms");
  assertEquals(releaseFreedMemory(t0 + 250), true);
});
