/**
 * Network interfaces (RTM_*LINK): look up, list, set up/down, MTU and MAC, create a
 * VXLAN device, delete. Message builders are exported for byte-level tests.
 * @module
 */

import { formatMAC } from "../../lib/core/mac.ts";
import { formatIP, type IP } from "../../lib/core/ip.ts";
import {
  ADD,
  AF_UNSPEC,
  type Attr,
  attr,
  type Attrs,
  decodeBody,
  dumpAs,
  IFF_UP,
  IFINFOMSG,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_L2MISS,
  IFLA_VXLAN_L3MISS,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  isNetlinkError,
  type NlMessage,
  type Requester,
  requestMessage,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "./message.ts";

/** VXLAN parameters of a link (IFLA_INFO_DATA of kind "vxlan"). */
export interface VxlanInfo {
  vni: number;
  /** Destination UDP port; 0 when the kernel did not report one. */
  port: number;
  /** Local (source) address: IPv4 as u32, IPv6 as bigint; 0 when unset. */
  local: IP;
  /** Underlay device index, 0 when unset. */
  underlayIndex: number;
  learning: boolean;
  gbp: boolean;
  l2miss: boolean;
  l3miss: boolean;
}

/** A network interface as the kernel reports it. */
export interface Link {
  index: number;
  name: string;
  mtu: number;
  /** IFF_* flags. */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Hardware address; null for devices without one (TUN, loopback reports zeros). */
  mac: Uint8Array | null;
  /** ARPHRD_* type. */
  type: number;
  /** Link kind (`vxlan`, `veth`, `bridge`, `tun`…), absent for plain hardware devices. */
  kind?: string;
  /** Index of the master (bridge) device, if enslaved. */
  master?: number;
  vxlan?: VxlanInfo;
}

/** What {@link vxlanCreate} creates (no group: flannel programs FDB entries per peer). */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** Destination port; 0 or absent = kernel default (8472). */
  port?: number;
  /**
   * Source address; 0 or absent = unset. An IPv6 address (bigint) makes an IPv6 VTEP: the
   * kernel then encapsulates in IPv6 and keeps the device 70 bytes below its underlay.
   */
  local?: IP;
  /** Underlay device index; 0 or absent = unset. */
  underlayIndex?: number;
  learning?: boolean;
  gbp?: boolean;
  mtu?: number;
  /** MAC to assign; absent = kernel chooses a random one. */
  mac?: Uint8Array;
}

const IFNAMSIZ = 16;

function checkName(name: string): void {
  if (name.length === 0 || name.length >= IFNAMSIZ || /[\s/]/.test(name)) {
    throw new RangeError(
      `invalid interface name ${JSON.stringify(name)} (1–15 characters, no spaces or '/')`,
    );
  }
}

function decodeVxlan(d: Attrs): VxlanInfo {
  return {
    vni: d.u32(IFLA_VXLAN_ID) ?? 0,
    port: d.be16(IFLA_VXLAN_PORT) ?? 0,
    local: d.ip4(IFLA_VXLAN_LOCAL) ?? d.ip6(IFLA_VXLAN_LOCAL6) ?? 0,
    underlayIndex: d.u32(IFLA_VXLAN_LINK) ?? 0,
    learning: (d.u8(IFLA_VXLAN_LEARNING) ?? 0) !== 0,
    gbp: d.has(IFLA_VXLAN_GBP),
    l2miss: (d.u8(IFLA_VXLAN_L2MISS) ?? 0) !== 0,
    l3miss: (d.u8(IFLA_VXLAN_L3MISS) ?? 0) !== 0,
  };
}

/** Decodes an RTM_NEWLINK message. */
export function decodeLink(m: NlMessage): Link {
  const { hdr, attrs } = decodeBody(IFINFOMSG, m);
  const mac = attrs.get(IFLA_ADDRESS);
  const link: Link = {
    index: hdr.index,
    name: attrs.str(IFLA_IFNAME) ?? "",
    mtu: attrs.u32(IFLA_MTU) ?? 0,
    flags: hdr.flags,
    up: (hdr.flags & IFF_UP) !== 0,
    mac: mac ? mac.slice() : null,
    type: hdr.type,
  };
  const master = attrs.u32(IFLA_MASTER);
  if (master) link.master = master;
  const info = attrs.nested(IFLA_LINKINFO);
  const kind = info?.str(IFLA_INFO_KIND);
  if (kind) link.kind = kind;
  const data = info?.nested(IFLA_INFO_DATA);
  if (kind === "vxlan" && data) link.vxlan = decodeVxlan(data);
  return link;
}

/** RTM_GETLINK for one link, by name or index. */
export function linkGetMessage(key: string | number): Uint8Array {
  const byName = typeof key === "string";
  if (byName) checkName(key);
  const fixed = IFINFOMSG.encode({ family: AF_UNSPEC, index: byName ? 0 : key });
  return requestMessage(RTM_GETLINK, 0, fixed, byName ? [attr.str(IFLA_IFNAME, key)] : []);
}

/** RTM_NEWLINK changing an existing link: flags under `change` mask, plus attributes. */
export function linkChangeMessage(index: number, attrs: Attr[], flags = 0, change = 0): Uint8Array {
  return requestMessage(
    RTM_NEWLINK,
    0,
    IFINFOMSG.encode({ family: AF_UNSPEC, index, flags, change }),
    attrs,
  );
}

/** RTM_NEWLINK creating a VXLAN device (fails with EEXIST when the name is taken). */
export function vxlanCreateMessage(s: VxlanSpec): Uint8Array {
  checkName(s.name);
  const data: Attr[] = [attr.u32(IFLA_VXLAN_ID, s.vni)];
  if (s.underlayIndex) data.push(attr.u32(IFLA_VXLAN_LINK, s.underlayIndex));
  if (typeof s.local === "bigint" && s.local) data.push(attr.ip6(IFLA_VXLAN_LOCAL6, s.local));
  else if (s.local) data.push(attr.ip(IFLA_VXLAN_LOCAL, s.local));
  // Sent explicitly: the kernel enables learning when the attribute is absent.
  data.push(attr.u8(IFLA_VXLAN_LEARNING, s.learning ? 1 : 0));
  if (s.gbp) data.push(attr.flag(IFLA_VXLAN_GBP));
  if (s.port) data.push(attr.be16(IFLA_VXLAN_PORT, s.port));
  const attrs: Attr[] = [attr.str(IFLA_IFNAME, s.name)];
  if (s.mtu) attrs.push(attr.u32(IFLA_MTU, s.mtu));
  if (s.mac) attrs.push(attr.bytes(IFLA_ADDRESS, s.mac));
  attrs.push(
    attr.nest(IFLA_LINKINFO, [attr.str(IFLA_INFO_KIND, "vxlan"), attr.nest(IFLA_INFO_DATA, data)]),
  );
  return requestMessage(RTM_NEWLINK, ADD, IFINFOMSG.encode({ family: AF_UNSPEC }), attrs);
}

function getOne(nl: Requester, key: string | number): Link | null {
  try {
    const [m] = nl.request(linkGetMessage(key), `link get ${key}`);
    return m ? decodeLink(m) : null;
  } catch (e) {
    if (isNetlinkError(e, "ENODEV")) return null;
    throw e;
  }
}

/** The link called `name`, or null when there is none. */
export function linkByName(nl: Requester, name: string): Link | null {
  return getOne(nl, name);
}

/** The link with `index`, or null when there is none. */
export function linkByIndex(nl: Requester, index: number): Link | null {
  return getOne(nl, index);
}

/** All links, in index order. */
export function linkList(nl: Requester): Link[] {
  return dumpAs(nl, RTM_GETLINK, IFINFOMSG.encode({ family: AF_UNSPEC }), decodeLink, "link list");
}

/** `ip link set <index> up`. */
export function linkSetUp(nl: Requester, index: number): void {
  nl.request(linkChangeMessage(index, [], IFF_UP, IFF_UP), `link set ${index} up`);
}

/** `ip link set <index> down`. */
export function linkSetDown(nl: Requester, index: number): void {
  nl.request(linkChangeMessage(index, [], 0, IFF_UP), `link set ${index} down`);
}

/** `ip link set <index> mtu <mtu>`. */
export function linkSetMTU(nl: Requester, index: number, mtu: number): void {
  nl.request(linkChangeMessage(index, [attr.u32(IFLA_MTU, mtu)]), `link set ${index} mtu ${mtu}`);
}

/** `ip link set <index> address <mac>`. */
export function linkSetMAC(nl: Requester, index: number, mac: Uint8Array): void {
  nl.request(
    linkChangeMessage(index, [attr.bytes(IFLA_ADDRESS, mac)]),
    `link set ${index} address ${formatMAC(mac)}`,
  );
}

/** Creates a VXLAN device and returns it as read back from the kernel. */
export function vxlanCreate(nl: Requester, s: VxlanSpec): Link {
  const what = `link add ${s.name} type vxlan id ${s.vni}` +
    (s.local ? ` local ${formatIP(s.local)}` : "");
  nl.request(vxlanCreateMessage(s), what);
  const link = linkByName(nl, s.name);
  if (!link) throw new Error(`${what}: created but not found afterwards`);
  return link;
}

/** `ip link del <index>`. */
export function linkDel(nl: Requester, index: number): void {
  nl.request(requestMessage(RTM_DELLINK, 0, IFINFOMSG.encode({ index })), `link del ${index}`);
}
