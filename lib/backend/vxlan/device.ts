/**
 * The `flannel.<VNI>` / `flannel-v6.<VNI>` device: reuse a compatible existing one (keeping its MAC, which
 * other hosts already have in their FDB), otherwise delete and create it.
 * @module
 */

import {
  isNetlinkError,
  type Link,
  linkByName,
  linkDel,
  linkSetMTU,
  type Requester,
  vxlanCreate,
  type VxlanSpec,
} from "../../../ffi/netlink/mod.ts";
import { formatIP, type IP } from "../../core/ip.ts";

/** A random locally administered unicast MAC (multicast bit clear, local bit set). */
export function randomMAC(): Uint8Array {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] & 0xfe) | 0x02;
  return b;
}

/**
 * Why `link` cannot serve as the device `want`, or null when it can. Strict: kind, VNI,
 * GBP, l2miss; only when both sides are set: underlay, local address, port (upstream's rule).
 */
export function incompatibility(link: Link, want: VxlanSpec): string | null {
  const v = link.vxlan;
  if (link.kind !== "vxlan" || !v) return `kind ${link.kind ?? "unknown"}, want vxlan`;
  if (v.vni !== want.vni) return `VNI ${v.vni}, want ${want.vni}`;
  if (v.gbp !== (want.gbp ?? false)) return `GBP ${v.gbp}, want ${want.gbp ?? false}`;
  if (v.l2miss) return "l2miss on";
  // 0 (or 0n) is "unset"; an IPv4 and an IPv6 local address always differ.
  const set = (x: IP | undefined) => x !== undefined && x !== 0 && x !== 0n;
  const both = (a: IP, b: IP | undefined) => set(a) && set(b) && a !== b;
  if (both(v.underlayIndex, want.underlayIndex)) {
    return `underlay ${v.underlayIndex}, want ${want.underlayIndex}`;
  }
  if (both(v.local, want.local)) {
    return `local ${formatIP(v.local)}, want ${formatIP(want.local!)}`;
  }
  if (both(v.port, want.port)) return `port ${v.port}, want ${want.port}`;
  return null;
}

/** The outcome of {@link ensureDevice}. */
export interface EnsuredDevice {
  link: Link;
  /** What was done: `reused`, `created`, or `recreated (<reason>)`. */
  action: string;
}

/**
 * Returns a device matching `want`: an existing compatible one (MTU corrected), else a new
 * one with `want.mac` (a random MAC when absent).
 */
export function ensureDevice(nl: Requester, want: VxlanSpec): EnsuredDevice {
  const existing = linkByName(nl, want.name);
  let action = "created";
  if (existing) {
    const why = incompatibility(existing, want);
    if (why === null) {
      if (want.mtu && existing.mtu !== want.mtu) linkSetMTU(nl, existing.index, want.mtu);
      return { link: linkByName(nl, want.name) ?? existing, action: "reused" };
    }
    linkDel(nl, existing.index);
    action = `recreated (${why})`;
  }
  const spec = { ...want, mac: want.mac ?? randomMAC() };
  try {
    return { link: vxlanCreate(nl, spec), action };
  } catch (e) {
    // Created concurrently (e.g. by a previous instance still exiting): take it if it fits.
    const again = isNetlinkError(e, "EEXIST") ? linkByName(nl, want.name) : null;
    if (again && incompatibility(again, want) === null) return { link: again, action: "reused" };
    throw e;
  }
}
