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

/** What the daemons cost while the TCP runs moved their bytes. */
export interface DaemonCost {
  /** CPU seconds of all daemons (both hosts) during the TCP runs. */
  cpuSeconds: number;
  /** GB (1e9 bytes) received during those runs. */
  gb: number;
  cpuSecondsPerGB: number;
  /** Largest VmHWM among the daemons after every run, KiB. */
  peakRssKiB: number;
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
  const udp64 = await udp(ends, o.seconds, UDP_PAYLOAD, o.udpRate);
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
  };
  if (p.daemonPids.length) {
    const gb = (tcp1.bytes + tcp4.bytes) / 1e9;
    result.daemon = {
      cpuSeconds: cpu,
      gb,
      cpuSecondsPerGB: cpu / gb,
      peakRssKiB: Math.max(...p.daemonPids.map((pid) => memory(pid).hwmKiB)),
    };
  }
  if (p.tuns.length) result.tunTxDropped = (await totalTxDropped(p)) - drops0;
  return result;
}
