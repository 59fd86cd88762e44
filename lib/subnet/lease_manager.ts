/**
 * Our own subnet lease: acquisition in upstream's order, renewal before expiry, and
 * recovery when the lease is lost.
 *
 * Acquisition (per attempt, up to 10 attempts, a lost create race is retried — upstream
 * gives up on the first one):
 *   1. reuse the lease that carries our PublicIP (re-put with a fresh lease; a lease-less
 *      reservation stays lease-less);
 *   2. else the previous subnet from subnet.env when nobody holds it;
 *   3. else one of the first 100 free subnets, uniformly at random.
 * Every write is a transaction, so two hosts never hold overlapping subnets.
 *
 * Loss (our key deleted, expired while we were cut off, or taken over): regain the same
 * subnet when it is still free, else take a new one and say so loudly. Upstream exits 0
 * instead and lets a supervisor restart it with a new subnet.
 * @module
 */

import type { NetworkConfig } from "../values/config.ts";
import {
  describeLease,
  type Lease,
  type LeaseAttrs,
  samePublicAddress,
  sameSubnets,
} from "../values/lease.ts";
import { Backoff, FailureLog, sleep } from "../core/async.ts";
import { logger } from "../core/log.ts";
import type { PreviousSubnets } from "../values/subnet_env.ts";
import { freeSubnets4, freeSubnets6, isCompatible, pickRandom } from "./allocator.ts";
import { formatIP4, type IP4Net, type IP6Net, overlaps4, overlaps6 } from "../core/ip.ts";
import type { SubnetRegistry } from "./registry.ts";
import type { OwnEvent } from "./watcher.ts";

const log = logger("subnet");

/** No free subnet is left in SubnetMin..SubnetMax. */
export class OutOfSubnetsError extends Error {
  constructor(detail = "") {
    super(`out of subnets${detail ? `: ${detail}` : ""}`);
    this.name = "OutOfSubnetsError";
  }
}

/** Settings of the lease manager. */
export interface LeaseManagerOptions {
  registry: SubnetRegistry;
  config: NetworkConfig;
  /** Our lease attributes (PublicIP, BackendType, BackendData). */
  attrs: LeaseAttrs;
  /** Hint from the previous run's subnet.env. */
  previous?: PreviousSubnets;
  /** etcd lease TTL in seconds (upstream: 86400). */
  ttlSeconds?: number;
  /** `--subnet-lease-renew-margin` in minutes (upstream default 60). */
  renewMarginMinutes?: number;
  /** Create attempts before giving up (upstream's constant: 10). */
  maxAttempts?: number;
  /** Random source in [0,1) for the candidate pick. */
  random?: () => number;
  /** Retry backoff bounds for etcd errors during renewal and recovery. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Called after the lease was regained or replaced by another subnet. */
  onChange?: (lease: Lease, previous: Lease, why: LeaseChange) => void | Promise<void>;
}

/** Why our lease changed. */
export type LeaseChange = "regained" | "changed";

/** Counters for metrics and tests. */
export interface LeaseStats {
  renewals: number;
  renewFailures: number;
  losses: number;
  regained: number;
  subnetChanges: number;
  acquireRetries: number;
}

/** Holds and keeps our lease. */
export class LeaseManager {
  #lease: Lease | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #stop = new AbortController();
  readonly #retry: Backoff;
  readonly #failures = new FailureLog(log, "etcd answers again");
  readonly #o: Required<Omit<LeaseManagerOptions, "previous" | "onChange">> & {
    previous: PreviousSubnets;
  };
  readonly #onChange: NonNullable<LeaseManagerOptions["onChange"]>;
  readonly stats: LeaseStats = {
    renewals: 0,
    renewFailures: 0,
    losses: 0,
    regained: 0,
    subnetChanges: 0,
    acquireRetries: 0,
  };

  constructor(opts: LeaseManagerOptions) {
    this.#o = {
      previous: opts.previous ?? {},
      ttlSeconds: opts.ttlSeconds ?? 86400,
      renewMarginMinutes: opts.renewMarginMinutes ?? 60,
      maxAttempts: opts.maxAttempts ?? 10,
      random: opts.random ?? Math.random,
      retryMinMs: opts.retryMinMs ?? 1000,
      // As the watch: a small request every 5 s is nothing to etcd, and a host that lost its
      // lease while cut off gets it back within seconds of the partition healing.
      retryMaxMs: opts.retryMaxMs ?? 5000,
      registry: opts.registry,
      config: opts.config,
      attrs: opts.attrs,
    };
    this.#onChange = opts.onChange ?? (() => {});
    this.#retry = new Backoff({ minMs: this.#o.retryMinMs, maxMs: this.#o.retryMaxMs });
  }

  /** The lease we hold, or null before acquisition. */
  get lease(): Lease | null {
    return this.#lease;
  }

  /** Acquires a lease (see module doc). Throws OutOfSubnetsError or the last etcd error. */
  acquire(): Promise<Lease> {
    return this.#serial(async () => {
      const l = await this.#acquire(this.#o.previous, null);
      this.#lease = l;
      return l;
    });
  }

  async #acquire(prev: PreviousSubnets, avoid: Lease | null): Promise<Lease> {
    const { registry, config, attrs } = this.#o;
    for (let attempt = 1; attempt <= this.#o.maxAttempts; attempt++) {
      if (attempt > 1) this.stats.acquireRetries++;
      const { leases, bad } = await registry.listLeases();
      // Keys that are no usable lease (a bad value, host bits set) still hold their subnet.
      const occupied = [
        ...leases,
        ...bad.flatMap((b) => b.occupies ? [b.occupies] : []),
      ];
      // 1. Reuse the lease that carries our PublicIP (IPv6-only: our PublicIPv6).
      const mine = avoid ? undefined : leases.find((l) => samePublicAddress(l.attrs, attrs));
      if (mine) {
        if (isCompatible(config, mine)) {
          const reservation = mine.leaseId === "0";
          const got = await registry.replace(mine, attrs, reservation ? 0 : this.#o.ttlSeconds);
          if (got) {
            log.info(
              reservation
                ? "adopted reservation for our public IP"
                : "reusing lease of our public IP",
              {
                subnet: describeLease(got),
                publicIP: attrs.publicIP ? formatIP4(attrs.publicIP) : undefined,
              },
            );
            return got;
          }
          continue; // changed under us: look again
        }
        log.warn("our previous lease does not fit the config; deleting it", {
          subnet: describeLease(mine),
        });
        await registry.delete(mine.subnet, mine.ipv6Subnet);
        continue;
      }
      // 2. The previous subnet from subnet.env, when nobody holds it. An IPv6-only network
      // keys every lease by 0.0.0.0/0: only the IPv6 part tells them apart.
      const v4 = config.enableIPv4;
      if ((v4 ? prev.subnet : prev.ipv6Subnet) && !avoid) {
        const cand = {
          subnet: v4 ? prev.subnet! : { ip: 0, prefix: 0 },
          ipv6Subnet: prev.ipv6Subnet,
        };
        const held = occupied.some((l) =>
          (v4 && overlaps4(l.subnet, cand.subnet)) ||
          (prev.ipv6Subnet && l.ipv6Subnet && overlaps6(l.ipv6Subnet, prev.ipv6Subnet))
        );
        if (!held && isCompatible(config, cand)) {
          const got = await registry.create(
            cand.subnet,
            cand.ipv6Subnet,
            attrs,
            this.#o.ttlSeconds,
          );
          if (got) {
            log.info("acquired previous subnet from subnet file", { subnet: describeLease(got) });
            return got;
          }
          continue;
        }
      }
      // 3. A random one of the first 100 free subnets.
      const cand = this.#pick(occupied, avoid);
      const got = await registry.create(cand.subnet, cand.ipv6Subnet, attrs, this.#o.ttlSeconds);
      if (got) {
        log.info("acquired new subnet", { subnet: describeLease(got), attempt });
        return got;
      }
      log.info("lost a race for a subnet; retrying", { subnet: describeLease(cand), attempt });
    }
    throw new Error(
      `max retries reached trying to acquire a subnet (${this.#o.maxAttempts} attempts)`,
    );
  }

  #pick(
    leases: { subnet: IP4Net; ipv6Subnet?: IP6Net }[],
    avoid: Lease | null,
  ): { subnet: IP4Net; ipv6Subnet?: IP6Net } {
    const { config } = this.#o;
    const taken = leases.map((l) => l.subnet);
    if (avoid) taken.push(avoid.subnet);
    const v4 = config.enableIPv4
      ? pickRandom(freeSubnets4(config, taken), this.#o.random)
      : undefined;
    if (config.enableIPv4 && !v4) {
      throw new OutOfSubnetsError(
        `all of ${formatIP4(config.subnetMin)}..${
          formatIP4(config.subnetMax)
        } /${config.subnetLen} are leased`,
      );
    }
    let v6;
    if (config.enableIPv6) {
      const taken6 = leases.flatMap((l) => (l.ipv6Subnet ? [l.ipv6Subnet] : []));
      v6 = pickRandom(freeSubnets6(config, taken6), this.#o.random);
      if (!v6) throw new OutOfSubnetsError("no free IPv6 subnet");
    }
    // IPv6-only networks still key leases by an IPv4 part; upstream uses 0.0.0.0/0.
    return { subnet: v4 ?? { ip: 0, prefix: 0 }, ipv6Subnet: v6 };
  }

  /** Starts the renewal timer. */
  startRenewal(): void {
    this.#schedule();
  }

  /** Stops timers and retries; the lease stays in etcd (as upstream: nothing is deleted). */
  stop(): void {
    this.#stop.abort();
    clearTimeout(this.#renewTimer);
  }

  /** Renews now (tests, tools); the same path the timer takes. */
  renew(): Promise<void> {
    return this.#serial(() => this.#renew());
  }

  /** When the next renewal is due (ms since epoch), or null for a reservation. */
  get renewAt(): number | null {
    const l = this.#lease;
    if (!l || !l.expiration) return null;
    const margin = Math.min(this.#o.renewMarginMinutes * 60, this.#o.ttlSeconds / 2) * 1000;
    return l.expiration - margin;
  }

  #schedule(delayMs?: number): void {
    clearTimeout(this.#renewTimer);
    if (this.#stop.signal.aborted) return;
    const at = this.renewAt;
    if (at === null && delayMs === undefined) return;
    const d = delayMs ?? Math.max(0, at! - Date.now());
    this.#renewTimer = setTimeout(() => void this.#serial(() => this.#renew()), d);
  }

  async #renew(): Promise<void> {
    const cur = this.#lease;
    if (!cur || this.#stop.signal.aborted) return;
    try {
      const got = await this.#o.registry.replace(cur, this.#o.attrs, this.#o.ttlSeconds);
      if (got) {
        this.#lease = got;
        this.stats.renewals++;
        this.#retry.reset();
        this.#failures.ok({ after: "renewed lease" });
        log.info("renewed lease", {
          subnet: describeLease(got),
          expires: new Date(got.expiration!).toISOString(),
        });
        this.#schedule();
        return;
      }
      // The key changed since our last write: find out what happened.
      const now = await this.#o.registry.getLease(cur.subnet, cur.ipv6Subnet);
      if (this.#adoptIfOurs(cur, now)) {
        this.#schedule(0);
        return;
      }
      this.stats.losses++;
      await this.#recover(now ? "taken" : "deleted");
      this.#schedule();
    } catch (e) {
      this.stats.renewFailures++;
      const wait = this.#retry.next();
      this.#failures.failed(this.#failingText("lease renewal failed"), {
        subnet: describeLease(cur),
        error: e,
        retryInMs: wait,
      });
      this.#schedule(wait);
    }
  }

  /** The warning for the first of a run of failures; later ones go to `-v=1`. */
  #failingText(what: string): string {
    return `${what}; retrying every ${
      this.#o.retryMaxMs / 1000
    } s at most, quietly until etcd answers`;
  }

  /**
   * Feeds events on our own key from the watcher. A put by someone else, or a delete
   * (by hand or by TTL expiry), triggers recovery.
   */
  handleOwn(ev: OwnEvent): void {
    void this.#serial(async () => {
      const cur = this.#lease;
      if (!cur || this.#stop.signal.aborted) return;
      if (ev.lease && !sameSubnets(ev.lease, cur)) return; // about a subnet we no longer hold
      if (ev.type === "put" && ev.lease) {
        if (ev.lease.attrs.publicIP === this.#o.attrs.publicIP) {
          // Our own write (or a re-put of it): track its revision so renewals compare right.
          if (
            ev.lease.modRevision !== undefined && ev.lease.modRevision >= (cur.modRevision ?? 0n)
          ) {
            this.#lease = { ...cur, modRevision: ev.lease.modRevision, leaseId: ev.lease.leaseId };
          }
          return;
        }
        await this.#recoverWithRetry("taken");
        return;
      }
      if (ev.type === "delete" && !await this.#stillOurs(cur)) {
        await this.#recoverWithRetry("deleted");
      }
    });
  }

  /**
   * Whether the key still holds our lease despite a delete event. A watch that was cut off
   * delivers the expiry late, possibly after a renewal already re-created the key: acting
   * on it would give up a subnet we hold. Unknown (etcd unreachable) counts as lost.
   */
  async #stillOurs(cur: Lease): Promise<boolean> {
    return this.#adoptIfOurs(
      cur,
      await this.#o.registry.getLease(cur.subnet, cur.ipv6Subnet).catch(() => null),
    );
  }

  /** Tracks `now` (the lease at our key) when it carries our addresses; says whether it did. */
  #adoptIfOurs(cur: Lease, now: Lease | null): boolean {
    const me = this.#o.attrs;
    if (!now || now.attrs.publicIP !== me.publicIP || now.attrs.publicIPv6 !== me.publicIPv6) {
      return false;
    }
    this.#lease = { ...cur, modRevision: now.modRevision, leaseId: now.leaseId };
    return true;
  }

  async #recoverWithRetry(why: "taken" | "deleted"): Promise<void> {
    this.stats.losses++;
    const backoff = new Backoff({ minMs: this.#o.retryMinMs, maxMs: this.#o.retryMaxMs });
    while (!this.#stop.signal.aborted) {
      try {
        await this.#recover(why);
        this.#failures.ok({ after: "lease recovered" });
        this.#schedule();
        return;
      } catch (e) {
        const wait = backoff.next();
        this.#failures.failed(this.#failingText("cannot recover lease yet"), {
          error: e,
          retryInMs: wait,
        });
        if (!await sleep(wait, this.#stop.signal)) return;
      }
    }
  }

  async #recover(why: "taken" | "deleted"): Promise<void> {
    const old = this.#lease!;
    if (why === "deleted") {
      const again = await this.#o.registry.create(
        old.subnet,
        old.ipv6Subnet,
        this.#o.attrs,
        this.#o.ttlSeconds,
      );
      if (again) {
        this.#lease = again;
        this.stats.regained++;
        log.warn("our lease was deleted or expired; regained the same subnet", {
          subnet: describeLease(again),
        });
        await this.#onChange(again, old, "regained");
        return;
      }
      // Ours after all (a create whose answer was lost): keep it. Else someone else took it.
      if (this.#adoptIfOurs(old, await this.#o.registry.getLease(old.subnet, old.ipv6Subnet))) {
        return;
      }
      why = "taken";
    }
    const fresh = await this.#acquire({}, old);
    this.#lease = fresh;
    this.stats.subnetChanges++;
    log.error(
      `SUBNET CHANGED: our lease on ${describeLease(old)} was ${
        why === "taken" ? "taken by another host" : "lost and re-taken"
      }; ` +
        `now using ${describeLease(fresh)}. Containers still on the old subnet must be restarted.`,
      { old: describeLease(old), subnet: describeLease(fresh) },
    );
    await this.#onChange(fresh, old, "changed");
  }

  /** Runs lease operations one at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => {});
    return p;
  }
}
