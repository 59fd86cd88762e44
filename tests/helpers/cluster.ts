/**
 * A multi-host flannel cluster in network namespaces, for tests, benchmarks and the demo.
 *
 * Topology (every name starts with a per-run prefix `fl<4 hex>-<pid>`; nothing at all is
 * configured in the root namespace, so parallel runs cannot collide):
 *
 *   <p>-sw     "switch": bridge br0 with the gateway 192.168.100.1/24, forwards nowhere
 *   <p>-etcd   eth0 192.168.100.2/24, a real etcd on :2379
 *   <p>-h<i>   eth0 192.168.100.(10+i)/24, default route via the switch, ip_forward=1,
 *              our daemon (or upstream's, see `upstreamHosts`), bridge cni0 =
 *              FLANNEL_SUBNET with MTU = FLANNEL_MTU, veth<j> ports for its containers
 *              (no cni0 with `cni0: false`, when Docker's docker0 takes the subnet)
 *   <p>-h<i>c<j>  a "container": eth0 = <subnet>.(2+j), default route via <subnet>.1
 *
 * With `ipv6: true` the underlay is dual-stack: every namespace on the switch also gets
 * 2001:db8::<n>/64 (the gateway ::1, etcd ::2, host i ::(10+i), no DAD), hosts forward
 * IPv6, the network config gets `EnableIPv6` with `IPv6Network` fd42::/56, and cni0 and
 * the containers also get FLANNEL_IPV6_SUBNET's ::1 and ::(2+j). An IPv6-only config
 * (`EnableIPv4: false`) leaves the containers' IPv4 side unconfigured.
 *
 * Teardown kills every process in those namespaces and deletes them, also when the
 * creating process is interrupted; `cleanup.ts` removes what a crashed run left.
 * @module
 */

import { formatIP4, formatIP6, parseCIDR4, parseCIDR6 } from "../../lib/core/ip.ts";
import { cleanupStale, removeRunSync } from "./cleanup.ts";
import { Daemon, DEFAULT_DAEMON_COMMAND } from "./daemon.ts";
import { EtcdServer } from "./etcd.ts";
import { guardExit } from "./exit_guard.ts";
import {
  addBridge,
  addNetns,
  addVeth,
  defaultRoute,
  defaultRoute6,
  deleteNetnsSync,
  type ExecResult,
  linkUp,
  nsExec,
  setAddr,
  setAddr6,
  setSysctl,
  setSysctl6,
} from "./netns.ts";
import { newRunPrefix, writeMarker } from "./owner.ts";
import { ping, type PingOptions, type PingPair, pingPairs, type PingResult } from "./ping.ts";
import { UPSTREAM_COMMAND } from "./upstream.ts";
import { sleep } from "./wait.ts";

/** Backend types the harness knows how to configure. */
export type BackendType = "udp" | "vxlan" | "host-gw" | "alloc" | "extension" | "aws-vpc" | "gce";

/** Whose flanneld runs on a host: ours (main.ts) or upstream's binary (`upstream.ts`). */
export type Flavour = "ours" | "upstream";

/** Options for {@link Cluster.create}. */
export interface ClusterOptions {
  /** Number of hosts. */
  hosts: number;
  /** "Containers" per host (default 0). */
  containersPerHost?: number;
  backend: BackendType;
  /** Overlay network (default 10.5.0.0/16). */
  network?: string;
  /** Merged over `{Network, Backend: {Type}}` before it is written to etcd. */
  config?: Record<string, unknown>;
  /** Start our daemon on every host and wait for its subnet.env (default true). */
  startDaemons?: boolean;
  /** Extra flanneld arguments, for every host or per host name (e.g. a short TTL on one). */
  daemonArgs?: readonly string[] | ((host: string) => readonly string[]);
  /**
   * The daemon's command line without flags, for all hosts or per host name (e.g. an
   * upstream flanneld on one host for interop); default our main.ts.
   */
  daemonCommand?: readonly string[] | ((host: string) => readonly string[]);
  /** Dual-stack underlay and an IPv6-enabled network config (see the module comment). */
  ipv6?: boolean;
  /**
   * Indexes of the hosts that run upstream's flanneld (`UPSTREAM_FLANNELD`) instead of
   * ours: a mixed cluster. Their `daemonArgs` must be flags upstream knows.
   */
  upstreamHosts?: readonly number[];
  /**
   * How {@link Cluster.create} starts the daemons: all spawned in the same instant (default),
   * or, given a number of ms, one after another in host order, each that long after the
   * previous one wrote its subnet.env (so its lease and watch exist before the next starts).
   */
  staggerMs?: number;
  /**
   * Configure the host's cni0 bridge from subnet.env as a CNI bridge plugin would (default
   * true). False when something else owns the subnet's bridge, e.g. Docker's docker0.
   */
  cni0?: boolean;
}

/** A "container" namespace attached to its host's cni0. */
export interface Container {
  /** Short name, e.g. `h0c1`. */
  name: string;
  /** Name of its host, e.g. `h0`. */
  host: string;
  /** Namespace name. */
  ns: string;
  /** Address on eth0; null until the host's subnet is known (or in an IPv6-only network). */
  ip: string | null;
  /** IPv6 address on eth0; null until the host's IPv6 subnet is known (or without IPv6). */
  ip6: string | null;
}

/** One host namespace. */
export interface Host {
  /** Short name, e.g. `h0`. */
  name: string;
  index: number;
  /** Namespace name. */
  ns: string;
  /** Underlay address on eth0. */
  ip: string;
  /** Underlay IPv6 address on eth0 (dual-stack underlay only). */
  ip6: string | null;
  /** Per-host temp dir (subnet.env, daemon.log). */
  dir: string;
  containers: Container[];
  daemon: Daemon;
  /** Whose flanneld runs here. */
  flavour: Flavour;
}

/** A host given by object, name (`h1`) or index. */
export type HostRef = Host | string | number;

/** Underlay addressing; these addresses exist only inside the cluster's namespaces. */
export const UNDERLAY = {
  gateway: "192.168.100.1",
  etcd: "192.168.100.2",
  prefixLen: 24,
  /** Underlay address of host `index`. */
  host: (index: number) => `192.168.100.${10 + index}`,
  /** The same on the dual-stack underlay's IPv6 side (2001:db8::/64, for documentation). */
  gateway6: "2001:db8::1",
  etcd6: "2001:db8::2",
  prefixLen6: 64,
  host6: (index: number) => `2001:db8::${10 + index}`,
};

/** The IPv6 network of `ipv6: true` clusters unless the config names another. */
export const IPV6_NETWORK = "fd42::/56";

/** Default etcd key of the network config. */
export const CONFIG_KEY = "/coreos.com/network/config";
/** Default etcd prefix of the leases. */
export const SUBNETS_PREFIX = "/coreos.com/network/subnets";

const BRIDGE = "br0";

/**
 * Like Promise.all, but rejects only once every promise has settled, so that teardown
 * after a failure does not race setup steps still creating namespaces.
 */
export async function allSettled(ps: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/** A running cluster; create with {@link Cluster.create}, always end with {@link destroy}. */
export class Cluster {
  readonly hosts: Host[] = [];
  #etcd: EtcdServer | null = null;
  #unguard: () => void;
  #destroyed = false;
  #nextIndex = 0;

  private constructor(
    /** Per-run prefix of every namespace name. */
    readonly prefix: string,
    /** Temp dir holding the per-host dirs. */
    readonly dir: string,
    private readonly opts: ClusterOptions,
  ) {
    this.#unguard = guardExit(() => removeRunSync(prefix));
  }

  /** Builds the topology, starts etcd, writes the config and (by default) the daemons. */
  static async create(opts: ClusterOptions): Promise<Cluster> {
    cleanupStale();
    const prefix = newRunPrefix();
    const dir = await Deno.makeTempDir({ prefix: `${prefix}-` });
    writeMarker(prefix, [dir]);
    const c = new Cluster(prefix, dir, opts);
    try {
      await c.#createUnderlay();
      await c.etcd.ctl("put", CONFIG_KEY, JSON.stringify(c.networkConfig));
      for (let i = 0; i < opts.hosts; i++) c.hosts.push(c.#newHost());
      await allSettled(c.hosts.map((h) => c.#buildHost(h)));
      if (opts.startDaemons ?? true) await c.#startAll();
      return c;
    } catch (e) {
      await c.destroy();
      throw e;
    }
  }

  /** Starts every host's daemon, together or staggered (see {@link ClusterOptions.staggerMs}). */
  async #startAll(): Promise<void> {
    const stagger = this.opts.staggerMs;
    if (stagger === undefined) {
      // startDaemon spawns synchronously before its first await: all in the same instant.
      await allSettled(this.hosts.map((h) => this.startDaemon(h)));
      return;
    }
    for (const [i, h] of this.hosts.entries()) {
      if (i > 0) await sleep(stagger);
      await this.startDaemon(h);
    }
  }

  /** The etcd server (in namespace `<prefix>-etcd`); `etcd.ctl(…)` runs etcdctl there. */
  get etcd(): EtcdServer {
    if (!this.#etcd) throw new Error("etcd not started");
    return this.#etcd;
  }

  /** The config written to etcd. */
  get networkConfig(): Record<string, unknown> {
    return {
      Network: this.opts.network ?? "10.5.0.0/16",
      ...(this.opts.ipv6 ? { EnableIPv6: true, IPv6Network: IPV6_NETWORK } : {}),
      Backend: { Type: this.opts.backend },
      ...this.opts.config,
    };
  }

  /** Namespace of the switch. */
  get switchNs(): string {
    return `${this.prefix}-sw`;
  }

  /** Namespace running etcd. */
  get etcdNs(): string {
    return `${this.prefix}-etcd`;
  }

  /** Looks a host up by object, name or index; throws when unknown. */
  host(ref: HostRef): Host {
    const h = typeof ref === "object"
      ? ref
      : this.hosts.find((x) => x.name === ref || x.index === ref);
    if (!h || !this.hosts.includes(h)) {
      throw new Error(`no host ${typeof ref === "object" ? ref.name : ref}`);
    }
    return h;
  }

  /** Every container of every host. */
  containers(): Container[] {
    return this.hosts.flatMap((h) => h.containers);
  }

  async #createUnderlay(): Promise<void> {
    await addNetns(this.switchNs);
    await setSysctl(this.switchNs, "ip_forward", "0");
    await addBridge(this.switchNs, BRIDGE);
    await setAddr(this.switchNs, BRIDGE, `${UNDERLAY.gateway}/${UNDERLAY.prefixLen}`);
    if (this.opts.ipv6) {
      await setAddr6(this.switchNs, BRIDGE, `${UNDERLAY.gateway6}/${UNDERLAY.prefixLen6}`);
    }
    await addNetns(this.etcdNs);
    await this.#plugIntoSwitch(this.etcdNs, "etcd", UNDERLAY.etcd, UNDERLAY.etcd6);
    this.#etcd = await EtcdServer.start({
      netns: this.etcdNs,
      host: UNDERLAY.etcd,
      clientPort: 2379,
      peerPort: 2380,
    });
    writeMarker(this.prefix, [this.dir, this.#etcd.dir]);
  }

  /**
   * Connects `ns` to the switch: eth0 with `ip`, default route via the gateway; on a
   * dual-stack underlay also `ip6` and an IPv6 default route.
   */
  async #plugIntoSwitch(ns: string, port: string, ip: string, ip6: string): Promise<void> {
    await addVeth(ns, "eth0", this.switchNs, port);
    await linkUp(this.switchNs, port, { master: BRIDGE });
    await setAddr(ns, "eth0", `${ip}/${UNDERLAY.prefixLen}`);
    if (this.opts.ipv6) await setAddr6(ns, "eth0", `${ip6}/${UNDERLAY.prefixLen6}`);
    await linkUp(ns, "eth0");
    await defaultRoute(ns, UNDERLAY.gateway);
    if (this.opts.ipv6) await defaultRoute6(ns, UNDERLAY.gateway6);
  }

  #newHost(): Host {
    const index = this.#nextIndex++;
    const name = `h${index}`;
    const ns = `${this.prefix}-${name}`;
    const dir = `${this.dir}/${name}`;
    const subnetFile = `${dir}/subnet.env`;
    const given = this.opts.daemonArgs ?? [];
    const extra = typeof given === "function" ? given(name) : given;
    // eth0 unless the test chooses the interface itself.
    const chooses = extra.some((a) => /^--?iface(-regex|-can-reach)?[= ]?/.test(a));
    const args = [
      `--etcd-endpoints=${this.etcd.endpoint}`,
      `--subnet-file=${subnetFile}`,
      ...(chooses ? [] : ["--iface=eth0"]),
      ...extra,
    ];
    const containers = Array.from({ length: this.opts.containersPerHost ?? 0 }, (_, j) => ({
      name: `${name}c${j}`,
      host: name,
      ns: `${ns}c${j}`,
      ip: null,
      ip6: null,
    }));
    const flavour: Flavour = this.opts.upstreamHosts?.includes(index) ? "upstream" : "ours";
    const cmd = flavour === "upstream"
      ? UPSTREAM_COMMAND
      : this.opts.daemonCommand ?? DEFAULT_DAEMON_COMMAND;
    const daemon = new Daemon(
      ns,
      typeof cmd === "function" ? cmd(name) : cmd,
      args,
      subnetFile,
      `${dir}/daemon.log`,
    );
    const ip6 = this.opts.ipv6 ? UNDERLAY.host6(index) : null;
    return { name, index, ns, ip: UNDERLAY.host(index), ip6, dir, containers, daemon, flavour };
  }

  async #buildHost(h: Host): Promise<void> {
    await Deno.mkdir(h.dir, { recursive: true });
    await addNetns(h.ns);
    await this.#plugIntoSwitch(h.ns, h.name, h.ip, UNDERLAY.host6(h.index));
    await setSysctl(h.ns, "ip_forward", "1");
    if (this.opts.ipv6) await setSysctl6(h.ns, "conf.all.forwarding", "1");
    await allSettled(h.containers.map(async (c, j) => {
      await addNetns(c.ns);
      await addVeth(c.ns, "eth0", h.ns, `veth${j}`);
    }));
  }

  /**
   * Configures the host's cni0 as a CNI bridge plugin would from subnet.env: `subnet`
   * (e.g. `10.5.52.1/24`) on cni0, containers at .2, .3, … with default route via .1, all
   * with MTU `mtu`; the same for `subnet6` (e.g. `fd42:0:0:5::1/64`: containers at ::2, ::3,
   * …) when given. An empty `subnet` (IPv6-only) configures IPv6 alone. Idempotent; a
   * changed subnet renumbers the containers.
   */
  async configureHostSubnet(
    ref: HostRef,
    subnet: string,
    mtu = 1500,
    subnet6?: string,
  ): Promise<void> {
    const h = this.host(ref);
    const net = subnet ? parseCIDR4(subnet) : null;
    const net6 = subnet6 ? parseCIDR6(subnet6) : null;
    if ((subnet && !net) || (subnet6 && !net6) || (!net && !net6)) {
      throw new Error(`bad subnet ${subnet} ${subnet6 ?? ""}`);
    }
    await addBridge(h.ns, "cni0");
    if (net) await setAddr(h.ns, "cni0", subnet);
    if (net6) await setAddr6(h.ns, "cni0", subnet6!);
    await linkUp(h.ns, "cni0", { mtu });
    await Promise.all(h.containers.map(async (c, j) => {
      await linkUp(h.ns, `veth${j}`, { master: "cni0", mtu });
      if (net) {
        const ip = formatIP4(net.ip + 2 + j);
        await setAddr(c.ns, "eth0", `${ip}/${net.prefix}`);
        c.ip = ip;
      }
      if (net6) {
        const ip6 = formatIP6(net6.ip + 2n + BigInt(j));
        await setAddr6(c.ns, "eth0", `${ip6}/${net6.prefix}`);
        c.ip6 = ip6;
      }
      await linkUp(c.ns, "eth0", { mtu });
      if (net) await defaultRoute(c.ns, subnet.split("/")[0]);
      if (net6) await defaultRoute6(c.ns, subnet6!.split("/")[0]);
    }));
  }

  /**
   * Starts the host's daemon, waits for the subnet.env it writes and (unless `cni0: false`)
   * configures cni0 and the containers from it; returns subnet.env parsed.
   */
  async startDaemon(ref: HostRef, timeoutMs = 30_000): Promise<Record<string, string>> {
    const h = this.host(ref);
    h.daemon.start();
    const env = await h.daemon.waitSubnetEnv(timeoutMs);
    if (this.opts.cni0 ?? true) {
      await this.configureHostSubnet(
        h,
        env.FLANNEL_SUBNET ?? "",
        Number(env.FLANNEL_MTU) || 1500,
        env.FLANNEL_IPV6_SUBNET,
      );
    }
    return env;
  }

  /** Signals the host's daemon and waits for it to exit; returns its status (null if not running). */
  stopDaemon(ref: HostRef, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus | null> {
    return this.host(ref).daemon.stop(signal);
  }

  /** Stops the daemon (SIGTERM) and starts it again; returns the rewritten subnet.env. */
  async restartDaemon(ref: HostRef): Promise<Record<string, string>> {
    await this.stopDaemon(ref);
    return await this.startDaemon(ref);
  }

  /** The host daemon's output so far. */
  daemonLog(ref: HostRef): string {
    return this.host(ref).daemon.log();
  }

  /** The host's subnet.env, parsed; null when not written. */
  hostSubnetEnv(ref: HostRef): Record<string, string> | null {
    return this.host(ref).daemon.subnetEnv();
  }

  /** Adds a host joining later (with the same number of containers); starts its daemon unless told not to. */
  async addHost(opts: { startDaemon?: boolean } = {}): Promise<Host> {
    const h = this.#newHost();
    this.hosts.push(h);
    await this.#buildHost(h);
    if (opts.startDaemon ?? this.opts.startDaemons ?? true) await this.startDaemon(h);
    return h;
  }

  /** Stops the host's daemon with `signal` and deletes the host and its containers. */
  async removeHost(ref: HostRef, signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const h = this.host(ref);
    await h.daemon.stop(signal);
    for (const c of h.containers) deleteNetnsSync(c.ns);
    deleteNetnsSync(h.ns);
    this.hosts.splice(this.hosts.indexOf(h), 1);
  }

  /** Runs a command in namespace `ns` (bounded to 30 s). */
  exec(ns: string, cmd: string, ...args: string[]): Promise<ExecResult> {
    return nsExec(ns, cmd, args);
  }

  /** Pings `toIp` from namespace `fromNs`. */
  ping(fromNs: string, toIp: string, opts?: PingOptions): Promise<PingResult> {
    return ping(fromNs, toIp, opts);
  }

  /**
   * Pings every container from every other one, over IPv4 or (`family` 6) IPv6; throws if a
   * container has no address of that family yet.
   */
  pingAll(opts?: PingOptions, family: 4 | 6 = 4): Promise<PingPair[]> {
    const eps = this.containers().map((c) => {
      const ip = family === 6 ? c.ip6 : c.ip;
      if (ip === null) {
        throw new Error(`container ${c.name} has no IPv${family} address (host subnet unknown)`);
      }
      return { name: c.name, ns: c.ns, ip };
    });
    return pingPairs(eps, opts);
  }

  /** The leases in etcd as `{key, value}` with the value JSON-parsed. */
  async leases(): Promise<{ key: string; value: Record<string, unknown> }[]> {
    const lines = (await this.etcd.ctl("get", "--prefix", SUBNETS_PREFIX)).split("\n");
    const out = [];
    for (let i = 0; i + 1 < lines.length; i += 2) {
      out.push({ key: lines[i], value: JSON.parse(lines[i + 1]) });
    }
    return out;
  }

  /** Kills daemons and etcd, deletes every namespace of the run and its temp dirs. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await Promise.all(this.hosts.map((h) => h.daemon.stop("SIGKILL")));
    await this.#etcd?.destroy();
    removeRunSync(this.prefix);
    this.#unguard();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
