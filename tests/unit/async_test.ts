// The shared timing helpers: abortable sleep, backoff, "failing → recovered" logging.
import { assert, assertEquals } from "../helpers/assert.ts";
import { Backoff, FailureLog, sleep } from "../../lib/core/async.ts";
import type { Logger } from "../../lib/core/log.ts";

Deno.test("sleep: true after the time, false at once when aborted (before or during)", async () => {
  assertEquals(await sleep(1), true);
  const a = new AbortController();
  a.abort();
  assertEquals(await sleep(60_000, a.signal), false);
  const b = new AbortController();
  const t0 = Date.now();
  const p = sleep(60_000, b.signal);
  setTimeout(() => b.abort(), 5);
  assertEquals(await p, false);
  assert(Date.now() - t0 < 1000);
});

Deno.test("Backoff: doubles up to the maximum, peek does not consume, reset starts over", () => {
  const b = new Backoff({ minMs: 100, maxMs: 1000 });
  assertEquals([b.next(), b.next(), b.next(), b.next(), b.next(), b.peek()], [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  b.reset();
  assertEquals(b.next(), 100);
  const t = new Backoff({ minMs: 1, maxMs: 100, factor: 10 });
  assertEquals([t.next(), t.next(), t.next(), t.next()], [1, 10, 100, 100]);
});

Deno.test("FailureLog: one warning, then debug lines, then one recovery line with the duration", () => {
  const got: string[] = [];
  const log: Logger = {
    error: (m) => got.push(`E ${m}`),
    warn: (m) => got.push(`W ${m}`),
    info: (m, f) => got.push(`I ${m} ${JSON.stringify(f)}`),
    debug: (l, m) => got.push(`D${l} ${m}`),
  };
  const f = new FailureLog(log, "etcd answers again");
  f.ok({}, 0); // nothing failed: nothing to say
  f.failed("renewal failed", {}, 1000);
  f.failed("renewal failed", {}, 2000);
  assertEquals([f.failing, f.since], [true, 1000]);
  f.ok({ what: "renewed" }, 4500);
  f.ok({}, 5000);
  assertEquals(got, [
    "W renewal failed",
    "D1 renewal failed",
    'I etcd answers again {"afterMs":3500,"what":"renewed"}',
  ]);
  assertEquals(f.failing, false);
});
