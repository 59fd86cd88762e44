// Unit tests for lib/core/log.ts: klog-like line layout, verbosity gating, OnceLogger.
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import {
  formatLine,
  getVerbosity,
  logger,
  OnceLogger,
  setSink,
  setVerbosity,
} from "../../lib/core/log.ts";

const AT = new Date(Date.UTC(2024, 10, 22, 5, 49, 26, 123));

Deno.test("formatLine: klog layout with UTC time, pid and component", () => {
  assertEquals(
    formatLine("I", "subnet", "acquired lease", undefined, AT),
    `I1122 05:49:26.123000 ${Deno.pid} subnet] acquired lease`,
  );
  // Zero-padding of every field.
  const early = new Date(Date.UTC(2025, 0, 2, 3, 4, 5, 6));
  assertEquals(
    formatLine("E", "x", "m", undefined, early),
    `E0102 03:04:05.006000 ${Deno.pid} x] m`,
  );
});

Deno.test("formatLine uses UTC whatever the local time zone", async () => {
  const code = `import { formatLine } from "${new URL("../../lib/core/log.ts", import.meta.url)}";
    console.log(formatLine("I", "c", "m", undefined, new Date(${AT.getTime()})));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    env: { TZ: "Asia/Kolkata" }, // UTC+05:30: local time would read 11:19
    stdout: "piped",
  }).output();
  assert(out.success);
  assertMatch(new TextDecoder().decode(out.stdout), /^I1122 05:49:26\.123000 \d+ c\] m\n$/);
});

const cyclic: Record<string, unknown> = {};
cyclic.self = cyclic;

Deno.test("formatLine: fields as key=value, quoted when needed, undefined skipped", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ subnet: "10.5.52.0/24" }, " subnet=10.5.52.0/24"],
    [{ n: 3, ok: true, none: null }, " n=3 ok=true none=null"],
    [{ msg: "two words" }, ' msg="two words"'],
    [{ s: 'a"b' }, ' s="a\\"b"'],
    [{ s: "k=v" }, ' s="k=v"'],
    [{ s: "" }, ' s=""'],
    [{ err: new Error("boom now") }, ' err="boom now"'],
    [{ obj: { a: 1 } }, ' obj="{\\"a\\":1}"'],
    [{ list: [1, 2] }, " list=[1,2]"],
    [{ skip: undefined, keep: 1 }, " keep=1"],
    [{ big: 10n }, " big=10"], // bigint must not throw
    [{ nested: { ip: 1n } }, ' nested="{\\"ip\\":\\"1\\"}"'],
    [{ cyc: cyclic }, ' cyc="[object Object]"'],
  ];
  for (const [fields, tail] of cases) {
    assertEquals(
      formatLine("W", "c", "m", fields, AT),
      `W1122 05:49:26.123000 ${Deno.pid} c] m${tail}`,
      tail,
    );
  }
});

/** Captures lines logged while `fn` runs, at verbosity `v`. */
function capture(v: number, fn: () => void): string[] {
  const lines: string[] = [];
  const prevSink = setSink((l) => lines.push(l));
  const prevV = getVerbosity();
  setVerbosity(v);
  try {
    fn();
  } finally {
    setSink(prevSink);
    setVerbosity(prevV);
  }
  return lines;
}

const HEAD = /^([IWE])\d{4} \d\d:\d\d:\d\d\.\d{6} (\d+) (\w+)\] (.*)$/;

Deno.test("logger: severities and component", () => {
  const lines = capture(0, () => {
    const l = logger("watch");
    l.error("e1", { k: 1 });
    l.warn("w1");
    l.info("i1");
  });
  const parsed = lines.map((l) => HEAD.exec(l)!.slice(1));
  const pid = String(Deno.pid);
  assertEquals(parsed, [["E", pid, "watch", "e1 k=1"], ["W", pid, "watch", "w1"], [
    "I",
    pid,
    "watch",
    "i1",
  ]]);
});

Deno.test("debug is gated by verbosity", () => {
  const run = () => {
    const l = logger("udp");
    for (const lvl of [0, 1, 2, 3, 5]) l.debug(lvl, `d${lvl}`);
  };
  const cases: [number, string[]][] = [[0, ["d0"]], [2, ["d0", "d1", "d2"]], [10, [
    "d0",
    "d1",
    "d2",
    "d3",
    "d5",
  ]]];
  for (const [v, want] of cases) {
    const got = capture(v, run).map((l) => HEAD.exec(l)![4]);
    assertEquals(got, want, `-v=${v}`);
  }
  assert(capture(0, run).every((l) => l.startsWith("I")), "debug lines are info severity");
});

Deno.test("setVerbosity / setSink return and restore state", () => {
  const lines: string[] = [];
  const a = (l: string) => lines.push("a:" + l);
  const prev = setSink(a);
  assertEquals(setSink(prev), a);
  setVerbosity(4);
  assertEquals(getVerbosity(), 4);
  setVerbosity(0);
  assertEquals(lines.length, 0);
});

Deno.test("OnceLogger warns once per key until cleared", () => {
  const lines = capture(0, () => {
    const once = new OnceLogger(logger("etcd"));
    const results = [
      once.warn("down", "etcd unreachable", { tries: 1 }),
      once.warn("down", "etcd unreachable", { tries: 2 }),
      once.warn("other", "bad datagram"),
      once.clear("down"),
      once.clear("down"),
      once.warn("down", "etcd unreachable", { tries: 3 }),
    ];
    assertEquals(results, [true, false, true, true, false, true]);
  });
  assertEquals(lines.map((l) => HEAD.exec(l)!.slice(1).join("|")), [
    `W|${Deno.pid}|etcd|etcd unreachable tries=1`,
    `W|${Deno.pid}|etcd|bad datagram`,
    `W|${Deno.pid}|etcd|etcd unreachable tries=3`,
  ]);
});

Deno.test("OnceLogger logs again when the same key's message changes; its memory is bounded", () => {
  const lines = capture(0, () => {
    const once = new OnceLogger(logger("watch"), 3);
    assertEquals(
      [
        once.warn("k", "ignoring unusable lease: not JSON"),
        once.warn("k", "ignoring unusable lease: not JSON"),
        once.warn("k", "ignoring unusable lease: no PublicIP"),
      ],
      [true, false, true],
    );
    for (const k of ["a", "b", "c"]) once.warn(k, "x"); // the 4th key starts over
    assertEquals(once.warn("k", "ignoring unusable lease: no PublicIP"), true);
  });
  assertEquals(lines.length, 6);
});
