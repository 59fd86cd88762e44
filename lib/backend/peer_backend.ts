/**
 * Base of the routing backends (vxlan, host-gw): the Backend contract delegated to a
 * {@link PeerReconciler} that the subclass plugs into as its {@link PeerDataPath}.
 * @module
 */

import { kernelNotifications, NetlinkSocket, type Requester } from "../../ffi/netlink/mod.ts";
import type { Lease, LeaseEvent } from "../values/lease.ts";
import type { Logger } from "../core/log.ts";
import type { Backend, BackendLeaseData } from "./backend.ts";
import type { Ownership, PeerEntries } from "./peer_state.ts";
import {
  type KernelAccess,
  type PeerDataPath,
  PeerReconciler,
  type ReconcileOptions,
  type Repair,
} from "./reconcile.ts";

/** The host's kernel: a request socket, and notifications on sockets of their own. */
export function systemKernel(): KernelAccess {
  return { nl: NetlinkSocket.open(), notifications: kernelNotifications };
}

/** A backend whose data path is kernel routes (and neighbours/FDB) per remote lease. */
export abstract class PeerBackend implements Backend, PeerDataPath {
  abstract readonly leaseType: string;
  abstract readonly mtu: number;
  abstract readonly deviceNames: readonly string[];
  /** Requests, shared with the engine (all netlink work is synchronous). */
  protected readonly nl: Requester;
  /** Our lease, once started. */
  protected own: Lease | null = null;
  readonly #engine: PeerReconciler;

  /**
   * @param opts the engine's period (`--reconcile-interval`) and debounce
   * @param kernel the host's kernel unless a test passes an in-memory one
   */
  constructor(log: Logger, opts: ReconcileOptions, kernel: KernelAccess = systemKernel()) {
    this.nl = kernel.nl;
    this.#engine = new PeerReconciler(kernel, this, log, opts);
  }

  abstract prepare(): Promise<BackendLeaseData>;
  abstract ensureLocal(nl: Requester): Repair[];
  abstract entriesFor(nl: Requester, lease: Lease): PeerEntries[];
  abstract ownership(): Ownership;

  /** Sets up local state for our lease before peers are programmed; default nothing. */
  protected configure(_own: Lease): void {}

  start(own: Lease): Promise<void> {
    this.own = own;
    this.configure(own);
    this.#engine.start();
    return Promise.resolve();
  }

  handle(events: LeaseEvent[]): Promise<void> {
    this.#engine.handle(events);
    return Promise.resolve();
  }

  /** Stops watching; routes, neighbours, FDB entries and the device stay. */
  stop(): Promise<void> {
    this.#engine.stop();
    return Promise.resolve();
  }

  stats(): Record<string, number> {
    return this.#engine.stats();
  }
}
