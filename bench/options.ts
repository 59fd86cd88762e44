/**
 * Command-line options of `deno task bench`.
 * @module
 */

import { parseArgs } from "node:util";

/** What one benchmark run measures and how long. */
export interface BenchOptions {
  /** Seconds per iperf3 run. */
  seconds: number;
  /**
   * Row ids to run (`raw`, `kernel-vxlan`, `udp`, `udp-nooffload`, `vxlan`, `vxlan-nocsum`,
   * `host-gw`, `upstream-udp`, `upstream-vxlan`, `upstream-host-gw`, `control-plane`,
   * `upstream-control-plane`); null: all.
   */
  only: Set<string> | null;
  /** iperf3 `-b` for the 64-byte UDP run (payload bits per second, iperf3 suffixes allowed). */
  udpRate: string;
  /** Echo requests for the RTT percentiles (sent every 10 ms). */
  pings: number;
  /** Peer counts of the control-plane benchmark. */
  peerCounts: number[];
  /** Its write modes: etcd puts in flight at a time (1 = one after the other). */
  cpParallel: number[];
  /** Force the control-plane backend(s) instead of choosing by availability. */
  cpBackends: string[] | null;
  /** Where to write the JSON results (a directory). */
  outDir: string;
}

const USAGE = `usage: deno task bench [--seconds=5] [--quick]
                       [--only=raw,kernel-vxlan,udp,udp-nooffload,vxlan,vxlan-nocsum,host-gw,
                               upstream-udp,upstream-vxlan,upstream-host-gw,
                               control-plane,upstream-control-plane]
                       [--udp-rate=100M] [--pings=200] [--peers=10,100,1000] [--cp-parallel=1,32]
                       [--cp-backend=vxlan,host-gw,udp]
                       [--out=bench/results]`;

function list(s: string | undefined): string[] | null {
  return s ? s.split(",").map((x) => x.trim()).filter((x) => x !== "") : null;
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) {
    throw new Error(`--${name} must be a positive number\n${USAGE}`);
  }
  return v;
}

/** Parses `args`; `--quick` means 1-second runs and 50 pings. Throws with the usage on bad input. */
export function parseOptions(args: string[]): BenchOptions {
  const { values: v } = parseArgs({
    args,
    options: {
      seconds: { type: "string" },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      "udp-rate": { type: "string", default: "100M" },
      pings: { type: "string" },
      peers: { type: "string", default: "10,100,1000" },
      "cp-parallel": { type: "string", default: "1,32" },
      "cp-backend": { type: "string" },
      out: { type: "string", default: new URL("./results", import.meta.url).pathname },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (v.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  return {
    seconds: positive("seconds", Number(v.seconds ?? (v.quick ? 1 : 5))),
    only: list(v.only) ? new Set(list(v.only)) : null,
    udpRate: v["udp-rate"]!,
    pings: positive("pings", Math.round(Number(v.pings ?? (v.quick ? 50 : 200)))),
    peerCounts: list(v.peers)!.map((n) => positive("peers", Math.round(Number(n)))),
    cpParallel: list(v["cp-parallel"])!.map((n) => positive("cp-parallel", Math.round(Number(n)))),
    cpBackends: list(v["cp-backend"]),
    outDir: v.out!,
  };
}

/** Whether row `id` is selected. */
export function selected(o: BenchOptions, id: string): boolean {
  return o.only === null || o.only.has(id);
}
