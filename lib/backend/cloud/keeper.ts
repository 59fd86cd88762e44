/**
 * The engine of the cloud route backends: puts our own route into every route table, checks
 * it again every reconcile interval (and puts it back when it was deleted or changed), and
 * deletes blackhole routes, routes of removed leases and routes of a subnet we held before,
 * following {@link planRoutes}. The cloud is reached only through a small {@link RouteApi},
 * so that the engine is unit-tested against an in-memory table.
 * @module
 */

import { releaseFreedMemory } from "../../../ffi/malloc.ts";
import { FailureLog, sleep } from "../../core/async.ts";
import { formatNet4, type IP4Net } from "../../core/ip.ts";
import type { Logger } from "../../core/log.ts";
import type { LeaseEvent } from "../../values/lease.ts";
import {
  type CloudRoute,
  type DeleteReason,
  LeaseTracker,
  ownRouteInPlace,
  planRoutes,
  type RouteAction,
} from "./routes.ts";

/** The calls the engine makes; each throws an Error with one clear line on failure. */
export interface RouteApi {
  /** Our next hop, as {@link CloudRoute.target} spells it. */
  readonly ownTarget: string;
  /** The route tables programmed (AWS: route table ids; GCE: the network). */
  readonly tables: readonly string[];
  /** The routes of every table, by table id. */
  read(): Promise<Map<string, CloudRoute[]>>;
  /** Adds the route `subnet → ownTarget`. */
  create(table: string, subnet: IP4Net): Promise<void>;
  /** Points an existing route for `subnet` at ownTarget. */
  replace(table: string, subnet: IP4Net, existing: CloudRoute): Promise<void>;
  /** Deletes a route; a route that is already gone counts as deleted. */
  remove(table: string, route: CloudRoute): Promise<void>;
}

/** Settings of a {@link RouteKeeper}. */
export interface KeeperOptions {
  /** The flannel Network. */
  network: IP4Net;
  /** Time between checks (`--reconcile-interval`). */
  intervalMs: number;
  /** How long a removed lease stays removed before its route is deleted. */
  graceMs: number;
  log: Logger;
}

const DELETE_COUNTER: Record<DeleteReason, string> = {
  blackhole: "routes_deleted_blackhole",
  stale: "routes_deleted_stale",
  previous: "routes_deleted_previous",
};

const DELETE_TEXT: Record<DeleteReason, string> = {
  blackhole: "deleted blackhole route",
  stale: "deleted route of a removed lease",
  previous: "deleted route of a subnet this host held before",
};

/** Keeps our route in the cloud's route tables. */
export class RouteKeeper {
  readonly #tracker = new LeaseTracker();
  readonly #failures: FailureLog;
  /** Per table: whether our route was in place after the last check. */
  readonly #inPlace = new Map<string, boolean>();
  /** Per table: why our route is not in place (the last error). */
  readonly #why = new Map<string, string>();
  readonly #stats: Record<string, number> = {
    route_checks: 0,
    routes_created: 0,
    routes_replaced: 0,
    routes_deleted_blackhole: 0,
    routes_deleted_stale: 0,
    routes_deleted_previous: 0,
    repairs_own_route: 0,
    api_failures: 0,
  };
  #own: IP4Net | null = null;
  #readError = "";
  #running: Promise<void> | null = null;
  #abort: AbortController | null = null;

  constructor(private readonly api: RouteApi, private readonly o: KeeperOptions) {
    this.#failures = new FailureLog(o.log, "route tables in order again");
  }

  /** Puts our route in place (one check, never throws) and starts the periodic checks. */
  async start(own: IP4Net): Promise<void> {
    await this.#running; // a check for a previous subnet, still under way after stop()
    this.#own = own;
    this.#tracker.forget(formatNet4(own));
    this.#inPlace.clear();
    this.#why.clear();
    await this.check();
    const abort = new AbortController();
    this.#abort = abort;
    (async () => {
      while (await sleep(this.o.intervalMs, abort.signal)) await this.check();
    })();
  }

  /** Follows the remote leases (for the cleanup of removed leases' routes). */
  handle(events: readonly LeaseEvent[]): void {
    this.#tracker.apply(events, Date.now());
  }

  /**
   * Stops the periodic checks; the routes stay (a restart cuts no traffic). A check under
   * way is not waited for: with a slow cloud API it could hold a shutdown for minutes.
   */
  stop(): Promise<void> {
    this.#abort?.abort();
    this.#abort = null;
    return Promise.resolve();
  }

  /** One check of every table; a check already running is joined, not doubled. */
  check(): Promise<void> {
    this.#running ??= this.#check()
      .catch((e) => this.o.log.error("route check failed", { error: e })) // a bug, not the cloud
      .finally(() => this.#running = null);
    return this.#running;
  }

  /** Counters for `/metrics`. */
  stats(): Record<string, number> {
    return { ...this.#stats };
  }

  /** Why our route is not known to be in place in every table; empty when it is. */
  problems(): string[] {
    const own = this.#own;
    if (!own) return [];
    const dest = `own route ${formatNet4(own)} → ${this.api.ownTarget}`;
    const out: string[] = [];
    for (const t of this.api.tables) {
      const ok = this.#inPlace.get(t);
      if (ok === true) continue;
      const why = this.#why.get(t) ?? this.#readError;
      out.push(
        `${dest} ${ok === undefined ? "not checked yet" : "not in place"} in ${t}${
          why ? `: ${why}` : ""
        }`,
      );
    }
    return out;
  }

  async #check(): Promise<void> {
    const own = this.#own;
    if (!own) return;
    this.#stats.route_checks++;
    const now = Date.now();
    const stale = this.#tracker.stale(now, this.o.graceMs);
    let tables: Map<string, CloudRoute[]>;
    try {
      tables = await this.api.read();
    } catch (e) {
      this.#stats.api_failures++;
      this.#readError = (e as Error).message;
      this.#failures.failed(`cannot check the route tables: ${this.#readError}`);
      return;
    }
    this.#readError = "";
    const errors: string[] = [];
    const failedDeletes = new Set<string>();
    for (const table of this.api.tables) {
      const routes = tables.get(table) ?? [];
      const actions = planRoutes({
        routes,
        network: this.o.network,
        own,
        ownTarget: this.api.ownTarget,
        leased: this.#tracker.leased,
        stale,
      });
      let ownError = "";
      for (const a of actions) {
        try {
          await this.#apply(table, own, a);
        } catch (e) {
          this.#stats.api_failures++;
          const msg = (e as Error).message;
          if (a.kind === "delete") {
            failedDeletes.add(a.route.dest);
            errors.push(`cannot delete route ${a.route.dest} in ${table}: ${msg}`);
          } else {
            ownError = msg;
            errors.push(`own route ${formatNet4(own)} not in place in ${table}: ${msg}`);
          }
        }
      }
      const inPlace = !ownError &&
        (actions.some((a) => a.kind !== "delete") ||
          ownRouteInPlace(routes, own, this.api.ownTarget));
      this.#inPlace.set(table, inPlace);
      if (ownError) this.#why.set(table, ownError);
      else this.#why.delete(table);
    }
    for (const s of stale) if (!failedDeletes.has(s)) this.#tracker.forget(s);
    if (errors.length) this.#failures.failed(errors.join("; "));
    else this.#failures.ok();
    releaseFreedMemory(); // the SDK's and fetch's garbage of this check
  }

  async #apply(table: string, own: IP4Net, a: RouteAction): Promise<void> {
    const fields = { table, subnet: formatNet4(own), target: this.api.ownTarget };
    // A route that was in place at the last check and is not now was deleted or changed.
    const repair = this.#inPlace.get(table) === true;
    switch (a.kind) {
      case "delete":
        await this.api.remove(table, a.route);
        this.#stats[DELETE_COUNTER[a.reason]]++;
        this.o.log.info(DELETE_TEXT[a.reason], {
          table,
          subnet: a.route.dest,
          target: a.route.target ?? undefined,
        });
        return;
      case "create":
        await this.api.create(table, own);
        this.#stats.routes_created++;
        if (repair) this.#stats.repairs_own_route++;
        this.o.log.info(
          repair ? "own route was deleted; put it back" : "created own route",
          fields,
        );
        return;
      case "replace":
        await this.api.replace(table, own, a.route);
        this.#stats.routes_replaced++;
        if (repair) this.#stats.repairs_own_route++;
        this.o.log.info(
          repair ? "own route was changed; put it back" : "replaced conflicting route",
          { ...fields, was: a.route.blackhole ? "blackhole" : a.route.target ?? "other" },
        );
        return;
    }
  }
}
