/**
 * What the cloud route backends (aws-vpc, gce) do to a route table, as pure functions of
 * what the table holds and what the leases say: the one own route to put in place, and the
 * routes to delete. No I/O; the API calls live in each backend's folder.
 *
 * Safety with several daemons sharing one table (every host programs only its own route,
 * as upstream): a route of another host is deleted only when its next hop is gone
 * (blackhole), or when its subnet belongs to a lease that this daemon saw removed, that has
 * not been leased again since, and that has stayed removed for a grace period. A route whose
 * subnet is leased right now is never deleted unless it is a blackhole, and routes outside
 * the flannel Network are never touched. README "Cloud route backends" argues the cases.
 * @module
 */

import { contains4, equal4, formatNet4, type IP4Net, parseCIDR4 } from "../../core/ip.ts";
import type { LeaseEvent } from "../../values/lease.ts";

/** A route as the cloud holds it, reduced to what the plan needs. */
export interface CloudRoute {
  /** Destination as the API gives it (CIDR); routes that do not parse as IPv4 are left alone. */
  dest: string;
  /** Next hop in the API's terms (AWS: ENI id; GCE: instance path); null for other kinds. */
  target: string | null;
  /** The next hop is gone (AWS state `blackhole`; GCE warning NEXT_HOP_INSTANCE_NOT_FOUND). */
  blackhole: boolean;
  /** The API's handle for the route, when it is not the destination (GCE: the route name). */
  name?: string;
}

/** Why a route is deleted. */
export type DeleteReason = "blackhole" | "stale" | "previous";

/** One step of a plan; deletions come first (they free room under a route limit). */
export type RouteAction =
  | { kind: "create" }
  | { kind: "replace"; route: CloudRoute }
  | { kind: "delete"; route: CloudRoute; reason: DeleteReason };

/** Everything a plan depends on. */
export interface PlanInput {
  /** The table's routes. */
  routes: readonly CloudRoute[];
  /** The flannel Network: nothing outside it is touched. */
  network: IP4Net;
  /** Our subnet. */
  own: IP4Net;
  /** Our next hop (ENI id, instance path). */
  ownTarget: string;
  /** Subnets (`10.5.1.0/24`) of remote leases that are live now. */
  leased: ReadonlySet<string>;
  /** Subnets of removed leases whose routes are due for deletion (see {@link LeaseTracker}). */
  stale: ReadonlySet<string>;
}

/** Whether `n` lies entirely inside `network`. */
export function insideNetwork(network: IP4Net, n: IP4Net): boolean {
  return n.prefix >= network.prefix && contains4(network, n.ip);
}

/** The actions that bring one table to the wanted state; empty when it is there. */
export function planRoutes(i: PlanInput): RouteAction[] {
  const deletes: RouteAction[] = [];
  let ownRoute: CloudRoute | undefined;
  for (const r of i.routes) {
    const dest = parseCIDR4(r.dest);
    // Unparseable, not in canonical form (host bits set) or outside the Network: not ours.
    if (!dest || formatNet4(dest) !== r.dest || !insideNetwork(i.network, dest)) continue;
    if (equal4(dest, i.own)) {
      ownRoute = r;
      continue;
    }
    if (r.blackhole) {
      deletes.push({ kind: "delete", route: r, reason: "blackhole" });
      continue;
    }
    if (i.leased.has(r.dest)) continue; // a live host's route
    if (r.target === i.ownTarget) {
      // Only this host points routes at its own next hop: a subnet it held before.
      deletes.push({ kind: "delete", route: r, reason: "previous" });
    } else if (i.stale.has(r.dest)) {
      deletes.push({ kind: "delete", route: r, reason: "stale" });
    }
  }
  if (!ownRoute) return [...deletes, { kind: "create" }];
  if (ownRoute.blackhole || ownRoute.target !== i.ownTarget) {
    return [...deletes, { kind: "replace", route: ownRoute }];
  }
  return deletes;
}

/** Whether the table holds our route, active and to our next hop. */
export function ownRouteInPlace(
  routes: readonly CloudRoute[],
  own: IP4Net,
  ownTarget: string,
): boolean {
  const dest = formatNet4(own);
  return routes.some((r) => r.dest === dest && r.target === ownTarget && !r.blackhole);
}

/**
 * The remote leases as far as route cleanup cares: which subnets are leased now, and which
 * were removed and when. A removed subnet becomes stale once it has stayed removed for the
 * grace period (a host whose lease lapsed and that takes the same subnet back keeps its
 * route), and stops being stale when it is leased again or its routes are gone.
 */
export class LeaseTracker {
  readonly #leased = new Set<string>();
  readonly #removedAt = new Map<string, number>();

  /** Subnets leased by other hosts now. */
  get leased(): ReadonlySet<string> {
    return this.#leased;
  }

  /** Applies remote lease events (idempotent). */
  apply(events: readonly LeaseEvent[], now: number): void {
    for (const ev of events) {
      const key = formatNet4(ev.lease.subnet);
      if (ev.type === "added") {
        this.#leased.add(key);
        this.#removedAt.delete(key);
      } else {
        this.#leased.delete(key);
        if (!this.#removedAt.has(key)) this.#removedAt.set(key, now);
      }
    }
  }

  /** Removed subnets not leased again for at least `graceMs`. */
  stale(now: number, graceMs: number): Set<string> {
    const out = new Set<string>();
    for (const [key, at] of this.#removedAt) if (now - at >= graceMs) out.add(key);
    return out;
  }

  /** Removed subnets waiting for their grace period or their deletion. */
  get pending(): number {
    return this.#removedAt.size;
  }

  /** Forgets a removed subnet: its routes are gone, or it is ours now. */
  forget(subnet: string): void {
    this.#removedAt.delete(subnet);
  }
}
