/**
 * The seam between subnet leasing and etcd: the few key-value operations flanneld needs,
 * with the guarantees the lease logic relies on. The registry, the lease manager, the lease
 * watcher, config waiting and the health probe use only this interface; `etcd_store.ts`
 * implements it over `npm:etcd3`, and the tests have an in-memory one that can inject faults.
 *
 * Revisions are etcd's: one counter for the whole store, bumped by every write, so "the key
 * still has the revision we saw" means "nobody wrote it since".
 * @module
 */

/** A stored key. */
export interface KV {
  key: string;
  value: string;
  /** Revision of the last write to this key. */
  modRevision: bigint;
  /** etcd lease the key is attached to; "0" for none (a reservation). */
  leaseId: string;
}

/** A listing of a prefix, consistent at `revision`. */
export interface Listing {
  kvs: KV[];
  /** Store revision of the listing: a watch from `revision + 1` misses nothing. */
  revision: bigint;
}

/** The outcome of a conditional write that took place. */
export interface Written {
  modRevision: bigint;
  /** The lease the key is now attached to ("0" for none). */
  leaseId: string;
}

/** A change seen by a watch. */
export type StoreEvent =
  | { type: "put"; kv: KV }
  | { type: "delete"; key: string; modRevision: bigint };

/** What a watch reports; after `compacted` or `failed` it delivers nothing more. */
export interface WatchHandlers {
  /** The store accepted the watch. */
  created(): void;
  /** Events of one store answer, in revision order. */
  events(events: StoreEvent[]): void;
  /** Every event up to `revision` has been delivered (an answer to a progress request). */
  progress(revision: bigint): void;
  /** The start revision was compacted away; list again and watch from the new revision. */
  compacted(compactRevision: bigint): void;
  /** The stream broke (store down, cancelled, ended). */
  failed(error: Error): void;
}

/** A running watch. */
export interface Watch {
  /** Asks the store for a progress answer (`WatchHandlers.progress`). */
  requestProgress(): void;
  /** Ends the watch; no handler is called afterwards. */
  close(): void;
}

/** Options of a single read. */
export interface ReadOptions {
  /** Give up after this long (the health probe's bound). */
  timeoutMs?: number;
}

/** Key-value storage for flanneld's config and leases. */
export interface LeaseStore {
  /** Where the store is, for log lines (e.g. the etcd endpoints). */
  readonly where: string;
  /** One key, or null when it does not exist. */
  get(key: string, opts?: ReadOptions): Promise<KV | null>;
  /** Every key under `prefix`, with the revision to watch from. */
  list(prefix: string): Promise<Listing>;
  /**
   * Writes `key` only if it does not exist, attached to a new lease of `ttlSeconds`
   * (0: no lease). Null when the key exists (someone else holds it).
   */
  create(key: string, value: string, ttlSeconds: number): Promise<Written | null>;
  /**
   * Rewrites `key` with a new lease of `ttlSeconds` (0: none) only if its revision is still
   * `expect.modRevision`; the superseded lease `expect.leaseId` is then released. Null when
   * the key changed or vanished.
   */
  replace(
    key: string,
    value: string,
    ttlSeconds: number,
    expect: { modRevision: bigint; leaseId: string },
  ): Promise<Written | null>;
  /** Deletes `key` (absent is fine). */
  delete(key: string): Promise<void>;
  /** Watches every key under `prefix` from `fromRevision` (inclusive). */
  watch(prefix: string, fromRevision: bigint, handlers: WatchHandlers): Watch;
  /**
   * Lets the next watch use a fresh connection: a stream that went silent may sit on a
   * wedged one.
   */
  resetWatchConnection(): void;
  /** Closes every connection. */
  close(): void;
}
