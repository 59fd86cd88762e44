/**
 * The `vxlan` backend: the kernel's VXLAN devices carry the traffic, `flannel.<VNI>` for
 * IPv4 and, with `EnableIPv6`, `flannel-v6.<VNI>` for IPv6 (an IPv6 VTEP on the public
 * IPv6). Per remote host and family we program a permanent neighbour (remote subnet address
 * → its VTEP MAC), an FDB entry (VTEP MAC → its public address) and an onlink route — or,
 * with DirectRouting and the peer on our L2 segment, a plain route via its public address.
 * The shared reconciler (see reconcile.ts) keeps all of it (and the devices) in place.
 * @module
 */

import { type Requester, routeGet } from "../../ffi/netlink/mod.ts";
import { formatIP, type IP, type IPNet } from "../core/ip.ts";
import { describeLease, type Lease } from "../values/lease.ts";
import { logger, OnceLogger } from "../core/log.ts";
import { formatMAC } from "../core/mac.ts";
import type { BackendContext, BackendKind, BackendLeaseData } from "./backend.ts";
import { PeerBackend } from "./peer_backend.ts";
import type { Ownership, PeerEntries } from "./peer_state.ts";
import type { KernelAccess, Repair } from "./reconcile.ts";
import {
  checksumWorkaround,
  leaseVtepMAC,
  parseVxlanConfig,
  VXLAN6_OVERHEAD,
  VXLAN_OVERHEAD,
  type VxlanConfig,
  vxlanDeviceName,
} from "./vxlan/config.ts";
import { Vtep } from "./vxlan/vtep.ts";

const log = logger("vxlan");

/** The vxlan backend. */
export class VxlanBackend extends PeerBackend {
  readonly leaseType = "vxlan";
  /** FLANNEL_MTU: the IPv4 device's MTU, or the IPv6 device's in an IPv6-only network. */
  readonly mtu: number;
  readonly deviceNames: readonly string[];
  readonly config: VxlanConfig;
  /** The IPv4 device (`EnableIPv4`) and the IPv6 device (`EnableIPv6`). */
  readonly v4: Vtep | null;
  readonly v6: Vtep | null;
  #badLease = new OnceLogger(log);

  /** Whether TX checksum offload is turned off on the devices. */
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
    const { network, ext } = ctx;
    this.config = ctx.options;
    this.disableTxChecksum = checksumWorkaround(this.config, {
      kernelRelease: Deno.osRelease(),
      behindNAT: ext.extAddr !== ext.ifaceAddr ||
        (ext.extAddr6 !== null && ext.extAddr6 !== ext.ifaceAddr6),
    });
    const underlayMTU = this.config.mtu || ext.mtu;
    const vtep = (family: 4 | 6, local: IP, net: IPNet) =>
      new Vtep({
        spec: {
          name: vxlanDeviceName(this.config.vni, family),
          vni: this.config.vni,
          port: this.config.port,
          local,
          underlayIndex: ext.index,
          learning: this.config.learning,
          gbp: this.config.gbp,
          mtu: underlayMTU - (family === 6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD),
        },
        network: net,
        disableTxChecksum: this.disableTxChecksum,
        log,
      });
    this.v4 = network.enableIPv4 && network.network ? vtep(4, ext.extAddr, network.network) : null;
    if (network.enableIPv6 && network.ipv6Network) {
      if (ext.extAddr6 === null) {
        throw new Error(`vxlan: IPv6 is enabled but ${ext.name} has no IPv6 address to use`);
      }
      this.v6 = vtep(6, ext.extAddr6, network.ipv6Network);
    } else this.v6 = null;
    const devices = [this.v4, this.v6].filter((d) => d !== null);
    if (devices.length === 0) throw new Error("vxlan: neither IPv4 nor IPv6 is enabled");
    this.mtu = devices[0].mtu;
    this.deviceNames = devices.map((d) => d.name);
  }

  #devices(): Vtep[] {
    return [this.v4, this.v6].filter((d) => d !== null);
  }

  /** Creates or reuses the devices; their MACs go into the lease. */
  prepare(): Promise<BackendLeaseData> {
    const data: BackendLeaseData = {};
    const vni = this.config.vni;
    if (this.v4) data.backendData = { VNI: vni, VtepMAC: formatMAC(this.v4.prepare(this.nl)) };
    if (this.v6) data.backendV6Data = { VNI: vni, VtepMAC: formatMAC(this.v6.prepare(this.nl)) };
    return Promise.resolve(data);
  }

  protected override configure(own: Lease): void {
    const repairs = [
      ...this.v4?.configure(this.nl, own.subnet) ?? [],
      ...(this.v6 && own.ipv6Subnet ? this.v6.configure(this.nl, own.ipv6Subnet) : []),
    ];
    for (const r of repairs) log.info(r.what);
  }

  // ---------------------------------------------------------------- PeerDataPath

  ensureLocal(nl: Requester): Repair[] {
    return [
      ...this.v4?.ensure(nl, this.own?.subnet) ?? [],
      ...this.v6?.ensure(nl, this.own?.ipv6Subnet) ?? [],
    ];
  }

  entriesFor(nl: Requester, lease: Lease): PeerEntries[] {
    const key = describeLease(lease);
    const out: PeerEntries[] = [];
    const a = lease.attrs;
    const note = (family: string, e: PeerEntries | null, msg: string, fields: object) => {
      if (e) {
        out.push(e);
        this.#badLease.clear(`${key} ${family}`);
      } else this.#badLease.warn(`${key} ${family}`, msg, { subnet: key, ...fields });
    };
    if (this.v4) {
      note(
        "v4",
        this.#entries(nl, this.v4, lease.subnet, a.publicIP || null, a.backendData),
        "ignoring vxlan lease without a usable VtepMAC or PublicIP",
        { backendData: a.backendData },
      );
    }
    if (this.v6 && lease.ipv6Subnet) {
      note(
        "v6",
        this.#entries(nl, this.v6, lease.ipv6Subnet, a.publicIPv6, a.backendV6Data),
        "no IPv6 path to this vxlan lease: no usable VtepMAC in BackendV6Data or no PublicIPv6",
        {
          publicIPv6: a.publicIPv6 === null ? null : formatIP(a.publicIPv6),
          backendV6Data: a.backendV6Data,
        },
      );
    }
    return out;
  }

  /** One family's entries towards `subnet` at `peer` with VTEP data `data`; null when unusable. */
  #entries(
    nl: Requester,
    dev: Vtep,
    subnet: IPNet,
    peer: IP | null,
    data: unknown,
  ): PeerEntries | null {
    const mac = leaseVtepMAC(data);
    if (!mac || peer === null) return null;
    if (this.config.directRouting) {
      const direct = this.#directDev(nl, peer);
      if (direct !== null) return { route: { dst: subnet, gw: peer, dev: direct } };
    }
    const gw = subnet.ip;
    return {
      neigh: { dev: dev.index, ip: gw, mac },
      fdb: { dev: dev.index, mac, dst: peer },
      route: { dst: subnet, gw, dev: dev.index, onlink: true },
    };
  }

  /** The device reaching `peer` without a gateway (same L2 segment), or null. */
  #directDev(nl: Requester, peer: IP): number | null {
    try {
      const r = routeGet(nl, peer);
      return r.gw === undefined ? r.dev ?? this.ctx.ext.index : null;
    } catch {
      return null;
    }
  }

  ownership(): Ownership {
    const devs = this.#devices();
    const own = [this.v4 && this.own?.subnet, this.v6 && this.own?.ipv6Subnet];
    return {
      networks: devs.map((d) => d.network),
      own: own.filter((n) => !!n) as IPNet[],
      routeDevs: [
        ...devs.map((d) => d.index),
        ...this.config.directRouting ? [this.ctx.ext.index] : [],
      ],
      entryDevs: devs.map((d) => d.index),
    };
  }
}

/** The vxlan backend type. */
export const vxlanBackend: BackendKind<VxlanConfig> = {
  parse: parseVxlanConfig,
  create: (ctx) => new VxlanBackend(ctx),
};
