/**
 * Subnet leases in a {@link LeaseStore}: the config key and the `<prefix>/subnets/<key>`
 * leases, with the same key paths and values as upstream flanneld.
 *
 * Every write that could clobber another host is conditional: create only if the key does
 * not exist, renew or reuse only if the key is still the one we saw. Upstream renews with an
 * unconditional put; ours cannot overwrite a subnet another host took meanwhile.
 * @module
 */

import type { IP4Net, IP6Net } from "../core/ip.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  keySubnets,
  type Lease,
  type LeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from "../values/lease.ts";
import type { KV, LeaseStore } from "./store.ts";

/** Go's path.Join for the two-part etcd paths: no doubled or trailing slashes. */
export function joinKey(...parts: string[]): string {
  const s = parts.join("/").replace(/\/+/g, "/");
  return s.length > 1 ? s.replace(/\/$/, "") : s;
}

/** A key under the subnets prefix that could not be used, and why. */
export interface BadLease {
  key: string;
  reason: string;
  /** The subnets the key still names (and so occupies), when it names any. */
  occupies?: { subnet: IP4Net; ipv6Subnet?: IP6Net };
}

/** The result of a list: leases, the revision to watch from, and unusable keys. */
export interface LeaseList {
  leases: Lease[];
  revision: bigint;
  bad: BadLease[];
}

/** Converts a stored key to a Lease; throws with a reason for a bad key or value. */
export function leaseFromKV(kv: KV): Lease {
  const parsed = parseSubnetKey(kv.key);
  if (!parsed) {
    throw new Error(
      keySubnets(kv.key)
        ? "the key's subnet has host bits set (not a network address)"
        : "key is not a subnet key (want a.b.c.d-N)",
    );
  }
  const attrs = decodeLeaseAttrs(kv.value);
  return { ...parsed, attrs, leaseId: kv.leaseId, modRevision: kv.modRevision };
}

/** Config and leases under one prefix. */
export class SubnetRegistry {
  readonly configKey: string;
  /** Listing/watch prefix, without a trailing slash (as upstream). */
  readonly subnetsPrefix: string;

  constructor(readonly store: LeaseStore, readonly prefix: string) {
    this.configKey = joinKey(prefix, "config");
    this.subnetsPrefix = joinKey(prefix, "subnets");
  }

  /** Store key of a subnet. */
  keyOf(subnet: IP4Net, ipv6?: IP6Net): string {
    return joinKey(this.subnetsPrefix, subnetKey(subnet, ipv6));
  }

  /** The config JSON text, or null when the key does not exist. */
  async getConfig(timeoutMs?: number): Promise<string | null> {
    return (await this.store.get(this.configKey, { timeoutMs }))?.value ?? null;
  }

  /** Lists every lease; unusable keys are returned in `bad`, not thrown. */
  async listLeases(): Promise<LeaseList> {
    const { kvs, revision } = await this.store.list(this.subnetsPrefix);
    const leases: Lease[] = [];
    const bad: BadLease[] = [];
    for (const kv of kvs) {
      try {
        leases.push(leaseFromKV(kv));
      } catch (e) {
        const k = keySubnets(kv.key);
        const occupies = k ? { subnet: k.subnet, ipv6Subnet: k.ipv6Subnet } : undefined;
        bad.push({ key: kv.key, reason: (e as Error).message, occupies });
      }
    }
    return { leases, revision, bad };
  }

  /** The lease at one subnet's key, or null. */
  async getLease(subnet: IP4Net, ipv6?: IP6Net): Promise<Lease | null> {
    const kv = await this.store.get(this.keyOf(subnet, ipv6));
    return kv ? leaseFromKV(kv) : null;
  }

  /**
   * Creates the key only if it does not exist, attached to a new lease of `ttl` seconds
   * (0: no lease, a reservation). Returns the lease, or null when someone else holds the key.
   */
  async create(
    subnet: IP4Net,
    ipv6: IP6Net | undefined,
    attrs: LeaseAttrs,
    ttl: number,
  ): Promise<Lease | null> {
    const w = await this.store.create(this.keyOf(subnet, ipv6), encodeLeaseAttrs(attrs), ttl);
    if (!w) return null;
    return {
      subnet,
      ipv6Subnet: ipv6,
      attrs,
      leaseId: w.leaseId,
      expiration: ttl > 0 ? Date.now() + ttl * 1000 : 0,
      modRevision: w.modRevision,
    };
  }

  /**
   * Re-puts an existing key with new attributes and a fresh lease, only if the key still has
   * `expect.modRevision` (nobody changed it since we looked). `ttl` 0 keeps it lease-less.
   * The superseded lease is released. Returns null when the key changed or vanished.
   */
  async replace(expect: Lease, attrs: LeaseAttrs, ttl: number): Promise<Lease | null> {
    const w = await this.store.replace(
      this.keyOf(expect.subnet, expect.ipv6Subnet),
      encodeLeaseAttrs(attrs),
      ttl,
      { modRevision: expect.modRevision ?? 0n, leaseId: expect.leaseId ?? "0" },
    );
    if (!w) return null;
    return {
      subnet: expect.subnet,
      ipv6Subnet: expect.ipv6Subnet,
      attrs,
      leaseId: w.leaseId,
      expiration: ttl > 0 ? Date.now() + ttl * 1000 : 0,
      modRevision: w.modRevision,
    };
  }

  /** Deletes a key (only used for our own lease that no longer fits the config). */
  async delete(subnet: IP4Net, ipv6?: IP6Net): Promise<void> {
    await this.store.delete(this.keyOf(subnet, ipv6));
  }
}
