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

import { equal4, formatIP4, type IP4Net } from "../core/ip.ts";
import { logger, OnceLogger } from "../core/log.ts";
import { describeLease, type Lease, type LeaseEvent, parseSubnetKey } from "../values/lease.ts";
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

/** The key of a lease's IPv4 subnet, for the known-lease map. */
function idOf(subnet: IP4Net): string {
  return `${subnet.ip}/${subnet.prefix}`;
}

/** Remote leases known from listings and watch events. */
export class LeaseView {
  readonly #known = new Map<string, Lease>();
  readonly #bad = new OnceLogger(log);
  #own: IP4Net | null = null;
  #ownIP = 0;
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
  setOwn(subnet: IP4Net | null, publicIP = this.#ownIP): void {
    this.#own = subnet;
    this.#ownIP = publicIP;
    if (subnet) this.#known.delete(idOf(subnet));
  }

  /** Leases currently known (remote only). */
  leases(): Lease[] {
    return [...this.#known.values()];
  }

  #isOwn(subnet: IP4Net): boolean {
    return this.#own !== null && equal4(this.#own, subnet);
  }

  #isOurIP(l: Lease): boolean {
    return this.#ownIP !== 0 && l.attrs.publicIP === this.#ownIP;
  }

  /** Applies a listing: emits the difference to what is known, then our own key's state. */
  snapshot(list: LeaseList): void {
    for (const b of list.bad) this.#noteBad(b.key, b.reason);
    const events: LeaseEvent[] = [];
    const seen = new Set<string>();
    let ownLease: Lease | undefined;
    for (const l of list.leases) {
      if (this.#isOwn(l.subnet)) {
        ownLease = l;
        continue;
      }
      if (this.#isOurIP(l)) continue;
      const why = this.cb.validate(l);
      if (why) {
        this.#noteBad(this.keyOf(l), why);
        continue;
      }
      const id = idOf(l.subnet);
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
    const subnet = parseSubnetKey(key)?.subnet;
    if (!subnet) return;
    if (this.#isOwn(subnet)) return this.cb.onOwn({ type: "delete" });
    const known = this.#known.get(idOf(subnet));
    this.#known.delete(idOf(subnet));
    out.push({
      type: "removed",
      lease: known ?? { subnet, attrs: { publicIP: 0, publicIPv6: null } },
    });
  }

  #onPut(key: string, decode: () => Lease, out: LeaseEvent[]): void {
    let lease: Lease;
    try {
      lease = decode();
    } catch (e) {
      this.#noteBad(key, (e as Error).message);
      const subnet = parseSubnetKey(key)?.subnet;
      if (subnet && !this.#isOwn(subnet)) this.#forget(subnet, out);
      return;
    }
    if (this.#isOwn(lease.subnet)) return this.cb.onOwn({ type: "put", lease });
    if (this.#isOurIP(lease)) {
      log.debug(1, "skipping a lease with our public IP on another subnet", {
        subnet: describeLease(lease),
      });
      return;
    }
    const why = this.cb.validate(lease);
    if (why) {
      this.#noteBad(key, why);
      this.#forget(lease.subnet, out);
      return;
    }
    this.#bad.clear(key);
    this.#known.set(idOf(lease.subnet), lease);
    out.push({ type: "added", lease });
  }

  /** A peer whose lease turned unusable is no longer routed to. */
  #forget(subnet: IP4Net, out: LeaseEvent[]): void {
    const known = this.#known.get(idOf(subnet));
    if (!known) return;
    this.#known.delete(idOf(subnet));
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
        backend: e.lease.attrs.backendType,
      });
    }
    this.cb.onEvents(events);
  }
}
