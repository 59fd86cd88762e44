/**
 * The engine shared by the routing backends (vxlan, host-gw): programs the kernel entries
 * each remote lease needs, and keeps them there. Desired state = what the current leases
 * require; it is compared with the kernel every `reconcileIntervalSeconds` and shortly
 * after any relevant netlink notification, and whatever is missing or altered (device,
 * address, route, neighbour, FDB entry) is put back, one log line per repair.
 *
 * Stale entries (ours by device and Network, wanted by no lease) are removed once, on the
 * first reconcile after the first lease snapshot: removing them earlier would cut traffic
 * to peers whose leases simply have not been read yet after a restart.
 *
 * The kernel comes as collaborators ({@link KernelAccess}): requests on a `Requester` and
 * notifications from a `NotificationSource`, the host's or a test's in-memory kernel.
 * Notifications are only classified here, decoded by the netlink layer.
 *
 * IPv4 and IPv6 are handled alike: a lease yields one set of entries per family it offers,
 * and the kernel is read in the families of the networks the data path owns.
 *
 * All netlink work is synchronous, so handle() and reconcile() never interleave.
 * @module
 */

import {
  decodeLink,
  decodeRoute,
  fdbList,
  fdbReplace,
  formatRoute,
  neighIndex,
  neighList,
  neighReplace,
  type NlMessage,
  NLMSG_OVERRUN,
  type NotificationSource,
  type Requester,
  routeDel,
  routeList,
  routeReplace,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  type Subscription,
} from "../../ffi/netlink/mod.ts";
import { familyOf } from "../core/ip.ts";
import { describeLease, type Lease, type LeaseEvent, subnetKey } from "../values/lease.ts";
import { type Logger, OnceLogger } from "../core/log.ts";
import { releaseFreedMemory } from "../../ffi/malloc.ts";
import {
  describeFdb,
  describeNeigh,
  insideNetworks,
  type KernelView,
  type Ownership,
  type PeerEntries,
  planRepairs,
  planSize,
} from "./peer_state.ts";
import {
  deleteQuietly,
  installEntries,
  removeEntries,
  removeFdb,
  removeNeigh,
  removeSuperseded,
} from "./peer_entries.ts";

/** A local repair made by {@link PeerDataPath.ensureLocal}. */
export interface Repair {
  /** Counter it goes to: `device`, `address`, `link`, `mtu`… */
  kind: string;
  /** Log text, e.g. `recreated flannel.1 (deleted) with MAC …`. */
  what: string;
}

/** What a routing backend plugs into the engine. */
export interface PeerDataPath {
  /** Our BackendType; leases of other types are ignored (logged once per subnet). */
  readonly leaseType: string;
  /** Names of our devices, whose link events trigger a reconcile; none for host-gw. */
  readonly deviceNames: readonly string[];
  /** Checks the devices, their addresses and state, repairing what is wrong. */
  ensureLocal(nl: Requester): Repair[];
  /**
   * Entries for a remote lease (current device indexes), one set per family it can be
   * reached in; empty when it is unusable (the data path logs why).
   */
  entriesFor(nl: Requester, lease: Lease): PeerEntries[];
  /** Which kernel entries are ours. */
  ownership(): Ownership;
}

/** How the engine (and its data path) reach the kernel. */
export interface KernelAccess {
  /** Requests; shared with the data path (all netlink work is synchronous). */
  nl: Requester;
  /**
   * Notifications that bring a reconcile forward; null: the periodic check alone (tests
   * use that to see the periodic path).
   */
  notifications: NotificationSource | null;
}

/** Engine options. */
export interface ReconcileOptions {
  /** Period of the full comparison (default 10 s). */
  intervalSeconds?: number;
  /** Delay after a netlink notification, collapsing bursts (default 100 ms). */
  debounceMs?: number;
}

/** A burst of notifications delays its reconcile by at most this many debounce periods. */
const MAX_DEBOUNCE_FACTOR = 10;

/** Keeps the kernel in line with the remote leases; see the module comment. */
export class PeerReconciler {
  #leases = new Map<string, Lease>();
  #applied = new Map<string, PeerEntries[]>();
  #ignored: OnceLogger;
  #counts: Record<string, number> = {
    repairs: 0,
    reconciles: 0,
    stale_removed: 0,
    errors: 0,
    ignored_leases: 0,
  };
  #interval: number;
  #debounceMs: number;
  readonly #nl: Requester;
  readonly #notifications: NotificationSource | null;
  #timer?: ReturnType<typeof setInterval>;
  #debounce?: ReturnType<typeof setTimeout>;
  #lastTrigger = 0;
  #burstStart = 0;
  #events: Subscription | null = null;
  #running = false;
  #snapshotSeen = false;
  #ticks = 0;
  #cleanupDone = false;

  constructor(
    kernel: KernelAccess,
    private readonly dp: PeerDataPath,
    private readonly log: Logger,
    opts: ReconcileOptions = {},
  ) {
    this.#nl = kernel.nl;
    this.#notifications = kernel.notifications;
    this.#ignored = new OnceLogger(log);
    this.#interval = opts.intervalSeconds ?? 10;
    this.#debounceMs = opts.debounceMs ?? 100;
  }

  /** Starts the periodic check and the netlink watch. Stale cleanup is armed again. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#cleanupDone = false;
    this.#ticks = 0;
    this.#timer = setInterval(() => {
      this.#ticks++;
      this.reconcile("periodic");
    }, this.#interval * 1000);
    if (!this.#notifications) return;
    try {
      const sub = this.#notifications.subscribe([
        RTNLGRP_LINK,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV6_ROUTE,
        RTNLGRP_NEIGH,
      ]);
      this.#events = sub;
      this.#watch(sub);
    } catch (e) {
      this.log.warn("cannot watch netlink notifications; repairs only every interval", {
        interval: this.#interval,
        error: e,
      });
    }
  }

  /** Stops checking; kernel state stays as it is. */
  stop(): void {
    this.#running = false;
    clearInterval(this.#timer);
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    this.#events?.close();
    this.#events = null;
  }

  async #watch(sub: Subscription): Promise<void> {
    try {
      for await (const batch of sub.eventBatches()) {
        // One hit is enough: the rest of the batch needs no decoding.
        const own = this.dp.ownership();
        if (batch.some((m) => this.#relevant(m, own))) this.#schedule("netlink");
      }
    } catch (e) {
      if (this.#running) this.log.warn("netlink watch ended", { error: e });
    }
  }

  /** Whether a notification may concern our entries (our own writes echo back too; harmless). */
  #relevant(m: NlMessage, own: Ownership): boolean {
    try {
      switch (m.type) {
        case NLMSG_OVERRUN:
          return true;
        case RTM_NEWLINK:
        case RTM_DELLINK: {
          const l = decodeLink(m);
          return this.dp.deviceNames.includes(l.name) || own.routeDevs.includes(l.index);
        }
        case RTM_NEWROUTE:
        case RTM_DELROUTE:
          return insideNetworks(own.networks, decodeRoute(m).dst);
        case RTM_NEWNEIGH:
        case RTM_DELNEIGH:
          return own.entryDevs.includes(neighIndex(m));
      }
    } catch {
      return true;
    }
    return false;
  }

  /**
   * Reconciles once notifications have been quiet for `debounceMs`, but no later than
   * {@link MAX_DEBOUNCE_FACTOR} × `debounceMs` after the first one. During a burst (1,000
   * leases arriving, each of our writes echoing back as notifications) that is one full dump
   * per second instead of one per `debounceMs`: less work on the event loop while peers are
   * being programmed, and less garbage.
   */
  #schedule(reason: string): void {
    if (!this.#running) return;
    this.#lastTrigger = Date.now();
    if (this.#debounce !== undefined) return;
    this.#burstStart = this.#lastTrigger;
    this.#arm(this.#debounceMs, reason);
  }

  #arm(ms: number, reason: string): void {
    this.#debounce = setTimeout(() => {
      const now = Date.now();
      const quiet = now - this.#lastTrigger;
      const deadline = this.#burstStart + this.#debounceMs * MAX_DEBOUNCE_FACTOR;
      if (quiet < this.#debounceMs && now < deadline) {
        return this.#arm(Math.min(this.#debounceMs - quiet, deadline - now), reason);
      }
      this.#debounce = undefined;
      this.reconcile(reason);
    }, ms);
  }

  /** Applies remote lease events (idempotent). */
  handle(events: LeaseEvent[]): void {
    for (const ev of events) {
      const key = subnetKey(ev.lease.subnet, ev.lease.ipv6Subnet);
      if (ev.type === "removed") this.#forget(key, ev.lease);
      else this.#add(key, ev.lease);
    }
    this.#snapshotSeen = true;
    this.#schedule("lease events");
    releaseFreedMemory(); // what decoding and programming the batch left (rate-limited)
  }

  #add(key: string, lease: Lease): void {
    const type = lease.attrs.backendType ?? "";
    if (type !== this.dp.leaseType) {
      this.#counts.ignored_leases++;
      this.#ignored.warn(key, "ignoring lease of another backend type", {
        subnet: describeLease(lease),
        backend: type || "(none)",
        want: this.dp.leaseType,
      });
      if (this.#leases.has(key)) this.#forget(key, lease);
      return;
    }
    this.#ignored.clear(key);
    const entries = this.dp.entriesFor(this.#nl, lease);
    const prev = this.#applied.get(key);
    if (entries.length === 0) {
      if (this.#leases.has(key)) this.#forget(key, lease);
      return;
    }
    this.#leases.set(key, lease);
    try {
      if (prev) removeSuperseded(this.#nl, prev, entries);
      this.#applied.set(key, entries);
      for (const e of entries) installEntries(this.#nl, e);
      this.log.info("peer added", {
        subnet: describeLease(lease),
        route: entries.map((e) => formatRoute(e.route)).join(", "),
      });
    } catch (e) {
      this.#counts.errors++;
      this.log.error("failed to program peer; will retry on the next reconcile", {
        subnet: describeLease(lease),
        error: e,
      });
    }
  }

  #forget(key: string, lease: Lease): void {
    this.#leases.delete(key);
    this.#ignored.clear(key);
    const prev = this.#applied.get(key);
    this.#applied.delete(key);
    if (!prev) return;
    try {
      for (const e of prev) removeEntries(this.#nl, e);
      this.log.info("peer removed", { subnet: describeLease(lease) });
    } catch (e) {
      this.#counts.errors++;
      this.log.error("failed to remove peer entries", { subnet: describeLease(lease), error: e });
    }
  }

  /** Compares the kernel with the desired state and repairs it; returns the number of changes. */
  reconcile(reason: string): number {
    if (!this.#running) return 0;
    this.#counts.reconciles++;
    let changes = 0;
    try {
      for (const r of this.dp.ensureLocal(this.#nl)) {
        this.#count(r.kind);
        changes++;
        this.log.warn(`repaired: ${r.what}`, { trigger: reason });
      }
      const desired: PeerEntries[] = [];
      for (const [key, lease] of this.#leases) {
        const e = this.dp.entriesFor(this.#nl, lease);
        if (e.length === 0) continue;
        const prev = this.#applied.get(key);
        if (prev) removeSuperseded(this.#nl, prev, e);
        this.#applied.set(key, e);
        desired.push(...e);
      }
      const own = this.dp.ownership();
      const families = [...new Set(own.networks.map((n) => familyOf(n.ip)))];
      const ours = (x: { index: number }) => own.entryDevs.includes(x.index);
      const view: KernelView = {
        routes: families.flatMap((family) => routeList(this.#nl, { family })),
        neighs: families.flatMap((family) => neighList(this.#nl, { family }).filter(ours)),
        fdbs: own.entryDevs.length ? fdbList(this.#nl).filter(ours) : [],
      };
      // Without a snapshot after a full period the watcher found no leases at all.
      const cleanup = !this.#cleanupDone && (this.#snapshotSeen || this.#ticks > 0);
      const plan = planRepairs(desired, view, own, cleanup);
      changes += planSize(plan);
      this.#applyPlan(plan, reason);
      if (cleanup) {
        this.#cleanupDone = true;
        this.log.info("startup cleanup done", {
          stale: plan.staleRoutes.length + plan.staleNeighs.length + plan.staleFdbs.length,
          peers: this.#applied.size,
        });
      }
    } catch (e) {
      this.#counts.errors++;
      this.log.error("reconcile failed; retrying later", { trigger: reason, error: e });
    }
    releaseFreedMemory(); // the dumps' garbage, and the background threads' (rate-limited)
    return changes;
  }

  #applyPlan(plan: ReturnType<typeof planRepairs>, reason: string): void {
    const step = (kind: string, what: string, fn: () => void) => {
      try {
        fn();
        if (kind === "stale") this.#counts.stale_removed++;
        else this.#count(kind);
        this.log.warn(`${kind === "stale" ? "removed stale" : "repaired"}: ${what}`, {
          trigger: reason,
        });
      } catch (e) {
        this.#counts.errors++;
        this.log.error(`repair failed: ${what}`, { error: e });
      }
    };
    const nl = this.#nl;
    for (const n of plan.staleNeighs) {
      step(
        "stale",
        `neighbour ${describeNeigh(n)}`,
        () => removeNeigh(nl, { dev: n.index, ip: n.ip, mac: n.mac! }),
      );
    }
    for (const f of plan.staleFdbs) {
      step(
        "stale",
        `fdb ${describeFdb(f)}`,
        () => removeFdb(nl, { dev: f.index, mac: f.mac, dst: f.dst! }),
      );
    }
    for (const r of plan.staleRoutes) {
      step("stale", `route ${formatRoute(r)}`, () => deleteQuietly(() => routeDel(nl, r)));
    }
    for (const n of plan.neighs) {
      step(
        "neigh",
        `neighbour ${describeNeigh(n)}`,
        () => neighReplace(nl, { index: n.dev, ip: n.ip, mac: n.mac }),
      );
    }
    for (const f of plan.fdbs) {
      step(
        "fdb",
        `fdb ${describeFdb(f)}`,
        () => fdbReplace(nl, { index: f.dev, mac: f.mac, dst: f.dst }),
      );
    }
    for (const r of plan.routes) {
      step("route", `route ${formatRoute(r)}`, () => routeReplace(nl, r));
    }
  }

  #count(kind: string): void {
    this.#counts.repairs++;
    const k = `repairs_${kind}`;
    this.#counts[k] = (this.#counts[k] ?? 0) + 1;
  }

  /** Repair and peer counters; peers in each family (a dual-stack peer counts in both). */
  stats(): Record<string, number> {
    let v4 = 0, v6 = 0;
    for (const entries of this.#applied.values()) {
      if (entries.some((e) => familyOf(e.route.dst.ip) === 4)) v4++;
      if (entries.some((e) => familyOf(e.route.dst.ip) === 6)) v6++;
    }
    return { ...this.#counts, peers: this.#applied.size, peers_ipv4: v4, peers_ipv6: v6 };
  }
}
