/**
 * The parsers that read input from outside the process, as fuzz targets: netlink messages
 * (from the kernel), lease keys and values and the network config (from etcd, written by
 * anyone), and datagrams on the udp port (from anyone on the network).
 * @module
 */

import {
  decodeDone,
  decodeError,
  NetlinkParseError,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseMessages,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
} from "../../ffi/netlink/message.ts";
import { decodeLink, linkChangeMessage, vxlanCreateMessage } from "../../ffi/netlink/link.ts";
import { addrMessage, decodeAddr } from "../../ffi/netlink/addr.ts";
import { decodeRoute, routeMessage } from "../../ffi/netlink/route.ts";
import {
  decodeFdb,
  decodeNeigh,
  fdbReplaceMessage,
  neighReplaceMessage,
} from "../../ffi/netlink/neigh.ts";
import { ConfigError, parseNetworkConfig } from "../../lib/values/config.ts";
import { decodeLeaseAttrs, LeaseParseError, parseSubnetKey } from "../../lib/values/lease.ts";
import {
  buildNetUnreachable,
  decrementTTL,
  ICMP_UNREACH_MAX,
  ipv4HeaderLength,
  ipv4TotalLength,
  isValidIPv4,
} from "../../lib/backend/udp/packet.ts";
import { mask4 } from "../../lib/core/ip.ts";
import { type FuzzTarget, mutateBytes, mutateJson, type Rng } from "./fuzz.ts";
import { ipv4Packet } from "./packets.ts";

/** A finding: the parser returned something its callers cannot rely on. */
function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`invariant broken: ${what}`);
}

/** Random bytes, a mutated corpus entry, or a concatenation of a few (a dump datagram). */
function bytesInput(rng: Rng, corpus: Uint8Array[]): Uint8Array {
  const r = rng.int(10);
  if (r === 0) return rng.bytes(rng.int(600));
  let b = rng.pick(corpus);
  if (r === 1) b = Uint8Array.from([...b, ...rng.pick(corpus), ...rng.pick(corpus)]);
  for (let n = 1 + rng.int(3); n > 0; n--) b = mutateBytes(rng, b, rng.pick(corpus));
  return b;
}

/** Kernel-shaped messages: the requests we send are NEW* messages the decoders accept. */
const mac = Uint8Array.of(0x0e, 1, 2, 3, 4, 5);
const NETLINK_CORPUS: Uint8Array[] = [
  vxlanCreateMessage({
    name: "flannel.1",
    vni: 1,
    port: 8472,
    local: 0xc0a8640a,
    underlayIndex: 2,
    mtu: 1450,
    mac,
  }),
  linkChangeMessage(3, [], 1, 1),
  addrMessage(RTM_NEWADDR, 0, 4, { ip: 0x0a053400, prefix: 32 }),
  addrMessage(RTM_NEWADDR, 0, 4, { ip: 0xfd00n << 112n, prefix: 64 }),
  routeMessage(RTM_NEWROUTE, 0, {
    dst: { ip: 0x0a053500, prefix: 24 },
    gw: 0x0a053500,
    dev: 5,
    onlink: true,
    table: 1000,
  }),
  neighReplaceMessage({ index: 5, ip: 0x0a053500, mac }),
  fdbReplaceMessage({ index: 5, mac, dst: 0xc0a8640b }),
  Uint8Array.of(
    36,
    0,
    0,
    0,
    NLMSG_ERROR,
    0,
    0,
    2,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0xef,
    0xff,
    0xff,
    0xff,
    ...new Uint8Array(16),
  ),
  Uint8Array.of(20, 0, 0, 0, NLMSG_DONE, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
];

const DECODERS: Record<number, ((m: ReturnType<typeof parseMessages>[number]) => unknown)[]> = {
  [RTM_NEWLINK]: [decodeLink],
  [RTM_NEWADDR]: [decodeAddr],
  [RTM_NEWROUTE]: [decodeRoute],
  [RTM_NEWNEIGH]: [decodeNeigh, decodeFdb],
  [NLMSG_ERROR]: [decodeError],
  [NLMSG_DONE]: [decodeDone],
};

/** parseMessages and every decoder on each message it returns, whatever its type says. */
export const netlinkTarget: FuzzTarget<Uint8Array> = {
  expected: NetlinkParseError,
  input: (rng) => {
    const b = bytesInput(rng, NETLINK_CORPUS);
    // Sometimes retype the first message so each decoder sees every other layout.
    if (b.length >= 6 && rng.int(3) === 0) {
      new DataView(b.buffer).setUint16(4, rng.pick(Object.keys(DECODERS).map(Number)), true);
    }
    return b;
  },
  run: (b) => {
    const msgs = parseMessages(b);
    let total = 0;
    for (const m of msgs) {
      total += m.payload.byteLength + 16;
      for (const d of DECODERS[m.type] ?? []) {
        try {
          d(m);
        } catch (e) {
          if (!(e instanceof NetlinkParseError)) throw e;
        }
      }
    }
    check(total <= b.byteLength, "messages larger than the datagram");
  },
};

const KEYS = [
  "/coreos.com/network/subnets/10.5.52.0-24",
  "10.42.1.0-24&2001:cafe:42:1::-64",
  "/x/subnets/0.0.0.0-0",
];

/** Subnet keys: null or a network address with prefix ≤ 31; it never throws. */
export const leaseKeyTarget: FuzzTarget<string> = {
  expected: LeaseParseError,
  input: (rng) => {
    let s = rng.pick(KEYS);
    for (let n = 1 + rng.int(3); n > 0; n--) {
      s = mutateJson(rng, JSON.stringify(s)).slice(1, -1) || rng.pick(["", "-", "1.2.3.4-"]);
    }
    return s;
  },
  run: (key) => {
    const k = parseSubnetKey(key);
    if (!k) return;
    check(
      k.subnet.prefix >= 0 && k.subnet.prefix <= 31 &&
        ((k.subnet.ip & mask4(k.subnet.prefix)) >>> 0) === k.subnet.ip,
      `key ${key} gave ${JSON.stringify(k.subnet)}`,
    );
  },
};

const LEASE_VALUES = [
  '{"PublicIP":"192.168.100.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:01:02:03:04:05"}}',
  '{"PublicIP":"192.168.100.11","PublicIPv6":"fd00::11"}',
  '{"publicip":"10.0.0.1","BackendType":"host-gw","BackendV6Data":{"VNI":1}}',
];

/** Lease values: attributes with a u32 PublicIP, or LeaseParseError. */
export const leaseValueTarget: FuzzTarget<string> = {
  expected: LeaseParseError,
  input: (rng) =>
    rng.int(20) === 0
      ? new TextDecoder().decode(rng.bytes(rng.int(200)))
      : mutateJson(rng, rng.pick(LEASE_VALUES)),
  run: (text) => {
    const a = decodeLeaseAttrs(text);
    check(
      Number.isInteger(a.publicIP) && a.publicIP >= 0 && a.publicIP <= 0xffffffff,
      `PublicIP ${a.publicIP}`,
    );
    check(a.backendType === undefined || typeof a.backendType === "string", "BackendType type");
  },
};

const CONFIGS = [
  '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}',
  '{"Network":"10.244.0.0/16","SubnetLen":26,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.200.0","Backend":{"Type":"host-gw"}}',
  '{"EnableIPv6":true,"IPv6Network":"fd00:10:5::/48","Network":"10.5.0.0/16","IPv6SubnetLen":64}',
  '{"Network":"10.5.0.0/28","Backend":{"Type":"udp","Port":8285}}',
];

/** Network configs: a config whose bounds are consistent, or ConfigError. */
export const configTarget: FuzzTarget<string> = {
  expected: ConfigError,
  input: (rng) => {
    let s = rng.pick(CONFIGS);
    for (let n = 1 + rng.int(2); n > 0; n--) {
      try {
        s = mutateJson(rng, s);
      } catch {
        break; // no longer JSON: the tree mutations need a parse
      }
    }
    return s;
  },
  run: (text) => {
    const c = parseNetworkConfig(text);
    check(c.enableIPv4 || c.enableIPv6, "neither family enabled");
    if (c.enableIPv4) {
      check(
        !!c.network && c.subnetLen >= c.network.prefix && c.subnetLen <= 30,
        `SubnetLen ${c.subnetLen}`,
      );
      check(
        c.subnetMin <= c.subnetMax && c.subnetMin >= 0 && c.subnetMax <= 0xffffffff,
        "SubnetMin/Max",
      );
    }
    if (c.enableIPv6) {
      check(!!c.ipv6Network && c.ipv6SubnetMin <= c.ipv6SubnetMax, "IPv6SubnetMin/Max");
    }
    check(typeof c.backendType === "string", "backend type");
  },
};

const PACKETS = [
  ipv4Packet("10.5.52.2", "10.5.53.2"),
  ipv4Packet("10.5.52.2", "10.5.53.2", 1, 1400),
  ipv4Packet("10.5.52.2", "10.5.53.3", 64, 0),
];

/**
 * The udp receive path's checks on a datagram: validity implies a sane header, and the
 * ICMP reply and TTL update stay inside their buffers. They return, never throw.
 */
export const udpPacketTarget: FuzzTarget<Uint8Array> = {
  expected: class Never extends Error {},
  input: (rng) => bytesInput(rng, PACKETS),
  run: (b) => {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const reply = new DataView(new ArrayBuffer(ICMP_UNREACH_MAX));
    const n = buildNetUnreachable(v, 0, b.byteLength, reply, 0x0a053400);
    check(n >= 0 && n <= ICMP_UNREACH_MAX, `reply length ${n}`);
    if (!isValidIPv4(v, 0, b.byteLength)) return;
    const hlen = ipv4HeaderLength(v, 0), total = ipv4TotalLength(v, 0);
    check(
      hlen >= 20 && hlen <= total && total <= b.byteLength,
      `valid packet with IHL ${hlen}, total ${total}, ${b.byteLength} bytes`,
    );
    if (decrementTTL(v, 0)) {
      check(isValidIPv4(v, 0, b.byteLength), "checksum wrong after TTL decrement");
    }
  },
};

/** Every target by name (the worker looks them up). */
export const TARGETS: Record<string, FuzzTarget<any>> = {
  netlink: netlinkTarget,
  "lease key": leaseKeyTarget,
  "lease value": leaseValueTarget,
  config: configTarget,
  "udp packet": udpPacketTarget,
};
