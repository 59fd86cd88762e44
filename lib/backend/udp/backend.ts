/**
 * The `udp` backend (upstream's, same wire format): a TUN device `flannel0` carrying the whole overlay
 * network, and a userspace data path that puts each IPv4 packet, unchanged, into one UDP
 * datagram to the destination subnet's host, at the locally configured port (as upstream).
 * IPv4 only; the lease carries only PublicIP (no BackendType, no BackendData).
 * @module
 */

import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_USO4, TUN_F_USO6, TunDevice } from "../../../ffi/tun.ts";
import { close } from "../../../ffi/libc.ts";
import {
  addrList,
  addrReplace,
  isNetlinkError,
  linkByName,
  linkSetMTU,
  linkSetUp,
  type Requester,
  routeList,
  routeReplace,
  withNetlinkSocket,
} from "../../../ffi/netlink/mod.ts";
import { ConfigError, type NetworkConfig } from "../../values/config.ts";
import { equalNet, formatIP4, formatNet4, type IP4Net } from "../../core/ip.ts";
import { field } from "../../core/json.ts";
import { describeLease, type Lease, type LeaseEvent } from "../../values/lease.ts";
import { logger } from "../../core/log.ts";
import type { Backend, BackendContext, BackendKind, BackendLeaseData } from "../backend.ts";
import { UdpDatapath } from "./datapath.ts";
import { PeerTable } from "./peers.ts";
import { openTunnelSocket } from "./socket.ts";

const log = logger("udp");

/** Upstream's default UDP port. */
export const DEFAULT_UDP_PORT = 8285;
/** IPv4 (20) + UDP (8) header bytes in front of every tunnelled packet. */
export const UDP_ENCAP_OVERHEAD = 28;
/** TUN name template; the kernel picks the first free `flannelN` (normally flannel0). */
export const TUN_NAME_TEMPLATE = "flannel%d";
/** The TUN's transmit queue: overflows turn straight into TCP retransmits (kernel default 500). */
const TUN_TXQUEUELEN = 5000;
/**
 * TUN offloads asked for: checksums left partial and TCPv4 super-packets up to 64 KB,
 * which the data path completes and splits (IPv4 only, so no TSO6; no USO: UDP inner
 * traffic stays one packet per read).
 */
const TUN_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4;

/**
 * Lets the kernel accept packets from the TUN whose source is one of its own addresses.
 * Our ICMP net-unreachable errors come from the TUN address (as upstream's), and since
 * Linux 4.x treats a local source arriving on another device as martian unless
 * `accept_local` is set, without this they are dropped before reaching the sender (also
 * true of upstream flanneld on current kernels). Only our Workers write to the TUN, and
 * they only forward datagrams from known peers.
 */
function acceptLocalSource(device: string): void {
  const path = `/proc/sys/net/ipv4/conf/${device}/accept_local`;
  try {
    Deno.writeTextFileSync(path, "1");
  } catch (e) {
    log.warn("cannot enable accept_local; ICMP net-unreachable errors will be dropped", {
      path,
      error: e,
    });
  }
}

/** The udp backend's own options, from the config's Backend object. */
export interface UdpConfig {
  port: number;
  /**
   * Segmentation offloads (TUN TSO, UDP GSO/GRO) where the kernel has them; false forces
   * one packet per read, send and write. Our extension: upstream has no such key.
   */
  offloads: boolean;
}

/** Reads `Offloads` (boolean, default true). */
function parseOffloads(backend: Record<string, unknown>): boolean {
  const o = field(backend, "Offloads");
  if (o === undefined || o === null) return true;
  if (typeof o !== "boolean") {
    throw new ConfigError(
      "Backend.Offloads",
      `Backend.Offloads must be true or false, got ${JSON.stringify(o)}`,
    );
  }
  return o;
}

/**
 * Reads `Port` (case-insensitive, as Go's JSON decoding; 0 or absent → 8285) and
 * `Offloads` (default true).
 */
export function parseUdpConfig(backend: Record<string, unknown>): UdpConfig {
  const offloads = parseOffloads(backend);
  const p = field(backend, "Port");
  if (p === undefined || p === null || p === 0) return { port: DEFAULT_UDP_PORT, offloads };
  if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) {
    throw new ConfigError(
      "Backend.Port",
      `Backend.Port must be an integer 1..65535, got ${JSON.stringify(p)}`,
    );
  }
  return { port: p, offloads };
}

/**
 * Refuses a network the udp backend cannot carry: it forwards IPv4 only (upstream's too),
 * so an IPv6-only network has nothing to forward, and with `EnableIPv6` the containers
 * would get IPv6 addresses no host routes. Checked when the config is read, before any
 * device or lease exists.
 */
export function checkUdpNetwork(net: NetworkConfig): void {
  if (!net.enableIPv4 || !net.network) {
    throw new ConfigError("EnableIPv4", "the udp backend carries IPv4 only: Network must be set");
  }
  if (net.enableIPv6) {
    throw new ConfigError(
      "EnableIPv6",
      "the udp backend carries IPv4 only, and EnableIPv6 is set: use vxlan or host-gw for " +
        "IPv6, or set EnableIPv6 to false",
    );
  }
}

/** The udp backend. */
export class UdpBackend implements Backend {
  readonly leaseType = "";
  readonly mtu: number;
  readonly port: number;
  /** Whether offloads were asked for (Backend.Offloads). */
  readonly offloads: boolean;
  readonly #ctx: BackendContext<UdpConfig>;
  readonly #network: IP4Net;
  readonly #peers: PeerTable;
  #tun: TunDevice | null = null;
  #sock = -1;
  #datapath: UdpDatapath | null = null;
  /** Counters of the last stopped data path, so that stats survive stop(). */
  #finalStats: Record<string, number> = {};
  #own: IP4Net | null = null;
  #checkTimer: ReturnType<typeof setInterval> | undefined;
  #repairs = 0;

  constructor(ctx: BackendContext<UdpConfig>) {
    const net = ctx.network;
    checkUdpNetwork(net);
    this.#ctx = ctx;
    this.#network = net.network!;
    this.port = ctx.options.port;
    this.offloads = ctx.options.offloads;
    this.mtu = ctx.ext.mtu - UDP_ENCAP_OVERHEAD;
    this.#peers = PeerTable.create(net.subnetLen);
  }

  /** Nothing to prepare: the lease needs no backend data. */
  prepare(): Promise<BackendLeaseData> {
    return Promise.resolve({});
  }

  /** Creates and configures `flannel0`, binds the socket, starts the Workers. */
  async start(own: Lease): Promise<void> {
    if (this.#datapath) throw new Error("udp backend already started");
    const ext = this.#ctx.ext;
    try {
      this.#tun = TunDevice.open({
        name: TUN_NAME_TEMPLATE,
        nonBlocking: true,
        txQueueLen: TUN_TXQUEUELEN,
        offloads: this.offloads ? TUN_OFFLOADS : 0,
      });
      if (this.#tun.offloadError) {
        log.warn("TUN offloads unavailable; the kernel hands over one packet per read", {
          error: this.#tun.offloadError.message,
        });
      }
      const name = this.#tun.name;
      withNetlinkSocket((nl) => this.#configureTun(nl, name, own.subnet));
      this.#own = own.subnet;
      const sock = openTunnelSocket(ext.ifaceAddr, this.port, { offloads: this.offloads });
      this.#sock = sock.fd;
      this.#datapath = await UdpDatapath.start({
        tunFd: this.#tun.fd,
        sockFd: this.#sock,
        mtu: this.mtu,
        tunAddr: own.subnet.ip,
        subnet: own.subnet,
        peers: this.#peers,
        tunTso: this.#tun.vnetHdr,
        tunUso: this.#tun.knowsOffload(TUN_F_USO4 | TUN_F_USO6),
        udpGso: sock.gso,
        udpGro: sock.gro,
        ...datapathTuning(),
      });
    } catch (e) {
      await this.stop();
      throw e;
    }
    // Someone flushing flannel0's address or route would cut traffic silently until a
    // restart: check on the reconcile interval and put them back.
    const every = this.#ctx.reconcileIntervalSeconds * 1000;
    this.#checkTimer = setInterval(() => this.#checkTun(), every);
    log.info("udp backend running", {
      device: this.#tun.name,
      subnet: formatNet4(own.subnet),
      listen: `${formatIP4(ext.ifaceAddr)}:${this.port}`,
      mtu: this.mtu,
      offloads: this.offloads,
      tun_tso: this.#tun.vnetHdr,
      udp_gso: this.#datapath.stats().feature_udp_gso === 1,
      udp_gro: this.#datapath.stats().feature_udp_gro === 1,
      udp_coalesce: this.#datapath.stats().feature_udp_coalesce === 1,
    });
  }

  /** Address `<subnet>/32`, MTU, up, and the route for the whole network (as upstream). */
  #configureTun(nl: Requester, name: string, subnet: IP4Net): void {
    const link = linkByName(nl, name);
    if (!link) throw new Error(`TUN device ${name} vanished before configuration`);
    // A /32 so that no broadcast or subnet routes appear; the address is only the source
    // for host-to-overlay traffic (and of our ICMP errors).
    addrReplace(nl, link.index, { ip: subnet.ip, prefix: 32 });
    linkSetMTU(nl, link.index, this.mtu);
    acceptLocalSource(name);
    linkSetUp(nl, link.index);
    try {
      routeReplace(nl, { dst: this.#network, dev: link.index });
    } catch (e) {
      if (!isNetlinkError(e, "EEXIST")) throw e;
    }
  }

  /** What {@link #configureTun} set up that is missing now; null when the TUN is gone. */
  #missingTunState(nl: Requester, name: string, subnet: IP4Net): string[] | null {
    const link = linkByName(nl, name);
    if (!link) return null; // gone with our fd only at stop()
    const missing: string[] = [];
    if (
      !addrList(nl, { index: link.index, family: 4 }).some((a) =>
        a.ip === subnet.ip && a.prefix === 32
      )
    ) {
      missing.push("address");
    }
    if (!routeList(nl, { dev: link.index }).some((r) => equalNet(r.dst, this.#network))) {
      missing.push("route");
    }
    if (!link.up) missing.push("link up");
    return missing;
  }

  /** Re-applies the TUN's address and Network route when either went missing. */
  #checkTun(): void {
    const tun = this.#tun, own = this.#own;
    if (!tun || !own) return;
    let missing: string[] | null;
    try {
      missing = withNetlinkSocket((nl) => this.#missingTunState(nl, tun.name, own));
    } catch (e) {
      log.warn("cannot check the TUN device", { device: tun.name, error: e });
      return;
    }
    if (!missing?.length) return;
    try {
      withNetlinkSocket((nl) => this.#configureTun(nl, tun.name, own));
      this.#repairs++;
      log.warn(`repaired ${tun.name}: ${missing.join(", ")} had gone missing`, {
        subnet: formatNet4(own),
      });
    } catch (e) {
      log.warn(`cannot repair ${tun.name}`, { missing: missing.join(","), error: e });
    }
  }

  /** Added lease → peer entry (its PublicIP, our Port); removed → entry deleted. */
  handle(events: LeaseEvent[]): Promise<void> {
    for (const { type, lease } of events) {
      if (type === "added") this.#addPeer(lease);
      else if (this.#peers.delete(lease.subnet)) {
        log.info("subnet removed", { subnet: describeLease(lease) });
      }
    }
    return Promise.resolve();
  }

  #addPeer(lease: Lease): void {
    const subnet = describeLease(lease);
    if (lease.subnet.prefix !== this.#peers.subnetLen) {
      log.warn("ignoring lease with a foreign prefix length", {
        subnet,
        subnetLen: this.#peers.subnetLen,
      });
      return;
    }
    if (!this.#peers.set(lease.subnet, lease.attrs.publicIP, this.port)) {
      log.error("peer table full; traffic to this subnet gets ICMP net-unreachable", {
        subnet,
        capacity: this.#peers.maxEntries,
      });
      return;
    }
    log.info("subnet added", { subnet, publicIP: formatIP4(lease.attrs.publicIP) });
  }

  /** Stops the Workers and closes the socket and the TUN (the device and its route go with it). */
  async stop(): Promise<void> {
    clearInterval(this.#checkTimer);
    if (this.#datapath) {
      await this.#datapath.stop();
      this.#finalStats = this.stats();
      this.#datapath = null;
    }
    if (this.#sock >= 0) close(this.#sock, true);
    this.#sock = -1;
    this.#tun?.close();
    this.#tun = null;
  }

  /**
   * Data path counters (empty before start; the final values after stop), plus
   * `tun_tx_dropped`: packets the kernel dropped because the TUN's queue was full (each one
   * a TCP retransmit).
   */
  stats(): Record<string, number> {
    if (!this.#datapath) return { ...this.#finalStats, repairs_tun: this.#repairs };
    const s = this.#datapath.stats();
    s.repairs_tun = this.#repairs;
    const dropped = this.#tun ? readTxDropped(this.#tun.name) : null;
    if (dropped !== null) s.tun_tx_dropped = dropped;
    return s;
  }
}

/** The device's tx_dropped statistic, or null when unreadable. */
function readTxDropped(device: string): number | null {
  try {
    return Number(Deno.readTextFileSync(`/sys/class/net/${device}/statistics/tx_dropped`).trim());
  } catch {
    return null;
  }
}

/**
 * The data path layout, for measurements (bench/compare.ts): `FLANNEL_UDP_WORKERS=2` gives
 * each direction its own Worker instead of one for both (see README, "udp backend").
 */
function datapathTuning(): { workers: 1 | 2 } {
  return { workers: Deno.env.get("FLANNEL_UDP_WORKERS") === "2" ? 2 : 1 };
}

/** Factory for the registry. */
export const udpBackend: BackendKind<UdpConfig> = {
  parse: (backend, network) => {
    checkUdpNetwork(network);
    return parseUdpConfig(backend);
  },
  create: (ctx) => new UdpBackend(ctx),
};
