/**
 * The etcd side of subnet leasing: the config key and the `<prefix>/subnets/<key>` leases,
 * with the same key paths and values as upstream flanneld (etcd v3 API).
 *
 * Every write that could clobber another host is a transaction: create only if the key
 * does not exist, renew or reuse only if the key is still the one we saw. Upstream renews
 * with an unconditional put; ours cannot overwrite a subnet another host took meanwhile.
 * @module
 */

import type { Etcd3 } from "etcd3";
import type { Buffer } from "node:buffer";
import type { IP4Net, IP6Net } from "../core/ip.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  type Lease,
  type LeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from "../values/lease.ts";

/** Go's path.Join for the two-part etcd paths: no doubled or trailing slashes. */
export function joinKey(...parts: string[]): string {
  const s = parts.join("/").replace(/\/+/g, "/");
  return s.length > 1 ? s.replace(/\/$/, "") : s;
}

/** A key under the subnets prefix that could not be used, and why. */
export interface BadLease {
  key: string;
  reason: string;
}

/** The result of a list: leases, the revision to watch from, and unusable keys. */
export interface LeaseList {
  leases: Lease[];
  revision: string;
  bad: BadLease[];
}

/** Raw etcd key-value, as npm:etcd3 hands it over. */
export interface RawKV {
  key: Buffer;
  value: Buffer;
  lease: string;
  mod_revision: string;
}

/** Converts one etcd kv to a Lease; throws with a reason for a bad key or value. */
export function leaseFromKV(kv: RawKV): Lease {
  const key = kv.key.toString();
  const parsed = parseSubnetKey(key);
  if (!parsed) throw new Error("key is not a subnet key (want a.b.c.d-N)");
  const attrs = decodeLeaseAttrs(kv.value.toString());
  return {
    ...parsed,
    attrs,
    leaseId: String(kv.lease ?? "0"),
    modRevision: String(kv.mod_revision),
  };
}

/** Lease and config storage in etcd under one prefix. */
export class SubnetRegistry {
  readonly configKey: string;
  /** Listing/watch prefix, without a trailing slash (as upstream). */
  readonly subnetsPrefix: string;

  constructor(readonly client: Etcd3, readonly prefix: string) {
    this.configKey = joinKey(prefix, "config");
    this.subnetsPrefix = joinKey(prefix, "subnets");
  }

  /** etcd key of a subnet. */
  keyOf(subnet: IP4Net, ipv6?: IP6Net): string {
    return joinKey(this.subnetsPrefix, subnetKey(subnet, ipv6));
  }

  /** The config JSON text, or null when the key does not exist. */
  async getConfig(): Promise<string | null> {
    return await this.client.get(this.configKey).string();
  }

  /** Lists every lease; unusable keys are returned in `bad`, not thrown. */
  async listLeases(): Promise<LeaseList> {
    const res = await this.client.getAll().prefix(this.subnetsPrefix).exec();
    const leases: Lease[] = [];
    const bad: BadLease[] = [];
    for (const kv of res.kvs) {
      try {
        leases.push(leaseFromKV(kv as unknown as RawKV));
      } catch (e) {
        bad.push({ key: kv.key.toString(), reason: (e as Error).message });
      }
    }
    return { leases, revision: String(res.header.revision), bad };
  }

  /** The lease at one subnet's key, or null. */
  async getLease(subnet: IP4Net, ipv6?: IP6Net): Promise<Lease | null> {
    const res = await this.client.get(this.keyOf(subnet, ipv6)).exec();
    const kv = res.kvs[0];
    return kv ? leaseFromKV(kv as unknown as RawKV) : null;
  }

  /** Grants an etcd lease; returns its ID. */
  async grant(ttl: number): Promise<string> {
    const r = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 } as never);
    return String(r.ID);
  }

  /** Revokes an etcd lease; a lease that is already gone is not an error. */
  async revoke(id: string): Promise<void> {
    if (id === "0") return;
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id } as never);
    } catch (e) {
      if (!/not found/i.test(String((e as Error).message))) throw e;
    }
  }

  /** Remaining TTL of a lease in seconds; -1 when it does not exist. */
  async timeToLive(id: string): Promise<number> {
    const r = await this.client.leaseClient.leaseTimeToLive({ ID: id } as never);
    return Number(r.TTL);
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
    const key = this.keyOf(subnet, ipv6);
    const id = ttl > 0 ? await this.grant(ttl) : "0";
    const put = this.client.put(key).value(encodeLeaseAttrs(attrs));
    if (id !== "0") put.lease(id);
    const res = await this.client.if(key, "Version", "==", 0).then(put).commit();
    if (!res.succeeded) {
      await this.revoke(id).catch(() => {});
      return null;
    }
    return {
      subnet,
      ipv6Subnet: ipv6,
      attrs,
      leaseId: id,
      expiration: ttl > 0 ? Date.now() + ttl * 1000 : 0,
      modRevision: String(res.header.revision),
    };
  }

  /**
   * Re-puts an existing key with new attributes and a fresh lease, only if the key still has
   * `expect.modRevision` (nobody changed it since we looked). `ttl` 0 keeps it lease-less.
   * The superseded etcd lease is revoked (upstream lets it expire; it holds no keys either way).
   * Returns null when the key changed or vanished.
   */
  async replace(expect: Lease, attrs: LeaseAttrs, ttl: number): Promise<Lease | null> {
    const key = this.keyOf(expect.subnet, expect.ipv6Subnet);
    const id = ttl > 0 ? await this.grant(ttl) : "0";
    const put = this.client.put(key).value(encodeLeaseAttrs(attrs));
    if (id !== "0") put.lease(id);
    const res = await this.client.if(key, "Mod", "==", expect.modRevision ?? "0").then(put)
      .commit();
    if (!res.succeeded) {
      await this.revoke(id).catch(() => {});
      return null;
    }
    if (expect.leaseId && expect.leaseId !== id) await this.revoke(expect.leaseId).catch(() => {});
    return {
      subnet: expect.subnet,
      ipv6Subnet: expect.ipv6Subnet,
      attrs,
      leaseId: id,
      expiration: ttl > 0 ? Date.now() + ttl * 1000 : 0,
      modRevision: String(res.header.revision),
    };
  }

  /** Deletes a key (only used for our own lease that no longer fits the config). */
  async delete(subnet: IP4Net, ipv6?: IP6Net): Promise<void> {
    await this.client.delete().key(this.keyOf(subnet, ipv6)).exec();
  }
}
