/**
 * Mixed clusters, upstream's flanneld beside ours (`Cluster.create({upstreamHosts})`):
 * what each side wrote to etcd, in a form to compare byte for byte, and whether a side has
 * programmed the other's lease.
 *
 * Upstream v0.20.2's lease watch can miss a lease for good. After its snapshot of the
 * leases it watches from the snapshot's revision but handles only the first event of the
 * first response, and every later watch starts from the current revision (it carries the
 * response's CompactRevision, 0, as its cursor). Its own lease is that first event, so a
 * lease written right after it (the next revisions, before its next watch is up) is never
 * seen, until that key is written again (its owner restarts, or renews a day later). Two
 * upstream hosts started in the same instant hit this most of the time; staggered by 2 s,
 * never. Our daemon resumes from the last revision it delivered and misses nothing.
 * @module
 */

import type { Cluster, Host } from "./cluster.ts";
import { must, nsExec } from "./netns.ts";
import { hostLeaseKey } from "./peer_datapath.ts";

/** Values that differ per host in a lease: its own addresses and VTEP MACs. */
const PER_HOST = /"(PublicIP|PublicIPv6|VtepMAC)":"[^"]*"/g;

/** A lease value with each per-host value replaced by `…`: what must be byte-identical. */
export function leaseShape(value: string): string {
  return value.replace(PER_HOST, '"$1":"…"');
}

/** A subnet.env with the host's own subnet(s) replaced by `…`, byte for byte otherwise. */
export function subnetEnvShape(text: string): string {
  return text.replace(/^(FLANNEL_(?:IPV6_)?SUBNET)=.*$/gm, "$1=…");
}

/** A host's lease as stored in etcd. */
export interface LeaseRecord {
  host: Host;
  key: string;
  /** The value exactly as stored. */
  value: string;
  /** etcd revision that created the key. */
  createRevision: number;
  /** TTL the key's etcd lease was granted with (s); null for a lease-less reservation. */
  grantedTtl: number | null;
}

/** Reads host `h`'s lease: key, raw value, creation revision, granted TTL. */
export async function leaseRecord(c: Cluster, h: Host): Promise<LeaseRecord> {
  const key = hostLeaseKey(c, h);
  const json = await c.etcd.ctl("get", key, "-w", "json");
  // Lease IDs are 63-bit: read them from the text, JSON numbers would round them.
  const leaseId = /"lease":(\d+)/.exec(json)?.[1];
  const kv = JSON.parse(json).kvs?.[0];
  if (!kv) throw new Error(`no lease ${key} in etcd for ${h.name}`);
  let grantedTtl: number | null = null;
  if (leaseId) {
    const ttl = await c.etcd.ctl("lease", "timetolive", BigInt(leaseId).toString(16));
    grantedTtl = Number(/granted with TTL\((\d+)s\)/.exec(ttl)?.[1] ?? NaN);
  }
  return {
    host: h,
    key,
    value: new TextDecoder().decode(Uint8Array.from(atob(kv.value), (ch) => ch.charCodeAt(0))),
    createRevision: Number(kv.create_revision),
    grantedTtl,
  };
}

/**
 * Writes `entries` (key, value) in one etcd transaction: one revision, so a watcher gets
 * them as one watch response.
 */
export async function putInOneTxn(c: Cluster, entries: [string, string][]): Promise<void> {
  // etcdctl txn reads: compares, blank line, success ops, blank line, failure ops, blank line.
  const ops = entries.map(([k, v]) => `put ${k} ${JSON.stringify(v)}`).join("\n");
  must(
    await nsExec(c.etcdNs, "sh", [
      "-c",
      `printf '\\n%s\\n\\n\\n' "$1" | ETCDCTL_API=3 etcdctl --endpoints=${c.etcd.endpoint} txn`,
      "sh",
      ops,
    ]),
    "etcdctl txn",
  );
}
