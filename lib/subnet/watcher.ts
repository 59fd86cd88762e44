/**
 * Follows every host's lease: list, then watch `<prefix>/subnets` from the list revision,
 * and hand the backend added/removed events. A {@link WatchSession} keeps the stream alive
 * (reconnects, stalls, compaction); a {@link LeaseView} turns listings and events into
 * remote lease events and changes of our own key.
 * @module
 */

import { Backoff, FailureLog, sleep } from "../core/async.ts";
import type { IP4Net, IP6Net } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import type { Lease } from "../values/lease.ts";
import { LeaseView, type LeaseViewCallbacks } from "./lease_view.ts";
import type { SubnetRegistry } from "./registry.ts";
import { WatchSession, type WatchSessionOptions } from "./watch_session.ts";

export type { OwnEvent } from "./lease_view.ts";

const log = logger("watch");

/** Tunables; defaults suit production. */
export type WatcherOptions = Omit<WatchSessionOptions, "failures">;

/** Counters for metrics and tests. */
export interface WatcherStats {
  events: number;
  reconnects: number;
  relists: number;
  compactions: number;
  stalls: number;
  badLeases: number;
  lastEventAt: number;
  lastResponseAt: number;
  connected: boolean;
}

/** Watches all leases and reports remote changes and changes to our own key. */
export class LeaseWatcher {
  readonly #view: LeaseView;
  readonly #session: WatchSession;
  readonly #failures = new FailureLog(log, "watch resumed");
  readonly #backoff: Backoff;
  #stop = new AbortController();
  #relists = 0;

  /**
   * @param registry where leases are listed and watched
   * @param cb remote lease events, own-key changes, and which leases to refuse
   */
  constructor(
    private readonly registry: SubnetRegistry,
    cb: LeaseViewCallbacks,
    opts: WatcherOptions = {},
  ) {
    this.#view = new LeaseView(cb, (l) => registry.keyOf(l.subnet, l.ipv6Subnet));
    this.#session = new WatchSession(registry.store, registry.subnetsPrefix, {
      onEvents: (evs) => this.#view.apply(evs),
      onCompacted: () => void this.#relistAndWatch(),
    }, { ...opts, failures: this.#failures });
    this.#backoff = new Backoff({
      minMs: opts.backoffMinMs ?? 100,
      maxMs: opts.backoffMaxMs ?? 5000,
    });
  }

  /** Sets our own subnets and public addresses (see {@link LeaseView.setOwn}). */
  setOwn(
    subnet: IP4Net | null,
    publicIP?: number,
    ipv6Subnet?: IP6Net,
    publicIPv6?: bigint | null,
  ): void {
    this.#view.setOwn(subnet, publicIP, ipv6Subnet, publicIPv6);
  }

  /** Leases currently known (remote only). */
  leases(): Lease[] {
    return this.#view.leases();
  }

  /** The revision up to which events have been processed. */
  get revision(): bigint {
    return this.#session.revision;
  }

  /** Counters of the view and the stream together. */
  get stats(): WatcherStats {
    return { ...this.#view.stats, ...this.#session.stats, relists: this.#relists };
  }

  /** Lists and starts watching; resolves after the first snapshot has been delivered. */
  async start(): Promise<void> {
    this.#stop = new AbortController();
    await this.#relistAndWatch();
  }

  /** Re-lists now (after our own subnet changed) and emits the difference. */
  async resync(): Promise<void> {
    await this.#relistAndWatch();
  }

  /** Stops watching. */
  stop(): void {
    this.#stop.abort();
    this.#session.stop();
  }

  /** Lists until the store answers, applies the snapshot, and watches from its revision. */
  async #relistAndWatch(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        const list = await this.registry.listLeases();
        if (signal.aborted) return;
        this.#relists++;
        this.#backoff.reset();
        this.#view.snapshot(list);
        this.#session.start(list.revision);
        return;
      } catch (e) {
        const wait = this.#backoff.next();
        this.#failures.failed(
          `cannot list leases; retrying with backoff up to ${this.#backoff.options.maxMs} ms`,
          { error: e, retryInMs: wait },
        );
        if (!await sleep(wait, signal)) return;
      }
    }
  }
}
