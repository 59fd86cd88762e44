/**
 * Neighbour (ARP and IPv6 NDP) entries and bridge forwarding-database (FDB) entries, both
 * RTM_*NEIGH: what the vxlan backend programs per remote host —
 *   `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent` and
 *   `bridge fdb replace <mac> dev <dev> dst <ip> self permanent`.
 * Addresses are IPv4 (`number`) or IPv6 (`bigint`); a neighbour's family follows its address.
 * @module
 */

import { familyOf, formatIP, type IP } from "../../lib/core/ip.ts";
import { formatMAC } from "../../lib/core/mac.ts";
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  type Attr,
  attr,
  decodeBody,
  dumpAs,
  NDA_DST,
  NDA_LLADDR,
  NDMSG,
  type NlMessage,
  NTF_SELF,
  NUD_PERMANENT,
  REPLACE,
  type Requester,
  requestMessage,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./message.ts";

/** A neighbour entry (IPv4: ARP, IPv6: NDP). */
export interface Neigh {
  index: number;
  ip: IP;
  /** Link-layer address; null while unresolved. */
  mac: Uint8Array | null;
  /** NUD_* state. */
  state: number;
  /** NTF_* flags. */
  flags: number;
}

/** A bridge FDB entry (for a vxlan device: MAC → remote VTEP address). */
export interface FdbEntry {
  index: number;
  mac: Uint8Array;
  /** Remote VTEP address (NDA_DST), absent for entries without one. */
  dst?: IP;
  state: number;
  flags: number;
}

/** RTM_NEWNEIGH/RTM_DELNEIGH with an ndmsg header and attributes. */
function neighMessage(
  type: number,
  flags: number,
  family: number,
  index: number,
  ntf: number,
  attrs: Attr[],
): Uint8Array {
  const state = type === RTM_NEWNEIGH ? NUD_PERMANENT : 0;
  return requestMessage(type, flags, NDMSG.encode({ family, index, state, flags: ntf }), attrs);
}

/** AF_INET or AF_INET6 for the family of `ip`. */
const neighFamily = (ip: IP) => familyOf(ip) === 6 ? AF_INET6 : AF_INET;

/** `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`. */
export function neighReplaceMessage(n: { index: number; ip: IP; mac: Uint8Array }): Uint8Array {
  return neighMessage(RTM_NEWNEIGH, REPLACE, neighFamily(n.ip), n.index, 0, [
    attr.ip(NDA_DST, n.ip),
    attr.bytes(NDA_LLADDR, n.mac),
  ]);
}

/** `ip neigh del <ip> dev <index>`. */
export function neighDelMessage(n: { index: number; ip: IP }): Uint8Array {
  return neighMessage(RTM_DELNEIGH, 0, neighFamily(n.ip), n.index, 0, [attr.ip(NDA_DST, n.ip)]);
}

/** `bridge fdb replace <mac> dev <index> dst <ip> self permanent`. */
export function fdbReplaceMessage(f: { index: number; mac: Uint8Array; dst: IP }): Uint8Array {
  const attrs = [attr.bytes(NDA_LLADDR, f.mac), attr.ip(NDA_DST, f.dst)];
  return neighMessage(RTM_NEWNEIGH, REPLACE, AF_BRIDGE, f.index, NTF_SELF, attrs);
}

/** `bridge fdb del <mac> dev <index> [dst <ip>] self`. */
export function fdbDelMessage(f: { index: number; mac: Uint8Array; dst?: IP }): Uint8Array {
  const attrs = [attr.bytes(NDA_LLADDR, f.mac)];
  if (f.dst !== undefined) attrs.push(attr.ip(NDA_DST, f.dst));
  return neighMessage(RTM_DELNEIGH, 0, AF_BRIDGE, f.index, NTF_SELF, attrs);
}

function decodeNeighbour(m: NlMessage) {
  const { hdr, attrs } = decodeBody(NDMSG, m);
  const mac = attrs.get(NDA_LLADDR);
  return { hdr, attrs, mac: mac ? mac.slice() : null };
}

/** Decodes an RTM_NEWNEIGH message of family AF_INET or AF_INET6. */
export function decodeNeigh(m: NlMessage): Neigh {
  const { hdr, attrs, mac } = decodeNeighbour(m);
  const ip = hdr.family === AF_INET6 ? attrs.ip6(NDA_DST) ?? 0n : attrs.ip4(NDA_DST) ?? 0;
  return { index: hdr.index, ip, mac, state: hdr.state, flags: hdr.flags };
}

/** Decodes an RTM_NEWNEIGH message of family AF_BRIDGE. */
export function decodeFdb(m: NlMessage): FdbEntry {
  const { hdr, attrs, mac } = decodeNeighbour(m);
  const e: FdbEntry = {
    index: hdr.index,
    mac: mac ?? new Uint8Array(6),
    state: hdr.state,
    flags: hdr.flags,
  };
  // NDA_DST of a vxlan FDB entry is an IPv4 or IPv6 address (by its length).
  const dst = attrs.ip(NDA_DST);
  if (dst !== undefined) e.dst = dst;
  return e;
}

/**
 * Link index of an RTM_NEWNEIGH / RTM_DELNEIGH message, neighbour or FDB entry alike, read
 * from the ndmsg header alone: enough to tell whether a notification concerns a device,
 * without decoding the attributes.
 */
export function neighIndex(m: NlMessage): number {
  return NDMSG.decode(m.payload).index;
}

/** Replaces the neighbour entry `ip` → `mac` on `index` (permanent). */
export function neighReplace(
  nl: Requester,
  n: { index: number; ip: IP; mac: Uint8Array },
): void {
  nl.request(
    neighReplaceMessage(n),
    `neigh replace ${formatIP(n.ip)} lladdr ${formatMAC(n.mac)} dev ${n.index}`,
  );
}

/** Deletes the neighbour entry for `ip` on `index` (ENOENT when absent). */
export function neighDel(nl: Requester, n: { index: number; ip: IP }): void {
  nl.request(neighDelMessage(n), `neigh del ${formatIP(n.ip)} dev ${n.index}`);
}

/** Dumps neighbour-table entries of `family`, keeping those of link `index` when given. */
function listNeighbours<T extends { index: number }>(
  nl: Requester,
  family: number,
  decode: (m: NlMessage) => T,
  index: number | undefined,
): T[] {
  const op = family === AF_BRIDGE ? "fdb list" : "neigh list";
  const all = dumpAs(nl, RTM_GETNEIGH, NDMSG.encode({ family }), decode, op);
  return all.filter((e) => index === undefined || e.index === index);
}

/** Neighbour entries of one family (default IPv4), optionally of one link. */
export function neighList(
  nl: Requester,
  filter: { index?: number; family?: 4 | 6 } = {},
): Neigh[] {
  const family = filter.family === 6 ? AF_INET6 : AF_INET;
  return listNeighbours(nl, family, decodeNeigh, filter.index);
}

/** Replaces the FDB entry `mac` → `dst` on `index` (self, permanent). */
export function fdbReplace(
  nl: Requester,
  f: { index: number; mac: Uint8Array; dst: IP },
): void {
  nl.request(
    fdbReplaceMessage(f),
    `fdb replace ${formatMAC(f.mac)} dev ${f.index} dst ${formatIP(f.dst)}`,
  );
}

/** Deletes the FDB entry `mac` (only its `dst` destination when given) on `index`. */
export function fdbDel(
  nl: Requester,
  f: { index: number; mac: Uint8Array; dst?: IP },
): void {
  const to = f.dst === undefined ? "" : ` dst ${formatIP(f.dst)}`;
  nl.request(fdbDelMessage(f), `fdb del ${formatMAC(f.mac)} dev ${f.index}${to}`);
}

/** FDB entries (including devices' own multicast addresses), optionally of one link. */
export function fdbList(nl: Requester, filter: { index?: number } = {}): FdbEntry[] {
  return listNeighbours(nl, AF_BRIDGE, decodeFdb, filter.index);
}
