/**
 * The `vxlan` backend (FLANNEL.md §10), IPv4: the kernel's VXLAN device `flannel.<VNI>`
 * carries the traffic; per remote host we program a permanent neighbour (remote subnet
 * address → its VTEP MAC), an FDB entry (VTEP MAC → its public IP) and an onlink route —
 * or, with DirectRouting and the peer on our L2 segment, a plain route via its public IP.
 * The shared reconciler (see reconcile.ts) keeps all of it (and the device itself) in place.
 * @module
 */

import { setTxChecksum } from "../../ffi/ethtool.ts";
import {
  addrDel,
  addrList,
  addrReplace,
  type Link,
  linkByName,
  linkSetMAC,
  linkSetMTU,
  linkSetUp,
  type Requester,
  routeGet,
  type VxlanSpec,
} from "../../ffi/netlink/mod.ts";
import { contains4, formatIP4, type IP4Net } from "../core/ip.ts";
import { describeLease, type Lease } from "../values/lease.ts";
import { logger, OnceLogger } from "../core/log.ts";
import { formatMAC } from "../core/mac.ts";
import type { BackendContext, BackendKind, BackendLeaseData } from "./backend.ts";
import { PeerBackend } from "./peer_backend.ts";
import { type Ownership, type PeerEntries, sameMAC } from "./peer_state.ts";
import type { KernelAccess, Repair } from "./reconcile.ts";
import {
  checksumWorkaround,
  leaseVtepMAC,
  parseVxlanConfig,
  VXLAN_OVERHEAD,
  type VxlanConfig,
  vxlanDeviceName,
} from "./vxlan/config.ts";
import { ensureDevice, incompatibility } from "./vxlan/device.ts";

const log = logger("vxlan");

/**
 * Ensures `<subnet>.0/32` on the device, removes other addresses inside `network`, and
 * brings the link up; returns what it had to change.
 */
export function configureDeviceAddress(
  nl: Requester,
  link: Link,
  own: IP4Net,
  network: IP4Net,
): Repair[] {
  const done: Repair[] = [];
  const addrs = addrList(nl, { index: link.index, family: 4 });
  if (!addrs.some((a) => a.ip === own.ip && a.prefix === 32)) {
    addrReplace(nl, link.index, { ip: own.ip, prefix: 32 });
    done.push({ kind: "address", what: `address ${formatIP4(own.ip)}/32 on ${link.name}` });
  }
  for (const a of addrs) {
    if (typeof a.ip === "number" && a.ip !== own.ip && contains4(network, a.ip)) {
      addrDel(nl, link.index, { ip: a.ip, prefix: a.prefix });
      done.push({
        kind: "address",
        what: `removed foreign address ${formatIP4(a.ip)}/${a.prefix} from ${link.name}`,
      });
    }
  }
  if (!link.up) {
    linkSetUp(nl, link.index);
    done.push({ kind: "link", what: `${link.name} set up` });
  }
  return done;
}

/** The vxlan backend. */
export class VxlanBackend extends PeerBackend {
  readonly leaseType = "vxlan";
  readonly mtu: number;
  readonly deviceName: string;
  readonly config: VxlanConfig;
  #spec: VxlanSpec;
  #network: IP4Net;
  #link: Link | null = null;
  #mac: Uint8Array | null = null;
  #badLease = new OnceLogger(log);

  /** Whether TX checksum offload is turned off on the device. */
  readonly disableTxChecksum: boolean;

  /**
   * @param kernel the host's kernel unless a test passes an in-memory one
   * @param debounceMs delay of a reconcile after a notification (default 100 ms)
   */
  constructor(
    private readonly ctx: BackendContext<VxlanConfig>,
    kernel?: KernelAccess,
    debounceMs?: number,
  ) {
    super(log, { intervalSeconds: ctx.reconcileIntervalSeconds, debounceMs }, kernel);
    this.config = ctx.options;
    this.disableTxChecksum = checksumWorkaround(this.config, {
      kernelRelease: Deno.osRelease(),
      behindNAT: ctx.ext.extAddr !== ctx.ext.ifaceAddr,
    });
    if (!ctx.network.network) throw new Error("vxlan: IPv6-only networks are not supported");
    this.#network = ctx.network.network;
    this.mtu = (this.config.mtu || ctx.ext.mtu) - VXLAN_OVERHEAD;
    this.deviceName = vxlanDeviceName(this.config.vni);
    this.#spec = {
      name: this.deviceName,
      vni: this.config.vni,
      port: this.config.port,
      local: ctx.ext.extAddr,
      underlayIndex: ctx.ext.index,
      learning: this.config.learning,
      gbp: this.config.gbp,
      mtu: this.mtu,
    };
  }

  /** Creates or reuses the device; its MAC goes into the lease. */
  prepare(): Promise<BackendLeaseData> {
    const { link, action } = ensureDevice(this.nl, this.#spec);
    this.#adopt(link);
    log.info(`${action} ${this.deviceName}`, {
      vni: this.config.vni,
      mac: formatMAC(this.#mac!),
      local: formatIP4(this.ctx.ext.extAddr),
      dev: this.ctx.ext.name,
      mtu: link.mtu,
    });
    return Promise.resolve({
      backendData: { VNI: this.config.vni, VtepMAC: formatMAC(this.#mac!) },
    });
  }

  /** Records a (re)created device and applies the per-device settings. */
  #adopt(link: Link): void {
    this.#link = link;
    this.#mac = link.mac;
    try {
      Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${link.name}/accept_ra`, "0");
    } catch { /* IPv6 disabled: nothing to turn off */ }
    if (!this.disableTxChecksum) return;
    try {
      setTxChecksum(link.name, false);
      log.info(
        `turned TX checksum offload off on ${link.name} (avoids "bad checksum" drops on kernels < 5.7 and behind NAT)`,
      );
    } catch (e) {
      log.warn(`cannot turn TX checksum offload off on ${link.name}`, { error: e });
    }
  }

  protected override configure(own: Lease): void {
    for (const r of configureDeviceAddress(this.nl, this.#link!, own.subnet, this.#network)) {
      log.info(r.what);
    }
  }

  // ---------------------------------------------------------------- PeerDataPath

  ensureLocal(nl: Requester): Repair[] {
    const done: Repair[] = [];
    let link = linkByName(nl, this.deviceName);
    const why = link ? incompatibility(link, this.#spec) : "deleted";
    if (why !== null) {
      link = ensureDevice(nl, { ...this.#spec, mac: this.#mac ?? undefined }).link;
      done.push({
        kind: "device",
        what: `recreated ${this.deviceName} (${why}) with MAC ${formatMAC(link.mac!)}`,
      });
      this.#adopt(link);
    } else if (this.#mac && !sameMAC(link!.mac, this.#mac)) {
      linkSetMAC(nl, link!.index, this.#mac);
      done.push({
        kind: "device",
        what: `MAC of ${this.deviceName} set back to ${formatMAC(this.#mac)}`,
      });
    }
    if (link!.mtu !== this.mtu) {
      linkSetMTU(nl, link!.index, this.mtu);
      done.push({ kind: "mtu", what: `MTU of ${this.deviceName} set back to ${this.mtu}` });
    }
    this.#link = link;
    if (this.own) done.push(...configureDeviceAddress(nl, link!, this.own.subnet, this.#network));
    return done;
  }

  entriesFor(nl: Requester, lease: Lease): PeerEntries | null {
    const key = describeLease(lease);
    const mac = leaseVtepMAC(lease.attrs.backendData);
    const peer = lease.attrs.publicIP;
    if (!mac || !peer) {
      this.#badLease.warn(key, "ignoring vxlan lease without a usable VtepMAC or PublicIP", {
        subnet: key,
        backendData: lease.attrs.backendData,
      });
      return null;
    }
    this.#badLease.clear(key);
    if (this.config.directRouting) {
      const dev = this.#directDev(nl, peer);
      if (dev !== null) return { route: { dst: lease.subnet, gw: peer, dev } };
    }
    const dev = this.#link!.index;
    const gw = lease.subnet.ip;
    return {
      neigh: { dev, ip: gw, mac },
      fdb: { dev, mac, dst: peer },
      route: { dst: lease.subnet, gw, dev, onlink: true },
    };
  }

  /** The device reaching `peer` without a gateway (same L2 segment), or null. */
  #directDev(nl: Requester, peer: number): number | null {
    try {
      const r = routeGet(nl, peer);
      return r.gw === undefined ? r.dev ?? this.ctx.ext.index : null;
    } catch {
      return null;
    }
  }

  ownership(): Ownership {
    const dev = this.#link?.index ?? 0;
    return {
      network: this.#network,
      own: this.own?.subnet,
      routeDevs: this.config.directRouting ? [dev, this.ctx.ext.index] : [dev],
      entryDevs: [dev],
    };
  }
}

/** The vxlan backend type. */
export const vxlanBackend: BackendKind<VxlanConfig> = {
  parse: parseVxlanConfig,
  create: (ctx) => new VxlanBackend(ctx),
};
