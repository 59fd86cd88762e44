/**
 * Base of the routing backends (vxlan, host-gw): the Backend contract delegated to a
 * {@link PeerReconciler} that the subclass plugs into as its {@link PeerDataPath}.
 * @module
 */

import { NetlinkSocket } from "../../ffi/netlink/mod.ts";
import type { Lease, LeaseEvent } from "../values/lease.ts";
import type { Logger } from "../core/log.ts";
import type { Backend, BackendLeaseData } from "./backend.ts";
import type { Ownership, PeerEntries } from "./peer_state.ts";
import { type PeerDataPath, PeerReconciler, type Repair } from "./reconcile.ts";

/** A backend whose data path is kernel routes (and neighbours/FDB) per remote lease. */
export abstract class PeerBackend implements Backend, PeerDataPath {
  abstract readonly leaseType: string;
  abstract readonly mtu: number;
  /** Request socket, shared with the engine (all netlink work is synchronous). */
  protected readonly nl: NetlinkSocket = NetlinkSocket.open();
  /** Our lease, once started. */
  protected own: Lease | null = null;
  readonly #engine: PeerReconciler;

  /** @param intervalSeconds `--reconcile-interval` */
  constructor(log: Logger, intervalSeconds: number) {
    this.#engine = new PeerReconciler(this.nl, this, log, { intervalSeconds });
  }

  abstract prepare(): Promise<BackendLeaseData>;
  abstract ensureLocal(nl: NetlinkSocket): Repair[];
  abstract entriesFor(nl: NetlinkSocket, lease: Lease): PeerEntries | null;
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
