/**
 * The set of remote leases as this host sees it, kept from listings and watch events, and
 * the added/removed events the backend gets from it:
 * - a listing (at start, after a compaction, after our subnet changed) is compared with
 *   what is known: new or changed leases are added, vanished ones removed (upstream's
 *   snapshot ignores changed attributes of known leases; ours re-announces them);
 * - a put adds (replacing the known lease of that subnet), a delete removes;
 * - our own subnet never reaches the backend: its changes go to the lease manager;
 * - a lease the config forbids (outside the Network, no PublicIP…) is never routed, and is
 *   logged once per key and reason however often it is re-put.
 * Pure: no store, no timers.
 * @module
 */

import { formatIP4, formatIP6, type IP4Net, type IP6Net } from "../core/ip.ts";
import { logger, OnceLogger } from "../core/log.ts";
import {
  describeLease,
  type Lease,
  type LeaseEvent,
  parseSubnetKey,
  samePublicAddress,
  subnetKey,
} from "../values/lease.ts";
import { leaseFromKV, type LeaseList } from "./registry.ts";
import type { StoreEvent } from "./store.ts";

const log = logger("watch");

/** What happened to our own key, for the lease manager. */
export interface OwnEvent {
  type: "put" | "delete";
  /** The lease now at our key (put). */
  lease?: Lease;
}

/** Where a view's conclusions go. */
export interface LeaseViewCallbacks {
  /** Remote lease events (own subnet excluded), in store order. */
  onEvents(events: LeaseEvent[]): void;
  /** Changes to our own key. */
  onOwn(ev: OwnEvent): void;
  /** Why a remote lease must not be routed, or null to accept it. */
  validate(l: Lease): string | null;
}

/** Counters for metrics and tests. */
export interface LeaseViewStats {
  /** Store events seen. */
  events: number;
  /** Unusable keys or values seen (each time, not once). */
  badLeases: number;
}

/** A lease's subnets: its identity (the etcd key names both). */
interface Subnets {
  subnet: IP4Net;
  ipv6Subnet?: IP6Net;
}

/**
 * The key of a lease's subnets, for the known-lease map: both parts, since in an
 * IPv6-only network every lease has the IPv4 part 0.0.0.0/0.
 */
function idOf(l: Subnets): string {
  return subnetKey(l.subnet, l.ipv6Subnet);
}

/** Remote leases known from listings and watch events. */
export class LeaseView {
  readonly #known = new Map<string, Lease>();
  readonly #bad = new OnceLogger(log);
  #own: string | null = null;
  #ownIP = 0;
  #ownIP6: bigint | null = null;
  readonly stats: LeaseViewStats = { events: 0, badLeases: 0 };

  constructor(
    private readonly cb: LeaseViewCallbacks,
    private readonly keyOf: (l: Lease) => string,
  ) {}

  /**
   * Sets our own subnet (its events go to `onOwn`, never to `onEvents`) and public IP (a
   * lease carrying it on another subnet is our own write in transit during a subnet
   * change, never a remote host to route to).
   */
  setOwn(
    subnet: IP4Net | null,
    publicIP = this.#ownIP,
    ipv6Subnet?: IP6Net,
    publicIPv6 = this.#ownIP6,
  ): void {
    this.#own = subnet ? idOf({ subnet, ipv6Subnet }) : null;
    this.#ownIP = publicIP;
    this.#ownIP6 = publicIPv6;
    if (this.#own) this.#known.delete(this.#own);
  }

  /** Leases currently known (remote only). */
  leases(): Lease[] {
    return [...this.#known.values()];
  }

  #isOwn(l: Subnets): boolean {
    return this.#own !== null && this.#own === idOf(l);
  }

  /** A lease with our public IP (or, IPv6-only, our public IPv6) on another subnet. */
  #isOurIP(l: Lease): boolean {
    return samePublicAddress(l.attrs, { publicIP: this.#ownIP, publicIPv6: this.#ownIP6 });
  }

  /** Applies a listing: emits the difference to what is known, then our own key's state. */
  snapshot(list: LeaseList): void {
    for (const b of list.bad) this.#noteBad(b.key, b.reason);
    const events: LeaseEvent[] = [];
    const seen = new Set<string>();
    let ownLease: Lease | undefined;
    for (const l of list.leases) {
      if (this.#isOwn(l)) {
        ownLease = l;
        continue;
      }
      if (this.#isOurIP(l)) continue;
      const why = this.cb.validate(l);
      if (why) {
        this.#noteBad(this.keyOf(l), why);
        continue;
      }
      const id = idOf(l);
      seen.add(id);
      const prev = this.#known.get(id);
      if (!prev || prev.modRevision !== l.modRevision) events.push({ type: "added", lease: l });
      this.#known.set(id, l);
    }
    for (const [id, l] of this.#known) {
      if (!seen.has(id)) {
        this.#known.delete(id);
        events.push({ type: "removed", lease: l });
      }
    }
    this.#emit(events);
    if (this.#own) this.cb.onOwn(ownLease ? { type: "put", lease: ownLease } : { type: "delete" });
  }

  /** Applies the events of one watch answer. */
  apply(storeEvents: StoreEvent[]): void {
    const out: LeaseEvent[] = [];
    for (const ev of storeEvents) {
      this.stats.events++;
      if (ev.type === "delete") this.#onDelete(ev.key, out);
      else this.#onPut(ev.kv.key, () => leaseFromKV(ev.kv), out);
    }
    this.#emit(out);
  }

  #onDelete(key: string, out: LeaseEvent[]): void {
    this.#bad.clear(key);
    const subnets = parseSubnetKey(key);
    if (!subnets) return;
    if (this.#isOwn(subnets)) return this.cb.onOwn({ type: "delete" });
    const known = this.#known.get(idOf(subnets));
    this.#known.delete(idOf(subnets));
    out.push({
      type: "removed",
      lease: known ?? { ...subnets, attrs: { publicIP: 0, publicIPv6: null } },
    });
  }

  #onPut(key: string, decode: () => Lease, out: LeaseEvent[]): void {
    let lease: Lease;
    try {
      lease = decode();
    } catch (e) {
      this.#noteBad(key, (e as Error).message);
      const subnets = parseSubnetKey(key);
      if (subnets && !this.#isOwn(subnets)) this.#forget(subnets, out);
      return;
    }
    if (this.#isOwn(lease)) return this.cb.onOwn({ type: "put", lease });
    if (this.#isOurIP(lease)) {
      log.debug(1, "skipping a lease with our public IP on another subnet", {
        subnet: describeLease(lease),
      });
      return;
    }
    const why = this.cb.validate(lease);
    if (why) {
      this.#noteBad(key, why);
      this.#forget(lease, out);
      return;
    }
    this.#bad.clear(key);
    this.#known.set(idOf(lease), lease);
    out.push({ type: "added", lease });
  }

  /** A peer whose lease turned unusable is no longer routed to. */
  #forget(subnets: Subnets, out: LeaseEvent[]): void {
    const known = this.#known.get(idOf(subnets));
    if (!known) return;
    this.#known.delete(idOf(subnets));
    out.push({ type: "removed", lease: known });
  }

  /** Counts an unusable lease; logs it once per key and reason, however often it is re-put. */
  #noteBad(key: string, reason: string): void {
    this.stats.badLeases++;
    this.#bad.warn(key, `ignoring unusable lease: ${reason}`, { key });
  }

  #emit(events: LeaseEvent[]): void {
    if (events.length === 0) return;
    for (const e of events) {
      log.info(e.type === "added" ? "lease added" : "lease removed", {
        subnet: describeLease(e.lease),
        peer: e.lease.attrs.publicIP ? formatIP4(e.lease.attrs.publicIP) : undefined,
        peer6: e.lease.attrs.publicIPv6 !== null ? formatIP6(e.lease.attrs.publicIPv6) : undefined,
        backend: e.lease.attrs.backendType,
      });
    }
    this.cb.onEvents(events);
  }
}
