/**
 * The `host-gw` backend: no device and no encapsulation; each remote subnet is routed via
 * its host's public address on the external interface, which therefore must be on the same
 * L2 segment: IPv4 subnets via the PublicIP, IPv6 subnets (`EnableIPv6`) via the
 * PublicIPv6. The shared reconciler (see reconcile.ts) keeps the routes.
 * @module
 */

import type { Requester } from "../../ffi/netlink/mod.ts";
import { formatIP, type IP, type IPNet } from "../core/ip.ts";
import { describeLease, type Lease } from "../values/lease.ts";
import { logger, OnceLogger } from "../core/log.ts";
import type { BackendContext, BackendKind, BackendLeaseData } from "./backend.ts";
import { PeerBackend } from "./peer_backend.ts";
import type { Ownership, PeerEntries } from "./peer_state.ts";
import type { KernelAccess, Repair } from "./reconcile.ts";

const log = logger("host-gw");

/** The host-gw backend. */
export class HostGwBackend extends PeerBackend {
  readonly leaseType = "host-gw";
  readonly mtu: number;
  readonly deviceNames: readonly string[] = [];
  /** The networks routed: `Network` (EnableIPv4) and `IPv6Network` (EnableIPv6). */
  #v4: IPNet | null;
  #v6: IPNet | null;
  #badLease = new OnceLogger(log);

  /**
   * @param kernel the host's kernel unless a test passes an in-memory one
   * @param debounceMs delay of a reconcile after a notification (default 100 ms)
   */
  constructor(
    private readonly ctx: BackendContext<HostGwOptions>,
    kernel?: KernelAccess,
    debounceMs?: number,
  ) {
    super(log, { intervalSeconds: ctx.reconcileIntervalSeconds, debounceMs }, kernel);
    const n = ctx.network;
    this.#v4 = n.enableIPv4 && n.network ? n.network : null;
    this.#v6 = n.enableIPv6 && n.ipv6Network ? n.ipv6Network : null;
    if (!this.#v4 && !this.#v6) throw new Error("host-gw: neither IPv4 nor IPv6 is enabled");
    this.mtu = ctx.ext.mtu;
  }

  /**
   * Refuses a public address other than the interface's, in each family in use: peers
   * route to it directly, so it must be on the link ("probably you're on a NAT").
   */
  prepare(): Promise<BackendLeaseData> {
    const { extAddr, ifaceAddr, extAddr6, ifaceAddr6, name } = this.ctx.ext;
    const differs = (v: string, pub: IP | null, iface: IP | null) =>
      new Error(
        `host-gw: the public ${v} ${pub === null ? "(none)" : formatIP(pub)} differs from ` +
          `${name}'s address ${iface === null ? "(none)" : formatIP(iface)} ` +
          `(probably you're on a NAT); host-gw needs direct L2 reachability`,
      );
    if (this.#v4 && extAddr !== ifaceAddr) return Promise.reject(differs("IP", extAddr, ifaceAddr));
    if (this.#v6 && (extAddr6 === null || extAddr6 !== ifaceAddr6)) {
      return Promise.reject(differs("IPv6", extAddr6, ifaceAddr6));
    }
    return Promise.resolve({});
  }

  // ---------------------------------------------------------------- PeerDataPath

  ensureLocal(): Repair[] {
    return [];
  }

  entriesFor(_nl: Requester, lease: Lease): PeerEntries[] {
    const dev = this.ctx.ext.index;
    const out: PeerEntries[] = [];
    const { publicIP, publicIPv6 } = lease.attrs;
    if (this.#v4 && publicIP) out.push({ route: { dst: lease.subnet, gw: publicIP, dev } });
    if (this.#v6 && lease.ipv6Subnet) {
      const key = describeLease(lease);
      if (publicIPv6 === null) {
        this.#badLease.warn(key, "no IPv6 path to this host-gw lease: it has no PublicIPv6", {
          subnet: key,
        });
      } else {
        this.#badLease.clear(key);
        out.push({ route: { dst: lease.ipv6Subnet, gw: publicIPv6, dev } });
      }
    }
    return out;
  }

  ownership(): Ownership {
    const own = [this.#v4 && this.own?.subnet, this.#v6 && this.own?.ipv6Subnet];
    return {
      networks: [this.#v4, this.#v6].filter((n) => n !== null),
      own: own.filter((n) => !!n) as IPNet[],
      routeDevs: [this.ctx.ext.index],
      entryDevs: [],
    };
  }
}

/** host-gw has no options of its own (upstream reads none either). */
export type HostGwOptions = Record<never, never>;

/** The host-gw backend type. */
export const hostGwBackend: BackendKind<HostGwOptions> = {
  parse: () => ({}),
  create: (ctx) => new HostGwBackend(ctx),
};
