/**
 * An in-memory {@link LeaseStore} with etcd's semantics (one revision counter, create only
 * if absent, replace only if unchanged, watches from a revision, compaction), and faults a
 * test can inject: a compaction, a store that goes down and comes back, a stream that goes
 * silent, a create race lost to another host. Everything is synchronous under the hood and
 * delivered on microtasks, so tests of the lease logic run in milliseconds.
 * @module
 */

import type {
  KV,
  LeaseStore,
  Listing,
  StoreEvent,
  Watch,
  WatchHandlers,
  Written,
} from "../../lib/subnet/store.ts";

interface Watcher {
  prefix: string;
  handlers: WatchHandlers;
  /** Next revision to deliver. */
  next: bigint;
  open: boolean;
  /** Silent: neither events nor progress answers are delivered. */
  silent: boolean;
}

/** Calls made on the store, for assertions. */
export interface MemoryStoreCalls {
  get: number;
  list: number;
  create: number;
  replace: number;
  delete: number;
  watch: number;
  resets: number;
}

/** An in-memory lease store. */
export class MemoryStore implements LeaseStore {
  readonly where = "memory";
  #kvs = new Map<string, KV>();
  /** Every write, for watches from an old revision: [revision, event]. */
  #log: StoreEvent[] = [];
  #revision = 1n;
  #compacted = 0n;
  #leases = new Map<string, { ttl: number; keys: Set<string> }>();
  #nextLease = 1000;
  #watchers = new Set<Watcher>();
  #down = false;
  #silentNext = false;
  /** Runs before the next create's check: a test writes the key there to lose a race. */
  beforeCreate: ((key: string) => void) | null = null;
  readonly calls: MemoryStoreCalls = {
    get: 0,
    list: 0,
    create: 0,
    replace: 0,
    delete: 0,
    watch: 0,
    resets: 0,
  };

  /** Current store revision. */
  get revision(): bigint {
    return this.#revision;
  }

  // ------------------------------------------------------------------ LeaseStore

  get(key: string): Promise<KV | null> {
    this.calls.get++;
    return this.#op(() => this.#kvs.get(key) ?? null);
  }

  list(prefix: string): Promise<Listing> {
    this.calls.list++;
    return this.#op(() => ({
      kvs: [...this.#kvs.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) =>
        a.key < b.key ? -1 : 1
      ),
      revision: this.#revision,
    }));
  }

  create(key: string, value: string, ttlSeconds: number): Promise<Written | null> {
    this.calls.create++;
    return this.#op(() => {
      const hook = this.beforeCreate;
      this.beforeCreate = null;
      hook?.(key);
      if (this.#kvs.has(key)) return null;
      return this.#write(key, value, this.#grant(ttlSeconds));
    });
  }

  replace(
    key: string,
    value: string,
    ttlSeconds: number,
    expect: { modRevision: bigint; leaseId: string },
  ): Promise<Written | null> {
    this.calls.replace++;
    return this.#op(() => {
      const cur = this.#kvs.get(key);
      if (!cur || cur.modRevision !== expect.modRevision) return null;
      const w = this.#write(key, value, this.#grant(ttlSeconds));
      if (expect.leaseId !== "0" && expect.leaseId !== w.leaseId) this.revoke(expect.leaseId);
      return w;
    });
  }

  delete(key: string): Promise<void> {
    this.calls.delete++;
    return this.#op(() => this.#remove(key));
  }

  watch(prefix: string, fromRevision: bigint, handlers: WatchHandlers): Watch {
    this.calls.watch++;
    const w: Watcher = {
      prefix,
      handlers,
      next: fromRevision,
      open: true,
      silent: this.#silentNext,
    };
    this.#silentNext = false;
    this.#watchers.add(w);
    queueMicrotask(() => {
      if (!w.open) return;
      if (this.#down) return this.#fail(w, new Error("memory store is down"));
      if (w.silent) return;
      if (fromRevision <= this.#compacted) {
        this.#end(w);
        return handlers.compacted(this.#compacted);
      }
      handlers.created();
      this.#deliver(w);
    });
    return {
      requestProgress: () =>
        queueMicrotask(() => {
          if (w.open && !w.silent && !this.#down) w.handlers.progress(this.#revision);
        }),
      close: () => this.#end(w),
    };
  }

  resetWatchConnection(): void {
    this.calls.resets++;
  }

  close(): void {
    for (const w of this.#watchers) this.#end(w);
  }

  // ------------------------------------------------------------------ direct access

  /** Writes a key as another host would (no condition); `ttl` 0 = no lease. */
  put(key: string, value: string, ttlSeconds = 0): Written {
    return this.#write(key, value, this.#grant(ttlSeconds));
  }

  /** Deletes a key as another host or an operator would. */
  remove(key: string): void {
    this.#remove(key);
  }

  /** Ends a lease: its keys are deleted, as etcd does on expiry. */
  revoke(leaseId: string): void {
    const l = this.#leases.get(leaseId);
    if (!l) return;
    this.#leases.delete(leaseId);
    for (const k of l.keys) this.#remove(k);
  }

  /** Whether a lease exists (a revoked or expired one does not). */
  hasLease(leaseId: string): boolean {
    return this.#leases.has(leaseId);
  }

  /** TTL a lease was granted with, or -1 when it does not exist (etcd's answer). */
  leaseTTL(leaseId: string): number {
    return this.#leases.get(leaseId)?.ttl ?? -1;
  }

  /** The stored key, without counting a call. */
  peek(key: string): KV | undefined {
    return this.#kvs.get(key);
  }

  /** Every key, sorted. */
  keys(): string[] {
    return [...this.#kvs.keys()].sort();
  }

  // ------------------------------------------------------------------ faults

  /** Compacts history up to the current revision; watches behind it are told so. */
  compact(): void {
    this.#compacted = this.#revision;
    this.#log = [];
    for (const w of this.#watchers) {
      if (w.next <= this.#compacted && w.open && !w.silent) {
        this.#end(w);
        w.handlers.compacted(this.#compacted);
      }
    }
  }

  /** Takes the store down: calls reject, watches fail. `up()` brings it back. */
  down(): void {
    this.#down = true;
    for (const w of [...this.#watchers]) this.#fail(w, new Error("memory store is down"));
  }

  /** Brings the store back after `down()`. */
  up(): void {
    this.#down = false;
  }

  /** Makes every open watch silent (no events, no progress), as a wedged gRPC stream. */
  silenceWatches(): void {
    for (const w of this.#watchers) w.silent = true;
  }

  /** The next watch created is silent from the start. */
  silenceNextWatch(): void {
    this.#silentNext = true;
  }

  /** Open watches (silent ones included). */
  get openWatches(): number {
    return [...this.#watchers].filter((w) => w.open).length;
  }

  // ------------------------------------------------------------------ internals

  #op<T>(fn: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      queueMicrotask(() => {
        if (this.#down) return reject(new Error("memory store is down"));
        try {
          resolve(fn());
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  #grant(ttlSeconds: number): string {
    if (ttlSeconds <= 0) return "0";
    const id = String(this.#nextLease++);
    this.#leases.set(id, { ttl: ttlSeconds, keys: new Set() });
    return id;
  }

  #write(key: string, value: string, leaseId: string): Written {
    const old = this.#kvs.get(key);
    if (old && old.leaseId !== "0") this.#leases.get(old.leaseId)?.keys.delete(key);
    const kv: KV = { key, value, modRevision: ++this.#revision, leaseId };
    this.#kvs.set(key, kv);
    if (leaseId !== "0") this.#leases.get(leaseId)?.keys.add(key);
    this.#record({ type: "put", kv });
    return { modRevision: kv.modRevision, leaseId };
  }

  #remove(key: string): void {
    const old = this.#kvs.get(key);
    if (!old) return;
    this.#kvs.delete(key);
    if (old.leaseId !== "0") this.#leases.get(old.leaseId)?.keys.delete(key);
    this.#record({ type: "delete", key, modRevision: ++this.#revision });
  }

  #record(ev: StoreEvent): void {
    this.#log.push(ev);
    for (const w of this.#watchers) queueMicrotask(() => this.#deliver(w));
  }

  #deliver(w: Watcher): void {
    if (!w.open || w.silent || this.#down) return;
    const out: StoreEvent[] = [];
    for (const ev of this.#log) {
      const rev = ev.type === "put" ? ev.kv.modRevision : ev.modRevision;
      const key = ev.type === "put" ? ev.kv.key : ev.key;
      if (rev >= w.next && key.startsWith(w.prefix)) out.push(ev);
    }
    w.next = this.#revision + 1n;
    if (out.length) w.handlers.events(out);
  }

  #fail(w: Watcher, e: Error): void {
    if (!w.open) return;
    this.#end(w);
    w.handlers.failed(e);
  }

  #end(w: Watcher): void {
    w.open = false;
    this.#watchers.delete(w);
  }
}
