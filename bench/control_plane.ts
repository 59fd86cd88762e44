/**
 * Control-plane benchmark: one daemon host, N fake peer leases written straight into etcd
 * (no devices behind them), and the time until the daemon has programmed all of them, with
 * per-lease latency from its put to its programmed state, then the daemon's memory.
 * @module
 */

import { formatIP4, parseCIDR4, parseIP4 } from "../lib/core/ip.ts";
import { encodeLeaseAttrs } from "../lib/values/lease.ts";
import { type BackendType, Cluster, SUBNETS_PREFIX } from "../tests/helpers/cluster.ts";
import { sleep, until } from "../tests/helpers/wait.ts";
import { type LineProcess, nsDeno } from "../tests/helpers/line_process.ts";
import { ip } from "../tests/helpers/netns.ts";
import { memory, percentile } from "./proc.ts";
import { KernelWatch, LogWatch, type Peer, type ProgramWatch } from "./watch.ts";

/** One round of N peers. */
export interface CpRound {
  peers: number;
  /** Puts in flight at a time (1: one after the other). */
  parallel: number;
  /** From the first put to the last peer programmed, ms; null when not all were. */
  allProgrammedMs: number | null;
  /** Per-lease put → programmed latency percentiles, ms. */
  p50Ms: number;
  p99Ms: number;
  /** Time the writer took to put all N, ms. */
  writeMs: number;
  /** From the last put to the last peer programmed, ms: how far the daemon lags the writes. */
  lagMs: number | null;
  /** Peers not programmed by the deadline. */
  missing: number;
}

/** The control-plane results of one backend. */
export interface CpResult {
  backend: string;
  /** Whose daemon: ours, or upstream's flanneld. */
  daemon: "ours" | "upstream";
  /** How "programmed" was detected. */
  method: string;
  rounds: CpRound[];
  /** Daemon RSS with no peers, and with the largest N programmed (KiB). */
  rssIdleKiB: number;
  rssPeakPeersKiB: number | null;
  peakPeers: number;
}

/** Overlay of the control-plane cluster: room for thousands of /24 subnets. */
const NETWORK = "10.0.0.0/8";
const FIRST_PEER_SUBNET = parseIP4("10.200.0.0")!;
/** Peers' public IPs; an on-link route for it on the host makes host-gw routes valid. */
const PEER_UNDERLAY = "172.16.0.0/12";

/** `n` fake peers for `backend`, avoiding the daemon's own subnet `own`. */
export function makePeers(n: number, backend: string, own: string): Peer[] {
  const peers: Peer[] = [];
  for (let j = 0; peers.length < n; j++) {
    const network = formatIP4(FIRST_PEER_SUBNET + j * 256);
    if (`${network}/24` === own) continue;
    const publicIP = formatIP4(parseCIDR4(PEER_UNDERLAY)!.ip + j + 1);
    const mac = backend === "vxlan"
      ? `0e:00:00:${
        [16, 8, 0].map((s) => ((j >> s) & 255).toString(16).padStart(2, "0")).join(":")
      }`
      : null;
    const value = encodeLeaseAttrs({
      publicIP: parseIP4(publicIP)!,
      publicIPv6: null,
      backendType: backend === "udp" ? undefined : backend,
      backendData: mac ? { VNI: 1, VtepMAC: mac } : undefined,
    });
    peers.push({
      key: `${SUBNETS_PREFIX}/${network}-24`,
      value,
      subnet: `${network}/24`,
      network,
      publicIP,
      mac,
    });
  }
  return peers;
}

/**
 * Writes `peers` and waits (bounded) for them to be programmed; measures how long that took.
 * Also returns the peers seen programmed (only their removal can be seen later).
 */
async function round(
  writer: LineProcess,
  watch: ProgramWatch,
  peers: Peer[],
  parallel: number,
): Promise<[CpRound, Peer[]]> {
  watch.reset(peers);
  await writer.send(JSON.stringify({ put: peers.map((p) => [p.key, p.value]), parallel }));
  const sent: number[] = JSON.parse((await writer.waitLine("done ", 120_000)).slice(5));
  const first = Math.min(...sent);
  const writeMs = Date.now() - first; // includes the last put's round trip
  let done = new Map<string, number>();
  await until(
    `${peers.length} peers programmed`,
    () => (done = watch.programmed()).size === peers.length,
    30_000 + peers.length * 20,
  ).catch(() => {}); // reported as missing
  const lat = peers.flatMap((p, i) => done.has(p.key) ? [done.get(p.key)! - sent[i]] : []);
  const last = done.size === peers.length ? Math.max(...done.values()) : null;
  const lastSent = Math.max(...sent);
  return [{
    peers: peers.length,
    parallel,
    allProgrammedMs: last === null ? null : last - first,
    lagMs: last === null ? null : last - lastSent,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    writeMs,
    missing: peers.length - done.size,
  }, peers.filter((p) => done.has(p.key))];
}

/**
 * Deletes `peers` and waits (bounded) until the daemon has removed those of them it had
 * programmed (`programmed`).
 */
async function clear(
  writer: LineProcess,
  watch: ProgramWatch,
  peers: Peer[],
  programmed: Peer[],
): Promise<void> {
  watch.reset(programmed);
  await writer.send(JSON.stringify({ del: peers.map((p) => p.key) }));
  await writer.waitLine("done ", 120_000);
  await until(
    `${programmed.length} peers removed`,
    () => watch.removed(),
    30_000 + peers.length * 20,
  ).catch((e) => console.error(`control plane: ${e.message}; going on`));
}

/** How to detect programming for `backend`: kernel state when it programs any. */
function watchFor(backend: BackendType, c: Cluster): Promise<ProgramWatch> {
  const h = c.hosts[0];
  if (backend === "vxlan" || backend === "host-gw") {
    return KernelWatch.start(h.ns, backend === "vxlan");
  }
  return Promise.resolve(new LogWatch(() => c.daemonLog(h)));
}

/**
 * Runs a round per peer count in `counts` and per write mode in `parallels` (puts in flight)
 * with `backend` on a fresh one-host cluster.
 */
export async function benchControlPlane(
  backend: BackendType,
  counts: number[],
  parallels: number[],
  note: (what: string) => void,
  daemonCommand?: readonly string[],
): Promise<CpResult> {
  await using c = await Cluster.create({ hosts: 1, backend, network: NETWORK, daemonCommand });
  const h = c.hosts[0];
  const pid = h.daemon.pid!;
  await ip(h.ns, "route", "add", PEER_UNDERLAY, "dev", "eth0");
  const own = c.hostSubnetEnv(h)!.FLANNEL_SUBNET.replace(/\.1\//, ".0/");
  const writerMain = new URL("./lease_writer.ts", import.meta.url).pathname;
  const writer = nsDeno("lease writer", c.etcdNs, writerMain, c.etcd.endpoint);
  const watch = await watchFor(backend, c);
  try {
    await writer.waitLine("ready", 30_000);
    await sleep(1000); // let start-up settle before the idle reading
    const result: CpResult = {
      backend,
      daemon: daemonCommand ? "upstream" : "ours",
      method: watch.method,
      rounds: [],
      rssIdleKiB: memory(pid).rssKiB,
      rssPeakPeersKiB: null,
      peakPeers: Math.max(...counts),
    };
    for (const parallel of parallels) {
      for (const n of counts) {
        note(`${n} peers, ${parallel} put(s) in flight`);
        const peers = makePeers(n, backend, own);
        const [r, programmed] = await round(writer, watch, peers, parallel);
        result.rounds.push(r);
        if (n === result.peakPeers) result.rssPeakPeersKiB = memory(pid).rssKiB;
        await clear(writer, watch, peers, programmed);
      }
    }
    return result;
  } finally {
    await watch.close();
    await writer.kill();
  }
}
