/**
 * The udp backend's peer table, shared between the control plane (writer) and the data
 * path Workers (readers) through a SharedArrayBuffer: a Worker blocked in a syscall never
 * runs its message handler, so updates cannot be posted to it.
 *
 * Two fixed-size open-addressing hash tables (linear probing, backward-shift deletion, so
 * no tombstones accumulate):
 * - subnets: (subnet address >>> host bits) → peer public IP and UDP port. Every subnet of
 *   a network has the same prefix length (SubnetLen), so a destination is looked up by
 *   masking it once, in O(1), instead of upstream's linear scan.
 * - peer IPs: public IP → reference count, for validating the source of received datagrams.
 *
 * Consistency: a seqlock. The writer makes the sequence odd, changes the slots, makes it
 * even again; a reader retries when the sequence was odd or changed under it. All shared
 * words are accessed with Atomics so the ordering is defined by the JS memory model.
 * Lookups allocate nothing.
 * @module
 */

import { formatNet4, type IP4Net, mask4 } from "../../core/ip.ts";

const SEQ = 0;
const SUBNET_LEN = 1;
const CAPACITY = 2;
const SUBNET_COUNT = 3;
const IP_COUNT = 4;
const HEADER_WORDS = 8;
/** Words per slot: used flag, key, value a, value b. */
const SLOT = 4;
/**
 * Readers wait out writers; they give up (and report "no peer") only after this many torn
 * reads in a row, which a writer hammering the table in a tight loop can cause, a real
 * control plane cannot.
 */
const MAX_READ_RETRIES = 1 << 24;

/** One open-addressing table inside the shared Int32Array. */
class SlotTable {
  readonly #mask: number;
  readonly #shift: number;

  constructor(
    private readonly w: Int32Array,
    private readonly base: number,
    readonly capacity: number,
  ) {
    this.#mask = capacity - 1;
    this.#shift = 32 - Math.log2(capacity);
  }

  #home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.#shift; // Fibonacci hashing spreads sequential subnets
  }

  #at(i: number): number {
    return this.base + i * SLOT;
  }

  /** Word index of the slot holding `key`, or -1. Bounded by capacity even on torn state. */
  find(key: number): number {
    const w = this.w;
    key |= 0;
    let i = this.#home(key);
    for (let n = 0; n < this.capacity; n++) {
      const at = this.#at(i);
      if (Atomics.load(w, at) === 0) return -1;
      if (Atomics.load(w, at + 1) === key) return at;
      i = (i + 1) & this.#mask;
    }
    return -1;
  }

  /** Inserts a new key (caller checked it is absent and there is room); returns its word index. */
  insert(key: number, a: number, b: number): number {
    const w = this.w;
    let i = this.#home(key);
    while (Atomics.load(w, this.#at(i)) !== 0) i = (i + 1) & this.#mask;
    const at = this.#at(i);
    Atomics.store(w, at + 1, key);
    Atomics.store(w, at + 2, a);
    Atomics.store(w, at + 3, b);
    Atomics.store(w, at, 1);
    return at;
  }

  /** Removes the slot at word index `at`, shifting later members of its cluster back. */
  remove(at: number): void {
    const w = this.w;
    let hole = (at - this.base) / SLOT;
    let j = hole;
    for (;;) {
      j = (j + 1) & this.#mask;
      const jAt = this.#at(j);
      if (Atomics.load(w, jAt) === 0) break;
      const home = this.#home(Atomics.load(w, jAt + 1));
      // The entry at j may fill the hole only if its home is not cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      const hAt = this.#at(hole);
      for (let k = 1; k < SLOT; k++) Atomics.store(w, hAt + k, Atomics.load(w, jAt + k));
      hole = j;
    }
    Atomics.store(w, this.#at(hole), 0);
  }

  /** Every used slot's word index (control plane only: allocates). */
  slots(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.capacity; i++) {
      if (Atomics.load(this.w, this.#at(i)) !== 0) out.push(this.#at(i));
    }
    return out;
  }
}

/** A peer as stored: public IP (u32) and UDP port. */
export interface PeerEntry {
  subnet: IP4Net;
  publicIP: number;
  port: number;
}

/**
 * Subnet → peer map plus the set of peer public IPs, living in a SharedArrayBuffer.
 * One writer (the control plane) at a time; any number of concurrent readers.
 */
export class PeerTable {
  readonly #w: Int32Array;
  readonly #subnets: SlotTable;
  readonly #ips: SlotTable;
  readonly #hostBits: number;
  readonly #maxEntries: number;

  private constructor(readonly buffer: SharedArrayBuffer) {
    const w = new Int32Array(buffer);
    this.#w = w;
    const cap = w[CAPACITY];
    this.#subnets = new SlotTable(w, HEADER_WORDS, cap);
    this.#ips = new SlotTable(w, HEADER_WORDS + cap * SLOT, cap);
    this.#hostBits = 32 - w[SUBNET_LEN];
    this.#maxEntries = Math.floor(cap * 0.75); // keep probe sequences short
  }

  /**
   * A new, empty table for subnets of prefix length `subnetLen`. `capacity` (a power of
   * two ≥ 8) bounds the table at 75 % of it: the default holds 3072 peers in 128 KiB.
   */
  static create(subnetLen: number, capacity = 4096): PeerTable {
    if (!Number.isInteger(subnetLen) || subnetLen < 1 || subnetLen > 32) {
      throw new RangeError(`subnet length ${subnetLen} out of range 1..32`);
    }
    if (capacity < 8 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`capacity ${capacity} is not a power of two ≥ 8`);
    }
    const sab = new SharedArrayBuffer((HEADER_WORDS + 2 * capacity * SLOT) * 4);
    const w = new Int32Array(sab);
    w[SUBNET_LEN] = subnetLen;
    w[CAPACITY] = capacity;
    return new PeerTable(sab);
  }

  /** Attaches to a table created elsewhere (in a Worker, from the posted buffer). */
  static attach(buffer: SharedArrayBuffer): PeerTable {
    return new PeerTable(buffer);
  }

  /** Prefix length of every subnet in the table. */
  get subnetLen(): number {
    return 32 - this.#hostBits;
  }

  /** Number of subnets. */
  get size(): number {
    return Atomics.load(this.#w, SUBNET_COUNT);
  }

  /** Number of distinct peer public IPs. */
  get peerCount(): number {
    return Atomics.load(this.#w, IP_COUNT);
  }

  /** Most subnets the table accepts. */
  get maxEntries(): number {
    return this.#maxEntries;
  }

  #key(ip: number): number {
    return ip >>> this.#hostBits; // hostBits ≤ 31: SubnetLen ≥ 1
  }

  #beginWrite(): void {
    for (;;) {
      const s = Atomics.load(this.#w, SEQ);
      if ((s & 1) === 0 && Atomics.compareExchange(this.#w, SEQ, s, s + 1) === s) return;
    }
  }

  #endWrite(): void {
    Atomics.add(this.#w, SEQ, 1);
  }

  #acquireIP(ip: number): void {
    const at = this.#ips.find(ip);
    if (at >= 0) {
      Atomics.add(this.#w, at + 2, 1);
    } else {
      this.#ips.insert(ip | 0, 1, 0);
      Atomics.add(this.#w, IP_COUNT, 1);
    }
  }

  #releaseIP(ip: number): void {
    const at = this.#ips.find(ip);
    if (at < 0) return;
    if (Atomics.sub(this.#w, at + 2, 1) > 1) return;
    this.#ips.remove(at);
    Atomics.sub(this.#w, IP_COUNT, 1);
  }

  /**
   * Sets subnet → (publicIP, port), replacing any previous peer of that subnet. Returns
   * false when the table is full (the caller logs it; traffic to that subnet then gets
   * ICMP net-unreachable). Throws when the prefix length differs from the table's.
   */
  set(subnet: IP4Net, publicIP: number, port: number): boolean {
    this.#checkPrefix(subnet);
    const key = this.#key(subnet.ip) | 0;
    this.#beginWrite();
    try {
      const at = this.#subnets.find(key);
      if (at >= 0) {
        const old = Atomics.load(this.#w, at + 2) >>> 0;
        if (old !== publicIP >>> 0) {
          this.#releaseIP(old);
          this.#acquireIP(publicIP);
        }
        Atomics.store(this.#w, at + 2, publicIP | 0);
        Atomics.store(this.#w, at + 3, port);
        return true;
      }
      if (this.size >= this.#maxEntries) return false;
      this.#subnets.insert(key, publicIP | 0, port);
      Atomics.add(this.#w, SUBNET_COUNT, 1);
      this.#acquireIP(publicIP);
      return true;
    } finally {
      this.#endWrite();
    }
  }

  /** Removes a subnet; returns whether it was present. */
  delete(subnet: IP4Net): boolean {
    this.#checkPrefix(subnet);
    this.#beginWrite();
    try {
      const at = this.#subnets.find(this.#key(subnet.ip));
      if (at < 0) return false;
      this.#releaseIP(Atomics.load(this.#w, at + 2) >>> 0);
      this.#subnets.remove(at);
      Atomics.sub(this.#w, SUBNET_COUNT, 1);
      return true;
    } finally {
      this.#endWrite();
    }
  }

  /**
   * Looks up the peer for destination address `dst` (u32). On a hit writes the peer's
   * public IP to `out[0]` and its port to `out[1]` and returns true. Allocation-free.
   */
  lookup(dst: number, out: Uint32Array): boolean {
    const w = this.#w;
    const key = this.#key(dst);
    for (let tries = 0; tries < MAX_READ_RETRIES; tries++) {
      const seq = Atomics.load(w, SEQ);
      if ((seq & 1) !== 0) continue; // writer in progress
      const at = this.#subnets.find(key);
      if (at >= 0) {
        out[0] = Atomics.load(w, at + 2);
        out[1] = Atomics.load(w, at + 3);
      }
      if (Atomics.load(w, SEQ) === seq) return at >= 0;
    }
    return false;
  }

  /** Whether `ip` (u32) is the public IP of at least one peer. Allocation-free. */
  isPeer(ip: number): boolean {
    const w = this.#w;
    for (let tries = 0; tries < MAX_READ_RETRIES; tries++) {
      const seq = Atomics.load(w, SEQ);
      if ((seq & 1) !== 0) continue;
      const found = this.#ips.find(ip) >= 0;
      if (Atomics.load(w, SEQ) === seq) return found;
    }
    return false;
  }

  /** All entries (control plane, for logs and tests). */
  entries(): PeerEntry[] {
    this.#beginWrite(); // excludes other writers while copying
    try {
      return this.#subnets.slots().map((at) => ({
        subnet: {
          ip: (Atomics.load(this.#w, at + 1) << this.#hostBits) >>> 0,
          prefix: this.subnetLen,
        },
        publicIP: Atomics.load(this.#w, at + 2) >>> 0,
        port: Atomics.load(this.#w, at + 3),
      }));
    } finally {
      this.#endWrite();
    }
  }

  #checkPrefix(subnet: IP4Net): void {
    if (subnet.prefix !== this.subnetLen) {
      throw new RangeError(
        `subnet ${formatNet4(subnet)} has prefix /${subnet.prefix}, table holds /${this.subnetLen}`,
      );
    }
    if (((subnet.ip & mask4(subnet.prefix)) >>> 0) !== subnet.ip >>> 0) {
      throw new RangeError(`subnet ${formatNet4(subnet)} has host bits set`);
    }
  }
}
