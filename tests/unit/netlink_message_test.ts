/**
 * The rtnetlink wire format, byte for byte. Expected bytes are written out by hand from the
 * kernel uapi headers (little-endian host; attributes: u16 len, u16 type, payload padded to
 * 4). The builders under test are pure: nothing here opens a socket.
 */

import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  attr,
  Attrs,
  decodeDone,
  decodeError,
  encodeAttrs,
  encodeMessage,
  IFINFOMSG,
  NetlinkError,
  NetlinkParseError,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseMessages,
  RT_SCOPE_UNIVERSE,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  setSeq,
} from "../../ffi/netlink/message.ts";
import {
  decodeLink,
  linkChangeMessage,
  linkGetMessage,
  vxlanCreateMessage,
} from "../../ffi/netlink/link.ts";
import { addrMessage, decodeAddr } from "../../ffi/netlink/addr.ts";
import { decodeRoute, routeGetMessage, routeMessage } from "../../ffi/netlink/route.ts";
import {
  decodeFdb,
  fdbReplaceMessage,
  neighDelMessage,
  neighReplaceMessage,
} from "../../ffi/netlink/neigh.ts";
import { parseCIDR4, parseIP6 } from "../../lib/core/ip.ts";

import { IFF_UP, RTM_DELADDR, RTM_DELROUTE, RTM_NEWADDR } from "../../ffi/netlink/message.ts";
import { ip4, mac } from "../helpers/addr.ts";

/** Concatenates byte groups (one group per struct field or attribute). */
function bytes(...groups: number[][]): Uint8Array {
  return Uint8Array.from(groups.flat());
}
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
const REPLACE_FLAGS = [0x05, 0x05]; // NLM_F_REQUEST|NLM_F_ACK|NLM_F_REPLACE|NLM_F_CREATE = 0x0505

Deno.test("attributes: u8/u16/u32/be16/ip4/str/flag with padding", () => {
  assertEquals(
    encodeAttrs([
      attr.u8(7, 1),
      attr.u16(8, 0x1234),
      attr.u32(9, 0x01020304),
      attr.be16(15, 8472),
      attr.ip4(1, ip4("10.5.53.0")),
      attr.str(3, "ab"),
      attr.flag(23),
    ]),
    bytes(
      [5, 0, 7, 0, 1, 0, 0, 0], // len 5 type 7, u8 1, 3 bytes padding
      [6, 0, 8, 0, 0x34, 0x12, 0, 0], // len 6 type 8, u16 LE, 2 bytes padding
      [8, 0, 9, 0, 4, 3, 2, 1], // len 8 type 9, u32 LE
      [6, 0, 15, 0, 0x21, 0x18, 0, 0], // len 6 type 15, 8472 big-endian, padding
      [8, 0, 1, 0, 10, 5, 53, 0], // len 8 type 1, 10.5.53.0 network order
      [7, 0, 3, 0, 0x61, 0x62, 0, 0], // len 7 type 3, "ab\0", 1 byte padding
      [4, 0, 23, 0], // len 4 type 23: flag, no payload
    ),
  );
});

Deno.test("attributes: nesting sets NLA_F_NESTED and sums padded children", () => {
  const b = encodeAttrs([attr.nest(18, [attr.str(1, "x"), attr.nest(2, [attr.u8(7, 0)])])]);
  assertEquals(
    b,
    bytes(
      [24, 0, 0x12, 0x80], // len 4+8+12 = 24, type 18 | NLA_F_NESTED (0x8000)
      [6, 0, 1, 0, 0x78, 0, 0, 0], //   len 6 type 1 "x\0" + 2 padding
      [12, 0, 2, 0x80], //   len 4+8, type 2 | NLA_F_NESTED
      [5, 0, 7, 0, 0, 0, 0, 0], //     len 5 type 7 u8 0 + 3 padding
    ),
  );
  const outer = new Attrs(b);
  assertEquals(outer.types(), [18]); // NLA_F_NESTED masked off on parse
  const inner = outer.nested(18)!;
  assertEquals(inner.str(1), "x");
  assertEquals(inner.nested(2)!.u8(7), 0);
});

Deno.test("route replace 10.5.53.0/24 via 10.5.53.0 dev 5 onlink (vxlan per-lease route)", () => {
  const m = routeMessage(RTM_NEWROUTE, 0x500, {
    dst: parseCIDR4("10.5.53.0/24")!,
    gw: ip4("10.5.53.0"),
    dev: 5,
    onlink: true,
  });
  assertEquals(
    m,
    bytes(
      [52, 0, 0, 0], // nlmsg_len = 16 + 12 + 3*8
      [24, 0], // nlmsg_type RTM_NEWROUTE
      REPLACE_FLAGS, // nlmsg_flags
      [0, 0, 0, 0], // nlmsg_seq (the socket fills it in)
      [0, 0, 0, 0], // nlmsg_pid
      [2, 24, 0, 0], // rtm_family AF_INET, rtm_dst_len 24, rtm_src_len, rtm_tos
      [254, 3, 0, 1], // rtm_table MAIN, rtm_protocol BOOT, rtm_scope UNIVERSE, rtm_type UNICAST
      [4, 0, 0, 0], // rtm_flags RTNH_F_ONLINK
      [8, 0, 1, 0, 10, 5, 53, 0], // RTA_DST
      [8, 0, 5, 0, 10, 5, 53, 0], // RTA_GATEWAY
      [8, 0, 4, 0, 5, 0, 0, 0], // RTA_OIF 5
    ),
  );
  setSeq(m, 0x01020304);
  assertEquals([...m.subarray(8, 12)], [4, 3, 2, 1]);
});

Deno.test("route del: wildcards for protocol, scope and type; big tables go in RTA_TABLE", () => {
  const m = routeMessage(RTM_DELROUTE, 0, { dst: parseCIDR4("10.5.0.0/16")!, dev: 3, table: 1000 });
  assertEquals(
    m,
    bytes(
      [52, 0, 0, 0], // nlmsg_len = 16 + 12 + 3*8
      [25, 0], // RTM_DELROUTE
      [5, 0], // NLM_F_REQUEST|NLM_F_ACK
      [0, 0, 0, 0, 0, 0, 0, 0], // seq, pid
      [2, 16, 0, 0], // AF_INET, dst_len 16
      [0, 0, 255, 0], // table UNSPEC (see RTA_TABLE), protocol any, scope NOWHERE (any), type any
      [0, 0, 0, 0], // rtm_flags
      [8, 0, 15, 0, 0xe8, 3, 0, 0], // RTA_TABLE 1000
      [8, 0, 1, 0, 10, 5, 0, 0], // RTA_DST
      [8, 0, 4, 0, 3, 0, 0, 0], // RTA_OIF
    ),
  );
});

Deno.test("route get 8.8.8.8", () => {
  assertEquals(
    routeGetMessage(ip4("8.8.8.8")),
    bytes(
      [36, 0, 0, 0, 26, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], // len 36, RTM_GETROUTE, REQUEST|ACK
      [2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // AF_INET, dst_len 32, everything else 0
      [8, 0, 1, 0, 8, 8, 8, 8], // RTA_DST
    ),
  );
});

Deno.test("addr replace 10.5.52.0/32 dev 7, addr del IPv6", () => {
  assertEquals(
    addrMessage(RTM_NEWADDR, 0x500, 7, { ip: ip4("10.5.52.0"), prefix: 32 }),
    bytes(
      [40, 0, 0, 0, 20, 0, ...REPLACE_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0], // len 40, RTM_NEWADDR
      [2, 32, 0, 0], // ifa_family AF_INET, ifa_prefixlen 32, ifa_flags, ifa_scope UNIVERSE
      [7, 0, 0, 0], // ifa_index
      [8, 0, 2, 0, 10, 5, 52, 0], // IFA_LOCAL
      [8, 0, 1, 0, 10, 5, 52, 0], // IFA_ADDRESS
    ),
  );
  assertEquals(
    addrMessage(RTM_DELADDR, 0, 2, {
      ip: parseIP6("fd00::1")!,
      prefix: 64,
      scope: RT_SCOPE_UNIVERSE,
    }),
    bytes(
      [64, 0, 0, 0, 21, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], // len 16+8+2*20, RTM_DELADDR
      [10, 64, 0, 0, 2, 0, 0, 0], // AF_INET6, /64, flags, scope, index 2
      [20, 0, 2, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // IFA_LOCAL fd00::1
      [20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], // IFA_ADDRESS
    ),
  );
});

Deno.test("link: get by name, set up", () => {
  assertEquals(
    linkGetMessage("eth0"),
    bytes(
      [44, 0, 0, 0, 18, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], // len 16 + 16 + 12, RTM_GETLINK, REQUEST|ACK
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // ifinfomsg: AF_UNSPEC, index 0, flags, change
      [9, 0, 3, 0, ...ascii("eth0"), 0, 0, 0, 0], // IFLA_IFNAME "eth0\0" + 3 padding
    ),
  );
  assertEquals(
    linkChangeMessage(3, [], IFF_UP, IFF_UP),
    bytes(
      [32, 0, 0, 0, 16, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], // len 32, RTM_NEWLINK, REQUEST|ACK
      [0, 0, 0, 0], // ifi_family, pad, ifi_type
      [3, 0, 0, 0], // ifi_index
      [1, 0, 0, 0], // ifi_flags IFF_UP
      [1, 0, 0, 0], // ifi_change IFF_UP
    ),
  );
  assertThrows(() => linkGetMessage("a-name-that-is-too-long"), RangeError);
});

Deno.test("link add flannel.1 type vxlan (every option)", () => {
  const m = vxlanCreateMessage({
    name: "flannel.1",
    vni: 1,
    port: 8472,
    local: ip4("192.168.1.11"),
    underlayIndex: 2,
    learning: false,
    gbp: true,
    mtu: 1450,
    mac: mac("0e:11:22:33:44:55"),
  });
  assertEquals(
    m,
    bytes(
      [132, 0, 0, 0], // nlmsg_len = 16 + 16 + 100
      [16, 0], // RTM_NEWLINK
      [5, 6], // NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE = 0x0605
      [0, 0, 0, 0, 0, 0, 0, 0], // seq, pid
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // ifinfomsg all zero
      [14, 0, 3, 0, ...ascii("flannel.1"), 0, 0, 0], // IFLA_IFNAME (len 14) + 2 padding
      [8, 0, 4, 0, 0xaa, 5, 0, 0], // IFLA_MTU 1450
      [10, 0, 1, 0, 0x0e, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0], // IFLA_ADDRESS + 2 padding
      [64, 0, 18, 0x80], // IFLA_LINKINFO | NESTED, len 4 + 12 + 48
      [10, 0, 1, 0, ...ascii("vxlan"), 0, 0, 0], //   IFLA_INFO_KIND "vxlan\0" + 2 padding
      [48, 0, 2, 0x80], //   IFLA_INFO_DATA | NESTED, len 4 + 44
      [8, 0, 1, 0, 1, 0, 0, 0], //     IFLA_VXLAN_ID 1
      [8, 0, 3, 0, 2, 0, 0, 0], //     IFLA_VXLAN_LINK 2
      [8, 0, 4, 0, 192, 168, 1, 11], //     IFLA_VXLAN_LOCAL
      [5, 0, 7, 0, 0, 0, 0, 0], //     IFLA_VXLAN_LEARNING 0 + 3 padding
      [4, 0, 23, 0], //     IFLA_VXLAN_GBP (flag)
      [6, 0, 15, 0, 0x21, 0x18, 0, 0], //     IFLA_VXLAN_PORT 8472 big-endian + 2 padding
    ),
  );
});

Deno.test("neigh replace / del and fdb replace (vxlan per-lease entries)", () => {
  assertEquals(
    neighReplaceMessage({ index: 7, ip: ip4("10.5.53.0"), mac: mac("0e:aa:bb:cc:dd:ee") }),
    bytes(
      [48, 0, 0, 0, 28, 0, ...REPLACE_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0], // len 48, RTM_NEWNEIGH
      [2, 0, 0, 0], // ndm_family AF_INET, ndm_pad1, ndm_pad2
      [7, 0, 0, 0], // ndm_ifindex
      [0x80, 0, 0, 0], // ndm_state NUD_PERMANENT (u16), ndm_flags, ndm_type
      [8, 0, 1, 0, 10, 5, 53, 0], // NDA_DST
      [10, 0, 2, 0, 0x0e, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0, 0], // NDA_LLADDR + padding
    ),
  );
  assertEquals(
    neighDelMessage({ index: 7, ip: ip4("10.5.53.0") }),
    bytes(
      [36, 0, 0, 0, 29, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], // len 36, RTM_DELNEIGH, REQUEST|ACK
      [2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0], // AF_INET, index 7, state 0
      [8, 0, 1, 0, 10, 5, 53, 0], // NDA_DST
    ),
  );
  assertEquals(
    fdbReplaceMessage({ index: 7, mac: mac("0e:aa:bb:cc:dd:ee"), dst: ip4("192.168.1.12") }),
    bytes(
      [48, 0, 0, 0, 28, 0, ...REPLACE_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0], // len 48, RTM_NEWNEIGH
      [7, 0, 0, 0], // ndm_family AF_BRIDGE
      [7, 0, 0, 0], // ndm_ifindex
      [0x80, 0, 2, 0], // ndm_state NUD_PERMANENT, ndm_flags NTF_SELF, ndm_type
      [10, 0, 2, 0, 0x0e, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0, 0], // NDA_LLADDR
      [8, 0, 1, 0, 192, 168, 1, 12], // NDA_DST
    ),
  );
});

/** An RTM_NEWLINK as the kernel would send in a dump: eth0, mtu 1500. */
function linkReply(index: number, name: string, seq: number): number[][] {
  const nameAttr = [5 + name.length, 0, 3, 0, ...ascii(name), 0];
  while (nameAttr.length % 4) nameAttr.push(0);
  const len = 16 + 16 + nameAttr.length + 8;
  return [
    [len, 0, 0, 0, 16, 0, NLM_F_MULTI, 0, seq, 0, 0, 0, 0x39, 0x30, 0, 0], // RTM_NEWLINK, MULTI, pid 12345
    [0, 0, 1, 0, index, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], // ARPHRD_ETHER, index, IFF_UP
    nameAttr,
    [8, 0, 4, 0, 0xdc, 5, 0, 0], // IFLA_MTU 1500
  ];
}

Deno.test("parse: multipart dump ending in NLMSG_DONE", () => {
  const b = bytes(
    ...linkReply(1, "lo", 9),
    ...linkReply(2, "eth0", 9),
    [20, 0, 0, 0, 3, 0, NLM_F_MULTI, 0, 9, 0, 0, 0, 0x39, 0x30, 0, 0], // NLMSG_DONE
    [0, 0, 0, 0], // status 0
  );
  const msgs = parseMessages(b);
  assertEquals(msgs.map((m) => [m.type, m.seq, m.pid]), [[RTM_NEWLINK, 9, 12345], [
    RTM_NEWLINK,
    9,
    12345,
  ], [NLMSG_DONE, 9, 12345]]);
  const links = msgs.slice(0, 2).map(decodeLink);
  assertEquals(links.map((l) => [l.index, l.name, l.mtu, l.up, l.mac]), [[
    1,
    "lo",
    1500,
    true,
    null,
  ], [2, "eth0", 1500, true, null]]);
  assertEquals(decodeDone(msgs[2]), 0);
});

Deno.test("parse: ACK, error with errno, extended ack text", () => {
  const echoed = [16, 0, 0, 0, 24, 0, 5, 5, 7, 0, 0, 0, 0, 0, 0, 0]; // the request's nlmsghdr
  const [ack] = parseMessages(bytes(
    [36, 0, 0, 0, 2, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0], // NLMSG_ERROR, flags NLM_F_CAPPED
    [0, 0, 0, 0], // error 0 = ACK
    echoed,
  ));
  assertEquals([ack.type, decodeError(ack)], [NLMSG_ERROR, { errno: 0 }]);
  const [err] = parseMessages(bytes(
    [48, 0, 0, 0, 2, 0, 0, 3, 7, 0, 0, 0, 0, 0, 0, 0], // NLMSG_ERROR, CAPPED|ACK_TLVS
    [0xef, 0xff, 0xff, 0xff], // error -17 (EEXIST)
    echoed,
    [9, 0, 1, 0, ...ascii("boom"), 0, 0, 0, 0], // NLMSGERR_ATTR_MSG "boom"
  ));
  assertEquals(decodeError(err), { errno: 17, extAck: "boom" });
  const e = new NetlinkError("route replace 10.5.53.0/24", 17, "EEXIST", "File exists", "boom");
  assertEquals(e.message, "route replace 10.5.53.0/24: EEXIST: File exists (boom)");
});

Deno.test("parse: decoders of addresses, routes and fdb entries", () => {
  const addr = parseMessages(bytes(
    [44, 0, 0, 0, 20, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0], // RTM_NEWADDR
    [2, 24, 0x80, 0, 4, 0, 0, 0], // AF_INET /24, IFA_F_PERMANENT, scope universe, index 4
    [8, 0, 2, 0, 10, 9, 0, 1], // IFA_LOCAL
    [8, 0, 8, 0, 0x80, 0, 0, 0], // IFA_FLAGS (32-bit) PERMANENT
    [4, 0, 99, 0], // an attribute we do not know: ignored
  ))[0];
  assertEquals(decodeAddr(addr), {
    index: 4,
    ip: ip4("10.9.0.1"),
    v6: false,
    prefix: 24,
    scope: 0,
    flags: 0x80,
  });
  const route = parseMessages(bytes(
    [44, 0, 0, 0, 24, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0], // RTM_NEWROUTE
    [2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0], // default route, main, boot, universe, unicast
    [8, 0, 5, 0, 10, 9, 0, 254], // RTA_GATEWAY
    [8, 0, 4, 0, 2, 0, 0, 0], // RTA_OIF
  ))[0];
  assertEquals(decodeRoute(route), {
    dst: { ip: 0, prefix: 0 },
    gw: ip4("10.9.0.254"),
    dev: 2,
    onlink: false,
    scope: 0,
    table: 254,
    protocol: 3,
    type: 1,
  });
  const fdb = parseMessages(bytes(
    [48, 0, 0, 0, 28, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0], // RTM_NEWNEIGH
    [7, 0, 0, 0, 5, 0, 0, 0, 0x80, 0, 2, 0], // AF_BRIDGE, index 5, PERMANENT, NTF_SELF
    [10, 0, 2, 0, 1, 2, 3, 4, 5, 6, 0, 0], // NDA_LLADDR
    [8, 0, 1, 0, 192, 168, 1, 12], // NDA_DST
  ))[0];
  assertEquals(decodeFdb(fdb), {
    index: 5,
    mac: Uint8Array.of(1, 2, 3, 4, 5, 6),
    dst: ip4("192.168.1.12"),
    state: 0x80,
    flags: 2,
  });
});

Deno.test("parse: truncated and impossible input is rejected with a clear error", () => {
  const hdr = [20, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // a valid NLMSG_DONE
  assertEquals(parseMessages(bytes(hdr)).length, 1);
  assertThrows(
    () => parseMessages(bytes(hdr.slice(0, 10))),
    NetlinkParseError,
    "truncated message header",
  );
  assertThrows(
    () => parseMessages(bytes([0, 0, 0, 0], hdr.slice(4))),
    NetlinkParseError,
    "shorter than its header",
  );
  assertThrows(
    () => parseMessages(bytes([200, 0, 0, 0], hdr.slice(4))),
    NetlinkParseError,
    "message truncated",
  );
  assertThrows(() => new Attrs(bytes([2, 0, 1, 0])), NetlinkParseError, "invalid length 2");
  assertThrows(() => new Attrs(bytes([12, 0, 1, 0, 1, 2])), NetlinkParseError, "truncated");
  assertThrows(
    () => new Attrs(bytes([6, 0, 1, 0, 1, 2, 0, 0])).ip4(1),
    NetlinkParseError,
    "too short",
  );
  assertThrows(
    () => IFINFOMSG.decode(new Uint8Array(15)),
    NetlinkParseError,
    "ifinfomsg truncated",
  );
  const shortErr =
    parseMessages(bytes([18, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0]))[0];
  assertThrows(() => decodeError(shortErr), NetlinkParseError, "NLMSG_ERROR truncated");
  // Trailing bytes shorter than an attribute header are padding, not an error.
  assertEquals(new Attrs(bytes([4, 0, 1, 0, 0, 0])).types(), [1]);
});

Deno.test("parse: random garbage never hangs and fails only with NetlinkParseError", () => {
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 2000; i++) {
    const b = new Uint8Array(rnd() % 96);
    for (let j = 0; j < b.length; j++) b[j] = rnd() & 0xff;
    // Plausible headers half of the time, so decoding gets exercised as well as framing.
    if (i % 2 && b.length >= 16) {
      b[0] = b.length;
      b[1] = b[2] = b[3] = 0;
    }
    try {
      for (const m of parseMessages(b)) {
        decodeLink(m);
        decodeRoute(m);
        decodeAddr(m);
        decodeFdb(m);
      }
    } catch (e) {
      assert(e instanceof NetlinkParseError, `unexpected ${e}`);
    }
  }
});

Deno.test("encodeMessage: fixed header is padded to 4 bytes", () => {
  const m = encodeMessage({ type: 100, flags: 1, seq: 2, pid: 3 }, Uint8Array.of(9), [
    attr.u8(1, 5),
  ]);
  assertEquals(
    m,
    bytes(
      [28, 0, 0, 0, 100, 0, 1, 0, 2, 0, 0, 0, 3, 0, 0, 0], // len 16 + 4 + 8
      [9, 0, 0, 0], // 1-byte body + 3 padding
      [5, 0, 1, 0, 5, 0, 0, 0], // u8 attribute
    ),
  );
});
