/**
 * Follows every host's lease: list, then watch `<prefix>/subnets` from the list revision,
 * and turn etcd events into added/removed events for the backend.
 *
 * It owns its gRPC watch stream (npm:etcd3's raw WatchClient) instead of the library's
 * watcher, because it must control what the library does not:
 * - resume after a disconnect from the last revision it has *seen events for* (not the
 *   header revision of a catch-up batch), with backoff 100 ms → 5 s;
 * - on compaction, re-list and synthesize the removals it missed, then resume, without
 *   looping (upstream flooded logs here, flannel#2470);
 * - detect a silent stream (gRPC streams have stalled under Deno): it asks etcd for a
 *   progress notification every `progressIntervalMs` and re-establishes the stream when no
 *   answer of any kind arrives within `stallTimeoutMs`.
 * @module
 */

import type { Etcd3 } from "etcd3";
import { Buffer } from "node:buffer";
import { describeLease, type Lease, type LeaseEvent, parseSubnetKey } from "../values/lease.ts";
import { equal4, formatIP4, type IP4Net } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import { leaseFromKV, type RawKV, type SubnetRegistry } from "./registry.ts";

const log = logger("watch");

/** Tunables; defaults suit production. */
export interface WatcherOptions {
  backoffMinMs?: number;
  backoffMaxMs?: number;
  progressIntervalMs?: number;
  stallTimeoutMs?: number;
  /**
   * Makes a dedicated etcd client for the watch stream. When given, a stalled stream's
   * client is closed and replaced, so a wedged connection is not reused; otherwise the
   * registry's client is used.
   */
  watchClient?: () => Etcd3;
}

/** What happened to our own key, for the lease manager. */
export interface OwnEvent {
  type: "put" | "delete";
  /** The lease now at our key (put), or the lease we knew (delete). */
  lease?: Lease;
}

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

interface WatchStream {
  write(req: unknown): boolean;
  on(ev: string, fn: (arg: any) => void): unknown;
  removeAllListeners(): unknown;
  cancel(): void;
  end(): void;
}

/** The key of a lease's IPv4 subnet, for the known-lease map. */
function idOf(subnet: IP4Net): string {
  return `${subnet.ip}/${subnet.prefix}`;
}

/** Range end for a prefix watch: the prefix with its last byte incremented. */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  const end = Buffer.from(b);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Watches all leases and reports remote changes and changes to our own key. */
export class LeaseWatcher {
  readonly #known = new Map<string, Lease>();
  readonly #opts: Required<Omit<WatcherOptions, "watchClient">>;
  readonly #newClient?: () => Etcd3;
  #client: Etcd3 | null = null;
  #own: IP4Net | null = null;
  #ownIP = 0;
  #stream: WatchStream | null = null;
  #lastSeen = 0n; // highest revision whose events we have fully processed
  #backoff: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #progressTimer: ReturnType<typeof setInterval> | undefined;
  #progressPendingSince = 0;
  #stopped = true;
  #failing = false;
  #failingSince = 0;
  #generation = 0; // bumps on each (re)connect so late callbacks of old streams are ignored
  /** Unusable keys already logged, with the reason logged (cleared by a usable put or a delete). */
  readonly badLogged = new Map<string, string>();
  readonly stats: WatcherStats = {
    events: 0,
    reconnects: 0,
    relists: 0,
    compactions: 0,
    stalls: 0,
    badLeases: 0,
    lastEventAt: 0,
    lastResponseAt: 0,
    connected: false,
  };

  /** Remote lease events (own subnet excluded), in etcd order. */
  onEvents: (events: LeaseEvent[]) => void = () => {};
  /** Changes to our own key. */
  onOwn: (ev: OwnEvent) => void = () => {};
  /** Why a remote lease must be ignored (logged once, counted), or null to accept it. */
  validate: (l: Lease) => string | null = () => null;

  constructor(private readonly registry: SubnetRegistry, opts: WatcherOptions = {}) {
    this.#opts = {
      backoffMinMs: opts.backoffMinMs ?? 100,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
      progressIntervalMs: opts.progressIntervalMs ?? 5000,
      stallTimeoutMs: opts.stallTimeoutMs ?? 15000,
    };
    this.#backoff = this.#opts.backoffMinMs;
    this.#newClient = opts.watchClient;
  }

  #watchClient(): Etcd3 {
    if (!this.#newClient) return this.registry.client;
    return this.#client ??= this.#newClient();
  }

  /** Drops the dedicated watch client so the next stream gets a fresh connection. */
  #dropClient(): void {
    if (!this.#client) return;
    const c = this.#client;
    this.#client = null;
    try {
      c.close();
    } catch { /* already closed */ }
  }

  /** Sets our own subnet: its events go to `onOwn`, never to `onEvents`. */
  setOwn(subnet: IP4Net | null): void {
    this.#own = subnet;
    if (subnet) this.#known.delete(idOf(subnet));
  }

  /**
   * Sets our public IP: a lease carrying it on another subnet is our own write in
   * transit (a subnet change), never a remote host to route to.
   */
  setOwnPublicIP(ip: number): void {
    this.#ownIP = ip;
  }

  /** Leases currently known (remote only). */
  leases(): Lease[] {
    return [...this.#known.values()];
  }

  /** The revision up to which events have been processed. */
  get revision(): bigint {
    return this.#lastSeen;
  }

  /** Lists and starts watching; resolves after the first snapshot has been delivered. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#relistUntilOk();
    this.#connect();
    this.#progressTimer = setInterval(() => this.#progressTick(), this.#opts.progressIntervalMs);
  }

  /** Re-lists now (after our own subnet changed) and emits the difference. */
  async resync(): Promise<void> {
    await this.#relistUntilOk();
  }

  /** Stops watching. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#progressTimer);
    this.#closeStream();
    this.#dropClient();
  }

  #isOwn(subnet: IP4Net): boolean {
    return this.#own !== null && equal4(this.#own, subnet);
  }

  #isOurIP(l: Lease): boolean {
    return this.#ownIP !== 0 && l.attrs.publicIP === this.#ownIP;
  }

  async #relistUntilOk(): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.#relist();
        return;
      } catch (e) {
        this.#noteFailure("list", e);
        await new Promise((r) => (this.#timer = setTimeout(r, this.#nextBackoff())));
      }
    }
  }

  /** Lists all leases and emits the difference to what is known (a snapshot). */
  async #relist(): Promise<void> {
    const list = await this.registry.listLeases();
    this.stats.relists++;
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
      const why = this.validate(l);
      if (why) {
        this.#noteBad(this.registry.keyOf(l.subnet, l.ipv6Subnet), why);
        continue;
      }
      const id = idOf(l.subnet);
      seen.add(id);
      const prev = this.#known.get(id);
      // Unlike upstream, a lease whose value changed while we were not watching is re-added.
      if (!prev || prev.modRevision !== l.modRevision) events.push({ type: "added", lease: l });
      this.#known.set(id, l);
    }
    for (const [id, l] of this.#known) {
      if (!seen.has(id)) {
        this.#known.delete(id);
        events.push({ type: "removed", lease: l });
      }
    }
    this.#lastSeen = BigInt(list.revision);
    this.#emit(events);
    if (this.#own) this.onOwn(ownLease ? { type: "put", lease: ownLease } : { type: "delete" });
  }

  #connect(): void {
    if (this.#stopped) return;
    const gen = ++this.#generation;
    this.#watchClient().watchClient.watch().then((s) => {
      const stream = s as unknown as WatchStream;
      if (gen !== this.#generation || this.#stopped) {
        stream.cancel();
        return;
      }
      this.#stream = stream;
      stream.on("data", (res) => {
        if (gen === this.#generation) this.#onResponse(res);
      });
      stream.on("error", (err) => {
        if (gen === this.#generation) this.#reconnect("stream error", err);
      });
      stream.on("end", () => {
        if (gen === this.#generation) this.#reconnect("stream ended", new Error("end of stream"));
      });
      stream.write({
        create_request: {
          key: Buffer.from(this.registry.subnetsPrefix),
          range_end: prefixEnd(this.registry.subnetsPrefix),
          start_revision: String(this.#lastSeen + 1n),
          progress_notify: true,
          prev_kv: true,
        },
      });
      this.#progressPendingSince = Date.now(); // the create itself must be answered in time
    }).catch((err) => {
      if (gen === this.#generation) this.#reconnect("cannot open watch stream", err);
    });
  }

  #closeStream(): void {
    const s = this.#stream;
    this.#stream = null;
    this.stats.connected = false;
    if (s) {
      s.removeAllListeners();
      s.on("error", () => {}); // a cancelled gRPC stream still emits an error
      try {
        s.cancel();
      } catch { /* already closed */ }
    }
  }

  #nextBackoff(): number {
    const d = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.backoffMaxMs);
    return d;
  }

  /** One line when etcd starts failing, then quiet until it recovers (no log flood). */
  #noteFailure(what: string, err: unknown): void {
    if (!this.#failing) {
      this.#failing = true;
      this.#failingSince = Date.now();
      log.warn(`watch interrupted; retrying with backoff up to ${this.#opts.backoffMaxMs} ms`, {
        op: what,
        error: err,
      });
    } else {
      log.debug(1, "watch retry failed", { op: what, error: err, backoffMs: this.#backoff });
    }
  }

  #noteRecovered(): void {
    this.#backoff = this.#opts.backoffMinMs;
    if (this.#failing) {
      this.#failing = false;
      log.info("watch resumed", {
        afterMs: Date.now() - this.#failingSince,
        revision: String(this.#lastSeen),
      });
    }
  }

  #reconnect(why: string, err: unknown): void {
    this.#closeStream();
    this.#generation++;
    if (this.#stopped) return;
    this.stats.reconnects++;
    this.#noteFailure(why, err);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), this.#nextBackoff());
  }

  #progressTick(): void {
    const s = this.#stream;
    if (!s || this.#stopped) return;
    if (
      this.#progressPendingSince &&
      Date.now() - this.#progressPendingSince > this.#opts.stallTimeoutMs
    ) {
      this.stats.stalls++;
      this.#closeStream();
      this.#dropClient();
      this.#reconnect(
        "watch stream silent (no progress answer)",
        new Error(`no answer for ${this.#opts.stallTimeoutMs} ms`),
      );
      return;
    }
    if (!this.#progressPendingSince) this.#progressPendingSince = Date.now();
    try {
      s.write({ progress_request: {} });
    } catch (e) {
      this.#reconnect("progress request failed", e);
    }
  }

  #onResponse(res: any): void {
    this.stats.lastResponseAt = Date.now();
    this.#progressPendingSince = 0;
    if (res.compact_revision && res.compact_revision !== "0") {
      this.#onCompacted(BigInt(res.compact_revision));
      return;
    }
    if (res.canceled) {
      this.#reconnect("watch cancelled by etcd", new Error(res.cancel_reason || "cancelled"));
      return;
    }
    if (res.created) {
      this.stats.connected = true;
      this.#noteRecovered();
      return;
    }
    const events: LeaseEvent[] = [];
    for (const ev of res.events ?? []) this.#onEvent(ev, events);
    if (res.events?.length) {
      this.stats.lastEventAt = Date.now();
      for (const ev of res.events) {
        const r = BigInt(ev.kv.mod_revision);
        if (r > this.#lastSeen) this.#lastSeen = r;
      }
    } else if (res.header?.revision) {
      // A progress notification: every event up to this revision has been delivered.
      const r = BigInt(res.header.revision);
      if (r > this.#lastSeen) this.#lastSeen = r;
    }
    this.#emit(events);
  }

  #onEvent(ev: any, out: LeaseEvent[]): void {
    this.stats.events++;
    const type = String(ev.type).toLowerCase();
    const key = ev.kv.key.toString();
    if (type === "delete") {
      this.badLogged.delete(key);
      const parsed = leaseKeyOnly(key);
      if (!parsed) return;
      if (this.#isOwn(parsed)) {
        this.onOwn({ type: "delete" });
        return;
      }
      const id = idOf(parsed);
      const known = this.#known.get(id);
      this.#known.delete(id);
      out.push({
        type: "removed",
        lease: known ?? { subnet: parsed, attrs: { publicIP: 0, publicIPv6: null } },
      });
      return;
    }
    let lease: Lease;
    try {
      lease = leaseFromKV(ev.kv as RawKV);
    } catch (e) {
      this.#noteBad(key, (e as Error).message);
      return;
    }
    if (this.#isOwn(lease.subnet)) {
      this.onOwn({ type: "put", lease });
      return;
    }
    if (this.#isOurIP(lease)) {
      log.debug(1, "skipping a lease with our public IP on another subnet", {
        subnet: describeLease(lease),
      });
      return;
    }
    const why = this.validate(lease);
    if (why) {
      this.#noteBad(key, why);
      // A peer whose lease turned unusable is no longer routed to.
      const known = this.#known.get(idOf(lease.subnet));
      if (known) {
        this.#known.delete(idOf(lease.subnet));
        out.push({ type: "removed", lease: known });
      }
      return;
    }
    this.badLogged.delete(key);
    this.#known.set(idOf(lease.subnet), lease);
    out.push({ type: "added", lease });
  }

  async #onCompacted(compactRev: bigint): Promise<void> {
    this.stats.compactions++;
    log.warn("watch revision was compacted; re-listing and resuming", {
      wanted: String(this.#lastSeen + 1n),
      compacted: String(compactRev),
    });
    this.#closeStream();
    this.#generation++;
    await this.#relistUntilOk();
    this.#connect();
  }

  /** Counts an unusable lease; logs it once per key and reason, however often it is re-put. */
  #noteBad(key: string, reason: string): void {
    this.stats.badLeases++;
    if (this.badLogged.get(key) === reason) return;
    if (this.badLogged.size > 10000) this.badLogged.clear();
    this.badLogged.set(key, reason);
    log.warn("ignoring unusable lease", { key, reason });
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
    this.onEvents(events);
  }
}

function leaseKeyOnly(key: string): IP4Net | null {
  return parseSubnetKey(key)?.subnet ?? null;
}
