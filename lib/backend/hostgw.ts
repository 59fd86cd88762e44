/**
 * The `host-gw` backend (FLANNEL.md §11): no device and no encapsulation; each remote
 * subnet is routed via its host's public IP on the external interface, which therefore
 * must be on the same L2 segment. The shared reconciler (see reconcile.ts) keeps the routes.
 * @module
 */

import type { Requester } from "../../ffi/netlink/mod.ts";
import { formatIP4, type IP4Net } from "../core/ip.ts";
import type { Lease } from "../values/lease.ts";
import { logger } from "../core/log.ts";
import type { BackendContext, BackendKind, BackendLeaseData } from "./backend.ts";
import { PeerBackend } from "./peer_backend.ts";
import type { Ownership, PeerEntries } from "./peer_state.ts";
import type { KernelAccess, Repair } from "./reconcile.ts";

const log = logger("host-gw");

/** The host-gw backend. */
export class HostGwBackend extends PeerBackend {
  readonly leaseType = "host-gw";
  readonly mtu: number;
  #network: IP4Net;

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
    if (!ctx.network.network) throw new Error("host-gw: IPv6-only networks are not supported");
    this.#network = ctx.network.network;
    this.mtu = ctx.ext.mtu;
  }

  /** Refuses a public IP other than the interface's: peers could not route to it directly. */
  prepare(): Promise<BackendLeaseData> {
    const { extAddr, ifaceAddr, name } = this.ctx.ext;
    if (extAddr !== ifaceAddr) {
      return Promise.reject(
        new Error(
          `host-gw: the public IP ${formatIP4(extAddr)} differs from ${name}'s address ` +
            `${
              formatIP4(ifaceAddr)
            } (probably you're on a NAT); host-gw needs direct L2 reachability`,
        ),
      );
    }
    return Promise.resolve({});
  }

  // ---------------------------------------------------------------- PeerDataPath

  ensureLocal(): Repair[] {
    return [];
  }

  entriesFor(_nl: Requester, lease: Lease): PeerEntries | null {
    if (!lease.attrs.publicIP) return null;
    return { route: { dst: lease.subnet, gw: lease.attrs.publicIP, dev: this.ctx.ext.index } };
  }

  ownership(): Ownership {
    return {
      network: this.#network,
      own: this.own?.subnet,
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
