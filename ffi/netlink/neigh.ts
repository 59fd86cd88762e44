/**
 * Neighbour (ARP) entries and bridge forwarding-database (FDB) entries, both RTM_*NEIGH:
 * what the vxlan backend programs per remote host —
 *   `ip neigh replace <ip> lladdr <mac> dev <dev> nud permanent` and
 *   `bridge fdb replace <mac> dev <dev> dst <ip> self permanent`.
 * @module
 */

import { formatIP4 } from "../../lib/core/ip.ts";
import { formatMAC } from "../../lib/core/mac.ts";
import {
  AF_BRIDGE,
  AF_INET,
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

/** An IPv4 neighbour entry. */
export interface Neigh {
  index: number;
  ip: number;
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
  /** Remote VTEP IPv4 (NDA_DST), absent for entries without one. */
  dst?: number;
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

/** `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`. */
export function neighReplaceMessage(n: { index: number; ip: number; mac: Uint8Array }): Uint8Array {
  return neighMessage(RTM_NEWNEIGH, REPLACE, AF_INET, n.index, 0, [
    attr.ip4(NDA_DST, n.ip),
    attr.bytes(NDA_LLADDR, n.mac),
  ]);
}

/** `ip neigh del <ip> dev <index>`. */
export function neighDelMessage(n: { index: number; ip: number }): Uint8Array {
  return neighMessage(RTM_DELNEIGH, 0, AF_INET, n.index, 0, [attr.ip4(NDA_DST, n.ip)]);
}

/** `bridge fdb replace <mac> dev <index> dst <ip> self permanent`. */
export function fdbReplaceMessage(f: { index: number; mac: Uint8Array; dst: number }): Uint8Array {
  const attrs = [attr.bytes(NDA_LLADDR, f.mac), attr.ip4(NDA_DST, f.dst)];
  return neighMessage(RTM_NEWNEIGH, REPLACE, AF_BRIDGE, f.index, NTF_SELF, attrs);
}

/** `bridge fdb del <mac> dev <index> [dst <ip>] self`. */
export function fdbDelMessage(f: { index: number; mac: Uint8Array; dst?: number }): Uint8Array {
  const attrs = [attr.bytes(NDA_LLADDR, f.mac)];
  if (f.dst !== undefined) attrs.push(attr.ip4(NDA_DST, f.dst));
  return neighMessage(RTM_DELNEIGH, 0, AF_BRIDGE, f.index, NTF_SELF, attrs);
}

function decodeNeighbour(m: NlMessage) {
  const { hdr, attrs } = decodeBody(NDMSG, m);
  const mac = attrs.get(NDA_LLADDR);
  return { hdr, attrs, mac: mac ? mac.slice() : null };
}

/** Decodes an RTM_NEWNEIGH message of family AF_INET. */
export function decodeNeigh(m: NlMessage): Neigh {
  const { hdr, attrs, mac } = decodeNeighbour(m);
  return { index: hdr.index, ip: attrs.ip4(NDA_DST) ?? 0, mac, state: hdr.state, flags: hdr.flags };
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
  // NDA_DST of a vxlan FDB entry is an IPv4 or IPv6 address; only IPv4 is reported.
  if (attrs.get(NDA_DST)?.byteLength === 4) e.dst = attrs.ip4(NDA_DST);
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
  n: { index: number; ip: number; mac: Uint8Array },
): void {
  nl.request(
    neighReplaceMessage(n),
    `neigh replace ${formatIP4(n.ip)} lladdr ${formatMAC(n.mac)} dev ${n.index}`,
  );
}

/** Deletes the neighbour entry for `ip` on `index` (ENOENT when absent). */
export function neighDel(nl: Requester, n: { index: number; ip: number }): void {
  nl.request(neighDelMessage(n), `neigh del ${formatIP4(n.ip)} dev ${n.index}`);
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

/** IPv4 neighbour entries, optionally of one link. */
export function neighList(nl: Requester, filter: { index?: number } = {}): Neigh[] {
  return listNeighbours(nl, AF_INET, decodeNeigh, filter.index);
}

/** Replaces the FDB entry `mac` → `dst` on `index` (self, permanent). */
export function fdbReplace(
  nl: Requester,
  f: { index: number; mac: Uint8Array; dst: number },
): void {
  nl.request(
    fdbReplaceMessage(f),
    `fdb replace ${formatMAC(f.mac)} dev ${f.index} dst ${formatIP4(f.dst)}`,
  );
}

/** Deletes the FDB entry `mac` (only its `dst` destination when given) on `index`. */
export function fdbDel(
  nl: Requester,
  f: { index: number; mac: Uint8Array; dst?: number },
): void {
  const to = f.dst === undefined ? "" : ` dst ${formatIP4(f.dst)}`;
  nl.request(fdbDelMessage(f), `fdb del ${formatMAC(f.mac)} dev ${f.index}${to}`);
}

/** FDB entries (including devices' own multicast addresses), optionally of one link. */
export function fdbList(nl: Requester, filter: { index?: number } = {}): FdbEntry[] {
  return listNeighbours(nl, AF_BRIDGE, decodeFdb, filter.index);
}
