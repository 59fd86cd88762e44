import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { memoryFields, releaseFreedMemory, startMemoryLog } from "../../lib/health/memory.ts";
import { type Logger, setVerbosity } from "../../lib/log.ts";

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

Deno.test("releaseFreedMemory: callable on any path (rate-limited, no timers)", () => {
  for (let i = 0; i < 100; i++) releaseFreedMemory();
});
