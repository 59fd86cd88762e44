/**
 * Where the packets of a small-packet UDP run are lost, and what a ping costs, on chosen
 * paths: `deno run -A bench/losses.ts [--only=kernel-vxlan,udp,upstream-udp] [--rate=100M]
 * [--size=64] [--seconds=5] [--rounds=1] [--pings=200]`. For each path and round it prints
 * iperf3's sent and received packet rates and every kernel and daemon counter that changed
 * in the client container, both hosts and the server container (bench/counters.ts). Needs
 * root.
 * @module
 */

import { parseArgs } from "node:util";
import { type Counters, delta, isLoss, snapshot } from "./counters.ts";
import { tcp, udp } from "./iperf.ts";
import { ours, PATHS, type PathSpec } from "./paths.ts";
import { BENCH_HEALTHZ_PORT } from "./counters.ts";
import { cpuSeconds, percentile } from "./proc.ts";
import { run } from "../tests/helpers/netns.ts";

/** CPU seconds of every process in `ns` now, by "<comm> <pid>". */
async function cpuByProcess(ns: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const pids = (await run("ip", ["netns", "pids", ns])).stdout.split("\n").filter((x) => x);
  for (const pid of pids) {
    try {
      const comm = Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
      out.set(`${comm}:${pid}`, cpuSeconds(Number(pid)));
    } catch { /* gone */ }
  }
  return out;
}

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string", default: "kernel-vxlan,udp,upstream-udp" },
    rate: { type: "string", default: "100M" },
    size: { type: "string", default: "64" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "1" },
    pings: { type: "string", default: "200" },
    all: { type: "boolean", default: false },
    // TCP instead of UDP: streams per run, e.g. 1,4.
    tcp: { type: "string" },
  },
});

/** Our udp rows again, with the health server on so that the daemon's counters can be read. */
function withMetrics(spec: PathSpec): PathSpec {
  if (spec.kind !== "ours") return spec;
  const extra = spec.id === "udp-nooffload" ? { Offloads: false } : {};
  const backend = spec.id.startsWith("udp")
    ? "udp"
    : spec.id.startsWith("vxlan")
    ? "vxlan"
    : "host-gw";
  return ours(spec.id, backend, spec.label, {
    tunDev: backend === "udp" ? "flannel0" : null,
    extra,
    daemonArgs: [`--healthz-port=${BENCH_HEALTHZ_PORT}`],
  });
}

/** Traffic counters worth printing next to the losses. */
const TRAFFIC =
  /^(Udp\.(InDatagrams|OutDatagrams)|Ip\.ForwDatagrams|link\.(flannel0|eth0)\.(rx|tx)_packets|daemon\..*(packets|tun_writes|gro_buffers|gso_sends|batches|coalesce|feature).*)$/;

function show(role: string, d: Counters): string {
  const keys = Object.keys(d).filter((k) => v.all || isLoss(k) || TRAFFIC.test(k)).sort();
  return `  ${role.padEnd(7)} ${keys.map((k) => `${k}=${d[k]}`).join("  ") || "-"}`;
}

for (const id of v.only!.split(",")) {
  const base = PATHS.find((p) => p.id === id);
  if (!base) throw new Error(`unknown path ${id}`);
  const na = base.unavailable();
  if (na) {
    console.log(`${id}: ${na}`);
    continue;
  }
  const spec = withMetrics(base);
  const p = await spec.open();
  await using _c = p.cluster;
  const [h0, h1] = p.cluster.hosts;
  const places: [string, string, boolean][] = [
    ["client", p.client.ns, false],
    ["h0", h0.ns, spec.kind === "ours"],
    ["h1", h1.ns, spec.kind === "ours"],
    ["server", p.server.ns, false],
  ];
  const ends = { clientNs: p.client.ns, serverNs: p.server.ns, serverIp: p.server.ip };
  const loads = v.tcp ? v.tcp.split(",").map(Number) : [0];
  for (let r = 0; r < Number(v.rounds) * loads.length; r++) {
    const streams = loads[r % loads.length];
    const before = await Promise.all(places.map(([, ns, m]) => snapshot(ns, m)));
    const running = streams
      ? tcp(ends, Number(v.seconds), streams).then((t) =>
        `TCP ${streams}×: ${(t.bps / 1e9).toFixed(2)} Gb/s, ${t.retransmits} retransmits`
      )
      : udp(ends, Number(v.seconds), Number(v.size), v.rate!).then((u) =>
        `sent ${(u.sentPps / 1e3).toFixed(1)} kpps, received ${(u.pps / 1e3).toFixed(1)} kpps, ` +
        `loss ${(u.loss * 100).toFixed(1)} %`
      );
    // iperf3 runs for a fresh server and client: sample CPU once both exist, for the middle.
    await new Promise((r) => setTimeout(r, 1000));
    const cpu0 = await Promise.all(places.map(([, ns]) => cpuByProcess(ns)));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, (Number(v.seconds) - 2) * 1000));
    const cpu1 = await Promise.all(places.map(([, ns]) => cpuByProcess(ns)));
    const wall = (performance.now() - t0) / 1000;
    const u = await running;
    const after = await Promise.all(places.map(([, ns, m]) => snapshot(ns, m)));
    console.log(`${spec.label}, run ${r + 1}: ${u}`);
    places.forEach(([role], i) => console.log(show(role, delta(before[i], after[i]))));
    const use = places.flatMap(([role], i) =>
      [...cpu1[i]].map(([k, s]) =>
        `${role}/${k} ${((s - (cpu0[i].get(k) ?? s)) / wall).toFixed(2)}`
      )
    );
    console.log(`  CPU (cores, mid-run): ${use.join(", ")}`);
  }
  const pg = await p.cluster.ping(p.client.ns, p.server.ip, {
    count: Number(v.pings),
    interval: 0.01,
    timeout: 3,
    samples: true,
  });
  console.log(
    `  ping: p50 ${percentile(pg.samples, 50).toFixed(3)} ms, p99 ${
      percentile(pg.samples, 99).toFixed(3)
    } ms (${pg.samples.length} replies)`,
  );
}
