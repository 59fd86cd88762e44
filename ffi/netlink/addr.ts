/**
 * Interface addresses (RTM_*ADDR), IPv4 (`number`) and IPv6 (`bigint`): add, replace,
 * delete, list. Listing reports scope and flags (permanent, deprecated, temporary…) so that
 * interface selection can rank addresses.
 * @module
 */

import { formatNet } from "../../lib/core/ip.ts";
import {
  ADD,
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  attr,
  decodeBody,
  dumpAs,
  IFA_ADDRESS,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  IFADDRMSG,
  type NlMessage,
  REPLACE,
  type Requester,
  requestMessage,
  RT_SCOPE_UNIVERSE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./message.ts";

/** An address to configure: IPv4 as `number`, IPv6 as `bigint`. */
export interface AddrSpec {
  ip: number | bigint;
  prefix: number;
  /** RT_SCOPE_*; default universe (global). */
  scope?: number;
  /** IFA_F_* flags to set (e.g. IFA_F_NODAD). */
  flags?: number;
}

/** An address as listed. */
export interface Addr {
  index: number;
  ip: number | bigint;
  /** True for IPv6 (`ip` is a bigint). */
  v6: boolean;
  prefix: number;
  scope: number;
  /** IFA_F_* (the 32-bit IFA_FLAGS when the kernel sends it). */
  flags: number;
  label?: string;
}

/** `10.5.52.0/32` or `fd00::1/64`. */
export function formatAddr(a: { ip: number | bigint; prefix: number }): string {
  return formatNet(a);
}

/** RTM_NEWADDR / RTM_DELADDR for `spec` on link `index`. */
export function addrMessage(
  type: number,
  flags: number,
  index: number,
  spec: AddrSpec,
): Uint8Array {
  const v6 = typeof spec.ip === "bigint";
  const fixed = IFADDRMSG.encode({
    family: v6 ? AF_INET6 : AF_INET,
    prefixlen: spec.prefix,
    flags: (spec.flags ?? 0) & 0xff,
    scope: spec.scope ?? RT_SCOPE_UNIVERSE,
    index,
  });
  // Like iproute2: the local address, and the same as "address" (no point-to-point peer).
  const attrs = [attr.ip(IFA_LOCAL, spec.ip), attr.ip(IFA_ADDRESS, spec.ip)];
  if ((spec.flags ?? 0) > 0xff) attrs.push(attr.u32(IFA_FLAGS, spec.flags!));
  return requestMessage(type, flags, fixed, attrs);
}

/** Decodes an RTM_NEWADDR message. */
export function decodeAddr(m: NlMessage): Addr {
  const { hdr, attrs } = decodeBody(IFADDRMSG, m);
  const v6 = hdr.family === AF_INET6;
  // IPv4: IFA_LOCAL is the address (IFA_ADDRESS may be a peer); IPv6 sends only IFA_ADDRESS.
  const key = attrs.has(IFA_LOCAL) ? IFA_LOCAL : IFA_ADDRESS;
  const a: Addr = {
    index: hdr.index,
    ip: (v6 ? attrs.ip6(key) : attrs.ip4(key)) ?? (v6 ? 0n : 0),
    v6,
    prefix: hdr.prefixlen,
    scope: hdr.scope,
    flags: attrs.u32(IFA_FLAGS) ?? hdr.flags,
  };
  const label = attrs.str(IFA_LABEL);
  if (label) a.label = label;
  return a;
}

/** `ip addr add`: EEXIST when the address is already there. */
export function addrAdd(nl: Requester, index: number, spec: AddrSpec): void {
  nl.request(
    addrMessage(RTM_NEWADDR, ADD, index, spec),
    `addr add ${formatAddr(spec)} dev ${index}`,
  );
}

/** `ip addr replace`: adds, or updates an existing identical address. */
export function addrReplace(nl: Requester, index: number, spec: AddrSpec): void {
  nl.request(
    addrMessage(RTM_NEWADDR, REPLACE, index, spec),
    `addr replace ${formatAddr(spec)} dev ${index}`,
  );
}

/** `ip addr del`: EADDRNOTAVAIL when absent. */
export function addrDel(nl: Requester, index: number, spec: AddrSpec): void {
  nl.request(addrMessage(RTM_DELADDR, 0, index, spec), `addr del ${formatAddr(spec)} dev ${index}`);
}

/** Filter for {@link addrList}. */
export interface AddrFilter {
  /** Only this link. */
  index?: number;
  /** 4 or 6; both when absent. */
  family?: 4 | 6;
}

/** Addresses in the kernel's order, optionally filtered. */
export function addrList(nl: Requester, filter: AddrFilter = {}): Addr[] {
  const family = filter.family === 4 ? AF_INET : filter.family === 6 ? AF_INET6 : AF_UNSPEC;
  const all = dumpAs(nl, RTM_GETADDR, IFADDRMSG.encode({ family }), decodeAddr, "addr list");
  return all.filter((a) => filter.index === undefined || a.index === filter.index);
}
