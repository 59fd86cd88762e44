/**
 * One long-lived watch of a prefix, kept alive across everything that can happen to it:
 * - a broken stream is re-created with backoff (100 ms → 5 s by default) from the last
 *   revision whose events were *delivered*, not the header revision of a catch-up batch,
 *   so no event is lost or repeated;
 * - a silent stream is noticed: a progress request every `progressIntervalMs`, and when no
 *   answer of any kind comes within `stallTimeoutMs` the stream is re-established on a
 *   fresh connection (gRPC streams have stalled under Deno);
 * - a compaction past our revision ends the session; the owner re-lists and starts it again
 *   (upstream looped on that error and flooded its logs, flannel#2470).
 * @module
 */

import { Backoff, FailureLog } from "../core/async.ts";
import { logger } from "../core/log.ts";
import type { LeaseStore, StoreEvent, Watch } from "./store.ts";

const log = logger("watch");

/** Tunables; defaults suit production. */
export interface WatchSessionOptions {
  backoffMinMs?: number;
  backoffMaxMs?: number;
  progressIntervalMs?: number;
  stallTimeoutMs?: number;
  /** Where failures and the recovery are logged (shared with the owner's list retries). */
  failures?: FailureLog;
}

/** Where a session's results go. */
export interface WatchSessionCallbacks {
  /** Events of one store answer, in revision order. */
  onEvents(events: StoreEvent[]): void;
  /** The history we needed was compacted: list again and `start()` from the new revision. */
  onCompacted(): void;
}

/** Counters for metrics and tests. */
export interface WatchSessionStats {
  reconnects: number;
  compactions: number;
  stalls: number;
  lastEventAt: number;
  lastResponseAt: number;
  connected: boolean;
}

/** A prefix watch that survives disconnects and stalls. */
export class WatchSession {
  readonly #o: Required<Omit<WatchSessionOptions, "failures">>;
  readonly #backoff: Backoff;
  readonly #failures: FailureLog;
  #watch: Watch | null = null;
  /** Bumped whenever the current watch ends, so late callbacks of an old one are ignored. */
  #generation = 0;
  /** Highest revision whose events have been delivered. */
  #lastSeen = 0n;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #progressTimer: ReturnType<typeof setInterval> | undefined;
  /** When an unanswered progress request (or create) was sent; 0: none pending. */
  #pendingSince = 0;
  #running = false;
  readonly stats: WatchSessionStats = {
    reconnects: 0,
    compactions: 0,
    stalls: 0,
    lastEventAt: 0,
    lastResponseAt: 0,
    connected: false,
  };

  constructor(
    private readonly store: LeaseStore,
    private readonly prefix: string,
    private readonly cb: WatchSessionCallbacks,
    opts: WatchSessionOptions = {},
  ) {
    this.#o = {
      backoffMinMs: opts.backoffMinMs ?? 100,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
      progressIntervalMs: opts.progressIntervalMs ?? 5000,
      stallTimeoutMs: opts.stallTimeoutMs ?? 15000,
    };
    this.#backoff = new Backoff({ minMs: this.#o.backoffMinMs, maxMs: this.#o.backoffMaxMs });
    this.#failures = opts.failures ?? new FailureLog(log, "watch resumed");
  }

  /** The revision up to which events have been delivered. */
  get revision(): bigint {
    return this.#lastSeen;
  }

  /** Starts (or restarts) watching after `revision`: the next event has a higher one. */
  start(revision: bigint): void {
    this.#close();
    clearTimeout(this.#timer);
    this.#lastSeen = revision;
    this.#running = true;
    this.#progressTimer ??= setInterval(() => this.#tick(), this.#o.progressIntervalMs);
    this.#connect();
  }

  /** Stops watching. */
  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    clearInterval(this.#progressTimer);
    this.#progressTimer = undefined;
    this.#close();
  }

  #connect(): void {
    if (!this.#running) return;
    this.#pendingSince = Date.now(); // the create itself must be answered in time
    const gen = ++this.#generation;
    const live = () => gen === this.#generation;
    this.#watch = this.store.watch(this.prefix, this.#lastSeen + 1n, {
      created: () => {
        if (!live()) return;
        this.#answered();
        this.stats.connected = true;
        this.#backoff.reset();
        this.#failures.ok({ revision: String(this.#lastSeen) });
      },
      events: (events) => {
        if (!live()) return;
        this.#answered();
        this.stats.lastEventAt = Date.now();
        for (const ev of events) {
          const r = ev.type === "put" ? ev.kv.modRevision : ev.modRevision;
          if (r > this.#lastSeen) this.#lastSeen = r;
        }
        this.cb.onEvents(events);
      },
      progress: (revision) => {
        if (!live()) return;
        this.#answered();
        if (revision > this.#lastSeen) this.#lastSeen = revision;
      },
      compacted: (compactRevision) => {
        if (!live()) return;
        this.#answered();
        this.#close();
        this.stats.compactions++;
        log.warn("watch revision was compacted; re-listing and resuming", {
          wanted: String(this.#lastSeen + 1n),
          compacted: String(compactRevision),
        });
        this.cb.onCompacted();
      },
      failed: (error) => {
        if (live()) this.#reconnect("watch interrupted", error);
      },
    });
  }

  #answered(): void {
    this.stats.lastResponseAt = Date.now();
    this.#pendingSince = 0;
  }

  #close(): void {
    const w = this.#watch;
    this.#watch = null;
    this.#generation++;
    this.stats.connected = false;
    w?.close();
  }

  #reconnect(why: string, error: unknown): void {
    this.#close();
    if (!this.#running) return;
    this.stats.reconnects++;
    const wait = this.#backoff.next();
    this.#failures.failed(`${why}; retrying with backoff up to ${this.#o.backoffMaxMs} ms`, {
      error,
      retryInMs: wait,
    });
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), wait);
  }

  #tick(): void {
    const w = this.#watch;
    if (!w || !this.#running) return;
    if (this.#pendingSince && Date.now() - this.#pendingSince > this.#o.stallTimeoutMs) {
      this.stats.stalls++;
      this.#close();
      this.store.resetWatchConnection(); // the silent stream may sit on a wedged connection
      this.#reconnect(
        "watch stream silent (no progress answer)",
        new Error(`no answer for ${this.#o.stallTimeoutMs} ms`),
      );
      return;
    }
    if (!this.#pendingSince) this.#pendingSince = Date.now();
    w.requestProgress();
  }
}
