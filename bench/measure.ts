/**
 * Measures one open data path: TCP with 1 and 4 streams, 64-byte UDP packets per second,
 * ping RTT percentiles, and for our backends the daemons' CPU per GB moved, their peak RSS
 * and the TUN TX drops seen meanwhile.
 * @module
 */

import { ipJSON } from "../tests/helpers/netlink_ns.ts";
import { tcp, type TcpResult, udp, type UdpResult } from "./iperf.ts";
import type { BenchOptions } from "./options.ts";
import type { OpenPath } from "./paths.ts";
import { cpuSeconds, memory, percentile } from "./proc.ts";
import { type Counters, delta, isLoss, snapshot } from "./counters.ts";
import { type MemoryBreakdown, memoryBreakdown } from "./memory.ts";

/** What the daemons cost while the TCP runs moved their bytes. */
export interface DaemonCost {
  /** CPU seconds of all daemons (both hosts) during the TCP runs. */
  cpuSeconds: number;
  /** GB (1e9 bytes) received during those runs. */
  gb: number;
  cpuSecondsPerGB: number;
  /** Largest VmHWM among the daemons after every run, KiB. */
  peakRssKiB: number;
  /** Where the resident memory of the daemon with the largest peak is, after every run. */
  memory: MemoryBreakdown;
}

/** Everything measured on one path. */
export interface PathResult {
  tcp1: TcpResult;
  tcp4: TcpResult;
  udp64: UdpResult;
  rtt: { p50: number; p99: number; loss: number; count: number };
  /** Only for our backends. */
  daemon?: DaemonCost;
  /** Sum over the hosts' TUN devices; only for backends with one. */
  tunTxDropped?: number;
  /**
   * Kernel counters that count lost packets, changed during the UDP run, by place: `client`
   * and `server` containers, sending host `h0`, receiving host `h1`.
   */
  udpLosses: Record<string, Counters>;
}

/** Payload size of the UDP packet-rate run. */
export const UDP_PAYLOAD = 64;

/** TX drops of `dev` in `ns` (the kernel's queue-full drops for a TUN). */
async function txDropped(ns: string, dev: string): Promise<number> {
  const [link] = await ipJSON(ns, "-s", "link", "show", "dev", dev);
  return Number(link?.stats64?.tx?.dropped ?? 0);
}

async function totalTxDropped(p: OpenPath): Promise<number> {
  const counts = await Promise.all(p.tuns.map((t) => txDropped(t.ns, t.dev)));
  return counts.reduce((a, b) => a + b, 0);
}

function totalCpu(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** Counters of every place, by name. */
async function snapshotAll(places: Record<string, string>): Promise<Record<string, Counters>> {
  const entries = await Promise.all(
    Object.entries(places).map(async ([k, ns]) => [k, await snapshot(ns)] as const),
  );
  return Object.fromEntries(entries);
}

/** Runs every measurement on `p`, one after the other; `note` reports progress. */
export async function measurePath(
  p: OpenPath,
  o: BenchOptions,
  note: (what: string) => void,
): Promise<PathResult> {
  const ends = { clientNs: p.client.ns, serverNs: p.server.ns, serverIp: p.server.ip };
  const drops0 = await totalTxDropped(p);
  const cpu0 = totalCpu(p.daemonPids);
  note("TCP 1 stream");
  const tcp1 = await tcp(ends, o.seconds, 1);
  note("TCP 4 streams");
  const tcp4 = await tcp(ends, o.seconds, 4);
  const cpu = totalCpu(p.daemonPids) - cpu0;
  note(`UDP ${UDP_PAYLOAD} B at ${o.udpRate}`);
  const places = {
    client: p.client.ns,
    h0: p.cluster.hosts[0].ns,
    h1: p.cluster.hosts[1].ns,
    server: p.server.ns,
  };
  const before = await snapshotAll(places);
  const udp64 = await udp(ends, o.seconds, UDP_PAYLOAD, o.udpRate);
  const after = await snapshotAll(places);
  const udpLosses: Record<string, Counters> = {};
  for (const k of Object.keys(places)) {
    udpLosses[k] = Object.fromEntries(
      Object.entries(delta(before[k], after[k])).filter(([n, d]) => isLoss(n) && d > 0),
    );
  }
  note(`${o.pings} pings`);
  const pg = await p.cluster.ping(p.client.ns, p.server.ip, {
    count: o.pings,
    interval: 0.01,
    timeout: 3, // also pads ping's overall deadline: 10 ms intervals run late on a busy VM
    samples: true,
  });
  const result: PathResult = {
    tcp1,
    tcp4,
    udp64,
    rtt: {
      p50: percentile(pg.samples, 50),
      p99: percentile(pg.samples, 99),
      loss: pg.loss,
      count: pg.samples.length,
    },
    udpLosses,
  };
  if (p.daemonPids.length) {
    const gb = (tcp1.bytes + tcp4.bytes) / 1e9;
    const peaks = p.daemonPids.map((pid) => memory(pid).hwmKiB);
    result.daemon = {
      cpuSeconds: cpu,
      gb,
      cpuSecondsPerGB: cpu / gb,
      peakRssKiB: Math.max(...peaks),
      memory: memoryBreakdown(p.daemonPids[peaks.indexOf(Math.max(...peaks))]),
    };
  }
  if (p.tuns.length) result.tunTxDropped = (await totalTxDropped(p)) - drops0;
  return result;
}
