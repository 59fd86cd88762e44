/**
 * CPU profile of the udp daemons under iperf3 TCP load:
 * `deno run -A bench/profile.ts [--seconds=8] [--streams=1]`.
 * Runs the daemons with V8's `--perf-basic-prof` (JIT symbols in /tmp/perf-<pid>.map), samples
 * both with `perf record -e cpu-clock` (software clock: no hardware counters needed) while
 * h0c0 sends to h1c0, and prints where the time went: by daemon and thread, by DSO
 * (kernel, deno, JIT code) and the top symbols. Needs root and Debian's linux-perf.
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DAEMON_COMMAND } from "../tests/helpers/daemon.ts";
import { must, run } from "../tests/helpers/netns.ts";
import { sleep } from "../tests/helpers/wait.ts";
import { tcp, udp } from "./iperf.ts";
import { ours } from "./paths.ts";
import { cpuSeconds } from "./proc.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "8" },
    streams: { type: "string", default: "1" },
    // UDP payload size: profile a UDP run at --rate instead of TCP.
    udp: { type: "string" },
    rate: { type: "string", default: "100M" },
  },
});
const seconds = Number(v.seconds);
const [deno, ...rest] = DEFAULT_DAEMON_COMMAND;
const spec = ours("udp", "udp", "flanneld udp (profiled)", {
  tunDev: "flannel0",
  daemonCommand: [deno, rest[0], "--v8-flags=--perf-basic-prof", ...rest.slice(1)],
});

const path = await spec.open();
await using _cluster = path.cluster;
const [sender, receiver] = path.daemonPids;
const data = await Deno.makeTempFile({ prefix: "flannel-perf-", suffix: ".data" });
const ends = { clientNs: path.client.ns, serverNs: path.server.ns, serverIp: path.server.ip };
console.error(
  `profiling daemons h0=${sender} (sends) and h1=${receiver} (receives) for ${seconds} s`,
);
const cpu0 = [sender, receiver].map(cpuSeconds);
const load = v.udp
  ? udp(ends, seconds + 2, Number(v.udp), v.rate!).then((u) => ({
    bps: u.pps * Number(v.udp) * 8,
    retransmits: 0,
    udp: u,
  }))
  : tcp(ends, seconds + 2, Number(v.streams));
await sleep(1000); // past TCP slow start
must(
  await run("perf", [
    "record",
    "-e",
    "cpu-clock",
    "-F",
    "999",
    "-g",
    "-o",
    data,
    "-p",
    `${sender},${receiver}`,
    "--",
    "sleep",
    String(seconds),
  ], { timeoutMs: (seconds + 30) * 1000 }),
  "perf record",
);
const cpu = [sender, receiver].map((pid, i) => cpuSeconds(pid) - cpu0[i]);
const result = await load;
const moved = "udp" in result
  ? `UDP ${v.udp} B: sent ${(result.udp.sentPps / 1e3).toFixed(1)} kpps, received ${
    (result.udp.pps / 1e3).toFixed(1)
  } kpps`
  : `TCP ${(result.bps / 1e9).toFixed(2)} Gb/s, ${result.retransmits} retransmits`;
console.log(
  `${moved}; daemon CPU over the run: h0 ${cpu[0].toFixed(2)} s, h1 ${cpu[1].toFixed(2)} s ` +
    `(of ${seconds + 2} s)`,
);

/**
 * `perf report` over the recording with `args`: the first `lines` lines of its table, or with
 * `match` the first `lines` lines matching it.
 */
async function report(title: string, lines: number, args: string[], match?: RegExp): Promise<void> {
  const r = await run("perf", [
    "report",
    "-i",
    data,
    "--stdio",
    "-g",
    "none",
    "--percent-limit",
    "0.5",
    ...args,
  ], { timeoutMs: 120_000 });
  const table = must(r, "perf report").split("\n")
    .filter((l) => l.trim() && !l.startsWith("#") && (!match || match.test(l)));
  console.log(`\n== ${title}\n${table.slice(0, lines).join("\n")}`);
}

const self = ["--no-children"];
await report("by thread", 20, [...self, "--sort", "pid,comm"]);
await report("by DSO (kernel, deno binary, JIT-compiled JS)", 12, [...self, "--sort", "pid,dso"]);
// Inclusive time of the syscalls and of the softirq work run inline in them (veth delivers
// to the peer namespace in the sender's context, so part of that is the "wire").
await report(
  "syscalls and inline softirq (inclusive)",
  30,
  ["--children", "--sort", "pid,sym"],
  /__x64_sys_|ksys_(read|write)|tun_get_user|tun_do_read|net_rx_action/,
);
await report("top symbols (self)", 40, [...self, "--sort", "pid,sym"]);
await Deno.remove(data).catch(() => {});
