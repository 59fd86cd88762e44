/**
 * Design comparisons, back to back in one run: the same path measured under several
 * variants of the daemons' environment (e.g. the udp data path's layout knobs), next to a
 * reference row, for `--rounds` rounds in turn so that load on the machine hits all alike.
 *
 *   deno run -A bench/compare.ts --path=udp --ref=kernel-vxlan \
 *     --variant=1w:FLANNEL_UDP_WORKERS=1 --variant=2w:FLANNEL_UDP_WORKERS=2 [--rounds=2] [--seconds=3]
 *
 * Prints one line per measurement: TCP 1×/4×, 64-byte UDP pps and loss, RTT p50, CPU s/GB,
 * peak RSS, and the ratios to the reference measured in the same round. Needs root.
 * @module
 */

import { parseArgs } from "node:util";
import { measurePath, type PathResult } from "./measure.ts";
import { parseOptions } from "./options.ts";
import { PATHS } from "./paths.ts";
import { lossSummary } from "./counters.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    path: { type: "string", default: "udp" },
    ref: { type: "string", default: "kernel-vxlan" },
    variant: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "2" },
    seconds: { type: "string", default: "3" },
    pings: { type: "string", default: "200" },
    "udp-rate": { type: "string", default: "100M" },
  },
});
const o = parseOptions([
  `--seconds=${v.seconds}`,
  `--pings=${v.pings}`,
  `--udp-rate=${v["udp-rate"]}`,
]);

/** A variant: name and environment variables. */
const variants = (v.variant!.length ? v.variant! : ["default:"]).map((s) => {
  const [name, ...assignments] = s.split(/[:,]/);
  return {
    name,
    env: Object.fromEntries(assignments.filter((a) => a).map((a) => a.split("=", 2))),
  };
});

async function measure(id: string, env: Record<string, string>): Promise<PathResult> {
  const spec = PATHS.find((p) => p.id === id);
  if (!spec) throw new Error(`unknown path ${id}`);
  const saved = Object.keys(env).map((k) => [k, Deno.env.get(k)] as const);
  for (const [k, x] of Object.entries(env)) Deno.env.set(k, x);
  try {
    const p = await spec.open();
    await using _c = p.cluster;
    return await measurePath(p, o, () => {});
  } finally {
    for (const [k, x] of saved) x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
  }
}

const f = (x: number, d = 2) => Number.isFinite(x) ? x.toFixed(d) : "-";

function line(name: string, m: PathResult, ref: PathResult | null): string {
  const r = (a: number, b: number | undefined) => ref && b ? ` (${f(a / b)}×)` : "";
  return `${name.padEnd(14)} TCP1 ${f(m.tcp1.bps / 1e9)}${r(m.tcp1.bps, ref?.tcp1.bps)}` +
    `  TCP4 ${f(m.tcp4.bps / 1e9)}${r(m.tcp4.bps, ref?.tcp4.bps)}` +
    `  pps ${f(m.udp64.pps / 1e3, 1)}k${r(m.udp64.pps, ref?.udp64.pps)} loss ${
      f(m.udp64.loss * 100, 1)
    }%` +
    `  RTT ${f(m.rtt.p50, 3)}${r(m.rtt.p50, ref?.rtt.p50)}` +
    (m.daemon
      ? `  CPU/GB ${f(m.daemon.cpuSecondsPerGB)}  peak RSS ${f(m.daemon.peakRssKiB / 1024, 1)}`
      : "") +
    `  retr ${m.tcp1.retransmits}/${m.tcp4.retransmits}` +
    `  lost: ${
      ["h0", "h1", "server"].map((k) => `${k} ${lossSummary(m.udpLosses[k] ?? {})}`).join("; ")
    }`;
}

const started = new Date().toISOString();
console.log(
  `compare ${v.path} vs ${v.ref}, ${started}, load ${
    Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
  }`,
);
for (let round = 0; round < Number(v.rounds); round++) {
  const ref = v.ref ? await measure(v.ref, {}) : null;
  if (ref) console.log(line(`${v.ref}`, ref, null));
  const order = round % 2 ? [...variants].reverse() : variants;
  for (const variant of order) {
    try {
      console.log(line(variant.name, await measure(v.path!, variant.env), ref));
    } catch (e) {
      console.log(`${variant.name}: failed: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
    }
  }
  console.log(
    `  (round ${round + 1} done, load ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")})`,
  );
}
