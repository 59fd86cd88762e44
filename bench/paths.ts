/**
 * The data paths the benchmark compares, each in a fresh two-host cluster with one container
 * per host (so every row starts clean and tearing a row down is destroying its cluster):
 * the two hand-built references and our backends, the latter only when the registry has them.
 * @module
 */

import { backendKind } from "../lib/daemon/backends.ts";
import { type BackendType, Cluster, type Container } from "../tests/helpers/cluster.ts";
import { sleep, until } from "../tests/helpers/wait.ts";
import { UPSTREAM_FLANNELD, UPSTREAM_PRESENT, UPSTREAM_SKIP } from "../tests/helpers/upstream.ts";
import { buildKernelVxlan, buildRawUnderlay } from "./reference.ts";

/** A path ready to measure: traffic goes from `client` to `server`. */
export interface OpenPath {
  cluster: Cluster;
  client: Container;
  server: Container & { ip: string };
  /** The daemons (ours or upstream's, one per host); empty for the hand-built references. */
  daemonPids: number[];
  /** TUN devices whose TX drops are counted, by host namespace. */
  tuns: { ns: string; dev: string }[];
}

/** What a row is: a hand-built kernel path, upstream's flanneld, or ours. */
export type PathKind = "reference" | "upstream" | "ours";

/** One row of the data-path table. */
export interface PathSpec {
  /** Id used by `--only` and in the JSON. */
  id: string;
  label: string;
  kind: PathKind;
  /** For an upstream row: the id of our row it is compared with. */
  counterpart?: string;
  /** Why the path cannot be measured here, or null when it can. */
  unavailable(): string | null;
  /** Builds the cluster and the path and waits until the server answers pings. */
  open(): Promise<OpenPath>;
}

/** Waits (bounded) until `server` answers a ping from `client`. */
async function reachable(c: Cluster, client: Container, server: string): Promise<void> {
  await until(
    `${client.name} → ${server} to answer`,
    async () => (await c.ping(client.ns, server, { count: 1, timeout: 1 })).ok,
    20_000,
    200,
  );
}

/** Builds `cluster`'s path with `build` (if any) and waits for h0c0 → h1c0; destroys it on failure. */
async function ready(
  cluster: Cluster,
  build: ((c: Cluster) => Promise<void>) | null,
  tunDev: string | null,
): Promise<OpenPath> {
  try {
    if (build) await build(cluster);
    const [client, server] = [cluster.hosts[0].containers[0], cluster.hosts[1].containers[0]];
    if (server.ip === null) throw new Error(`${server.name} has no address`);
    await reachable(cluster, client, server.ip);
    return {
      cluster,
      client,
      server: { ...server, ip: server.ip },
      daemonPids: cluster.hosts.flatMap((h) => h.daemon.pid ?? []),
      tuns: tunDev ? cluster.hosts.map((h) => ({ ns: h.ns, dev: tunDev })) : [],
    };
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
}

const TOPOLOGY = { hosts: 2, containersPerHost: 1 };

/** A hand-built kernel path in a cluster without daemons. */
function reference(id: string, label: string, build: (c: Cluster) => Promise<void>): PathSpec {
  return {
    id,
    label,
    kind: "reference",
    unavailable: () => null,
    open: async () =>
      ready(
        await Cluster.create({ ...TOPOLOGY, backend: "alloc", startDaemons: false }),
        build,
        null,
      ),
  };
}

/** Options of {@link ours}. */
export interface OursOptions {
  /** TUN device whose TX drops are counted. */
  tunDev?: string | null;
  /** Extra `Backend` config fields. */
  extra?: Record<string, unknown>;
  /** The daemon's command line without flags (default: this Deno on main.ts). */
  daemonCommand?: readonly string[];
  /** Extra daemon flags on every host. */
  daemonArgs?: readonly string[];
  /**
   * Start the second host's daemon this long after the first (upstream flanneld started on
   * two hosts at the same instant sometimes never programs the other: a watch race).
   */
  staggerMs?: number;
}

/** A two-host cluster running `backend` with the given daemons, started as {@link OursOptions} says. */
async function daemonCluster(
  backend: BackendType,
  config: Record<string, unknown>,
  { daemonCommand, daemonArgs, staggerMs = 0 }: OursOptions,
): Promise<Cluster> {
  const opts = { ...TOPOLOGY, backend, config, daemonCommand, daemonArgs };
  if (!staggerMs) return await Cluster.create(opts);
  const c = await Cluster.create({ ...opts, startDaemons: false });
  try {
    for (const [i, h] of c.hosts.entries()) {
      if (i > 0) await sleep(staggerMs);
      await c.startDaemon(h);
    }
    return c;
  } catch (e) {
    await c.destroy();
    throw e;
  }
}

/** One of our backends, run by our daemon on both hosts. */
export function ours(
  id: string,
  backend: BackendType,
  label: string,
  opts: OursOptions = {},
): PathSpec {
  const config = { Backend: { Type: backend, ...opts.extra } };
  return {
    id,
    label,
    kind: "ours",
    unavailable: () => backendKind(backend) ? null : "n/a (backend not available)",
    open: async () => ready(await daemonCluster(backend, config, opts), null, opts.tunDev ?? null),
  };
}

/** Why upstream's binary cannot run, or null when it is there and executable. */
export function upstreamUnavailable(): string | null {
  return UPSTREAM_PRESENT ? null : UPSTREAM_SKIP;
}

/** Staggered start: upstream's watch race when two hosts start at the same instant. */
export const UPSTREAM_STAGGER_MS = 2000;

/** Upstream's flanneld on `backend`, both hosts, compared with our row `counterpart`. */
export function upstream(
  id: string,
  backend: BackendType,
  label: string,
  counterpart: string,
  tunDev: string | null = null,
): PathSpec {
  const config = { Backend: { Type: backend } };
  return {
    id,
    label,
    kind: "upstream",
    counterpart,
    unavailable: upstreamUnavailable,
    open: async () =>
      ready(
        await daemonCluster(backend, config, {
          daemonCommand: [UPSTREAM_FLANNELD],
          staggerMs: UPSTREAM_STAGGER_MS,
        }),
        null,
        tunDev,
      ),
  };
}

/** Every data path, references first. */
export const PATHS: readonly PathSpec[] = [
  reference("raw", "raw underlay (static routes)", buildRawUnderlay),
  reference("kernel-vxlan", "kernel VXLAN (hand-built)", buildKernelVxlan),
  ours("udp", "udp", "flanneld udp", { tunDev: "flannel0" }),
  // One syscall per packet, no TSO/GSO/GRO: what the offloads (on by default) gain.
  ours("udp-nooffload", "udp", "flanneld udp, offloads off", {
    tunDev: "flannel0",
    extra: { Offloads: false },
  }),
  ours("vxlan", "vxlan", "flanneld vxlan"),
  // The vxlan backend turns TX checksum offload off only where needed (kernel < 5.7 or
  // behind NAT); this row forces that workaround to show what it costs.
  ours("vxlan-nocsum", "vxlan", "flanneld vxlan, TX csum offload forced off", {
    extra: { DisableTxChecksumOffload: true },
  }),
  ours("host-gw", "host-gw", "flanneld host-gw"),
  upstream("upstream-udp", "udp", "upstream v0.20.2 udp", "udp", "flannel0"),
  upstream("upstream-vxlan", "vxlan", "upstream v0.20.2 vxlan", "vxlan"),
  upstream("upstream-host-gw", "host-gw", "upstream v0.20.2 host-gw", "host-gw"),
];
