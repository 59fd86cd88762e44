/** External interface selection (pure): snapshots in, choice or upstream's error out. */

import { assertEquals, assertThrows } from "../helpers/assert.ts";
import {
  chooseExtIface,
  type IfaceOptions,
  type NetState,
  usableAddrs,
} from "../../lib/values/iface.ts";
import { formatIP4, formatIP6, parseIP4, parseIP6 } from "../../lib/core/ip.ts";
import { setSink } from "../../lib/core/log.ts";
import type { Addr } from "../../ffi/netlink/addr.ts";
import type { Link } from "../../ffi/netlink/link.ts";
import { IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_TEMPORARY } from "../../ffi/netlink/message.ts";

const link = (index: number, name: string, mtu = 1500): Link => ({
  index,
  name,
  mtu,
  flags: 1,
  up: true,
  mac: null,
  type: 1,
});
function a4(index: number, ip: string, flags = IFA_F_PERMANENT): Addr {
  return { index, ip: parseIP4(ip)!, v6: false, prefix: 24, scope: 0, flags };
}
function a6(index: number, ip: string, flags = IFA_F_PERMANENT): Addr {
  return { index, ip: parseIP6(ip)!, v6: true, prefix: 64, scope: 0, flags };
}

/** lo, eth0 (default route), eth1, eth2 (MTU 0), docker0 (loopback-ish addresses only). */
function state(over: Partial<NetState> = {}): NetState {
  return {
    links: [
      link(1, "lo", 65536),
      link(2, "eth0"),
      link(3, "eth1", 9000),
      link(4, "eth2", 0),
      link(5, "docker0"),
    ],
    addrs: [
      a4(1, "127.0.0.1"),
      a4(2, "169.254.1.1"), // link-local: after global ones
      a4(2, "10.0.0.5", 0), // dynamic (DHCP): after permanent ones
      a4(2, "10.0.0.7", IFA_F_PERMANENT | IFA_F_DEPRECATED), // never used
      a4(2, "10.0.0.6"),
      a4(3, "10.1.0.9"),
      a4(3, "10.1.0.10", IFA_F_PERMANENT | IFA_F_TEMPORARY), // secondary/temporary: after
      a4(4, "10.2.0.1"),
      a4(5, "127.0.0.5"),
      a6(2, "fe80::1"),
      a6(2, "2001:db8::2", 0),
      a6(3, "2001:db8:1::9"),
    ],
    defaultDevs4: [2],
    defaultDevs6: [2],
    routeGet: (dst) => {
      if (dst === parseIP4("192.0.2.1")) return { dev: 3, src: parseIP4("10.1.0.9")! };
      throw new Error("ENETUNREACH: Network is unreachable");
    },
    ...over,
  };
}

/** name / interface address / external address of the choice. */
function pick(opts: IfaceOptions, s = state()): string {
  const e = chooseExtIface(opts, s);
  const v6 = e.ifaceAddr6 === null ? "" : ` ${formatIP6(e.ifaceAddr6)} ${formatIP6(e.extAddr6!)}`;
  return `${e.name} ${formatIP4(e.ifaceAddr)} ${formatIP4(e.extAddr)}${v6}`;
}

function quiet<T>(fn: () => T): { result: T; lines: string[] } {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  try {
    return { result: fn(), lines };
  } finally {
    setSink(prev);
  }
}

Deno.test("address order: global before link-local, permanent before dynamic, temporary last, deprecated dropped", () => {
  assertEquals(usableAddrs(state(), 2, false).map((a) => formatIP4(a.ip as number)), [
    "10.0.0.6",
    "10.0.0.5",
    "169.254.1.1",
  ]);
  assertEquals(usableAddrs(state(), 3, false).map((a) => formatIP4(a.ip as number)), [
    "10.1.0.9",
    "10.1.0.10",
  ]);
  assertEquals(usableAddrs(state(), 1, false), []); // loopback is never usable
  assertEquals(usableAddrs(state(), 2, true).map((a) => formatIP6(a.ip as bigint)), [
    "2001:db8::2",
    "fe80::1",
  ]);
});

Deno.test("no selector: interface of the first default route", () => {
  assertEquals(pick({}), "eth0 10.0.0.6 10.0.0.6");
  assertEquals(pick({}, state({ defaultDevs4: [3, 2] })), "eth1 10.1.0.9 10.1.0.9");
  assertThrows(
    () => pick({}, state({ defaultDevs4: [] })),
    Error,
    "Failed to find any valid interface to use: failed to get default interface: unable to find default route",
  );
  assertThrows(
    () => pick({}, state({ defaultDevs4: [0] })),
    Error,
    "found default route but could not determine interface",
  );
});

Deno.test("--public-ip alone selects the interface carrying it (quirk)", () => {
  assertEquals(pick({ publicIP: "10.1.0.10" }), "eth1 10.1.0.10 10.1.0.10");
  assertThrows(
    () => pick({ publicIP: "198.51.100.1" }),
    Error,
    "Failed to find any valid interface to use: error looking up interface 198.51.100.1: no interface with given IP found",
  );
});

Deno.test("--iface: names and IPs, in order; --public-ip only changes the external address", () => {
  assertEquals(pick({ iface: ["eth1"] }), "eth1 10.1.0.9 10.1.0.9");
  assertEquals(pick({ iface: ["eth1"], publicIP: "203.0.113.5" }), "eth1 10.1.0.9 203.0.113.5");
  assertEquals(pick({ iface: ["10.0.0.5"] }), "eth0 10.0.0.5 10.0.0.5"); // the given IP, not the preferred one
  const { result, lines } = quiet(() => pick({ iface: ["nope0", "198.51.100.1", "eth1"] }));
  assertEquals(result, "eth1 10.1.0.9 10.1.0.9");
  assertEquals(lines.length, 2);
  assertEquals(lines[0].includes("Could not find valid interface matching nope0"), true);
});

Deno.test("--iface-regex: addresses first (in interface order), then names", () => {
  assertEquals(pick({ ifaceRegex: ["^10\\.1\\."] }), "eth1 10.1.0.9 10.1.0.9");
  assertEquals(pick({ ifaceRegex: ["eth1|10\\.0\\.0\\.6"] }), "eth0 10.0.0.6 10.0.0.6");
  assertEquals(pick({ ifaceRegex: ["^eth1$"] }), "eth1 10.1.0.9 10.1.0.9");
  const { lines } = quiet(() =>
    assertThrows(
      () => pick({ ifaceRegex: ["^wlan"] }),
      Error,
      "matches the interfaces and/or regexes",
    )
  );
  assertEquals(
    lines[0].includes(
      "Could not match pattern ^wlan to any of the available network interfaces (lo:[]",
    ),
    true,
  );
  quiet(() =>
    assertThrows(() => pick({ ifaceRegex: ["("] }), Error, "Failed to find interface to use")
  );
});

Deno.test("--iface-can-reach: route lookup gives interface and source address", () => {
  assertEquals(pick({ ifaceCanReach: "192.0.2.1" }), "eth1 10.1.0.9 10.1.0.9");
  const { lines } = quiet(() =>
    assertThrows(
      () => pick({ ifaceCanReach: "198.51.100.1" }),
      Error,
      "Failed to find interface to use that matches the interfaces and/or regexes provided",
    )
  );
  assertEquals(lines[0].includes("couldn't lookup route to 198.51.100.1: ENETUNREACH"), true);
});

Deno.test("selector precedence: --iface, then --iface-regex, then --iface-can-reach", () => {
  assertEquals(
    pick({ iface: ["eth1"], ifaceRegex: ["eth0"], ifaceCanReach: "192.0.2.1" }),
    "eth1 10.1.0.9 10.1.0.9",
  );
  quiet(() =>
    assertEquals(
      pick({ iface: ["nope0"], ifaceRegex: ["^eth0$"], ifaceCanReach: "192.0.2.1" }),
      "eth0 10.0.0.6 10.0.0.6",
    )
  );
  quiet(() =>
    assertEquals(
      pick({ iface: ["nope0"], ifaceRegex: ["^nope"], ifaceCanReach: "192.0.2.1" }),
      "eth1 10.1.0.9 10.1.0.9",
    )
  );
});

Deno.test("unusable interfaces: no MTU, no usable address, bad public IP", () => {
  quiet(() =>
    assertThrows(() => pick({ iface: ["eth2"] }), Error, "Failed to find interface to use")
  );
  const { lines } = quiet(() => assertThrows(() => pick({ iface: ["eth2", "docker0"] }), Error));
  assertEquals(lines.map((l) => l.split("] ")[1]), [
    "Could not find valid interface matching eth2: failed to determine MTU for eth2 interface",
    "Could not find valid interface matching docker0: failed to find IPv4 address for interface docker0",
  ]);
  assertThrows(
    () => pick({ publicIP: "10.1.0.9x" }),
    Error,
    "error looking up interface 10.1.0.9x",
  );
  quiet(() =>
    assertThrows(
      () => pick({ iface: ["eth1"], publicIP: "not-an-ip" }),
      Error,
      "Failed to find interface",
    )
  );
});

Deno.test("IPv6 and dual stack", () => {
  const e = chooseExtIface({ enableIPv4: false, enableIPv6: true }, state());
  assertEquals([e.name, e.ifaceAddr, formatIP6(e.ifaceAddr6!)], ["eth0", 0, "2001:db8::2"]);
  assertEquals(pick({ enableIPv6: true }), "eth0 10.0.0.6 10.0.0.6 2001:db8::2 2001:db8::2");
  assertEquals(
    pick({ enableIPv6: true, iface: ["eth1"], publicIPv6: "2001:db8:1::9" }),
    "eth1 10.1.0.9 10.1.0.9 2001:db8:1::9 2001:db8:1::9",
  );
  assertThrows(
    () => pick({ enableIPv6: true }, state({ defaultDevs6: [3] })),
    Error,
    "v6 default route interface eth1 must be the same with v4 default route interface eth0",
  );
  assertThrows(() => pick({ enableIPv4: false, enableIPv6: false }), Error, "none defined stack");
});

Deno.test("dual stack: the family the selector does not fix comes from the interface", () => {
  // Upstream leaves the IPv6 address unset here and leases an IPv6 subnet without a PublicIPv6.
  assertEquals(
    pick({ enableIPv6: true, iface: ["10.1.0.9"] }),
    "eth1 10.1.0.9 10.1.0.9 2001:db8:1::9 2001:db8:1::9",
  );
  assertEquals(
    pick({ enableIPv6: true, ifaceCanReach: "192.0.2.1" }),
    "eth1 10.1.0.9 10.1.0.9 2001:db8:1::9 2001:db8:1::9",
  );
});

Deno.test("--iface-can-reach with an IPv6 address: the IPv6 route lookup picks the interface", () => {
  const s = state({
    routeGet: (dst) => {
      if (dst === parseIP6("2001:db8:ff::1")) return { dev: 3, src: parseIP6("2001:db8:1::9")! };
      throw new Error("ENETUNREACH: Network is unreachable");
    },
  });
  const e = chooseExtIface(
    { enableIPv4: false, enableIPv6: true, ifaceCanReach: "2001:db8:ff::1" },
    s,
  );
  assertEquals([e.name, formatIP6(e.ifaceAddr6!)], ["eth1", "2001:db8:1::9"]);
  assertEquals(
    pick({ enableIPv6: true, ifaceCanReach: "2001:db8:ff::1" }, s),
    "eth1 10.1.0.9 10.1.0.9 2001:db8:1::9 2001:db8:1::9",
  );
});

Deno.test("IPv6 enabled on an interface without a global IPv6 address: one error naming the reason", () => {
  // eth0 with only its link-local address: no other host can reach it (no VTEP, no gateway).
  const linkLocalOnly = state({
    addrs: state().addrs.filter((a) => !(a.v6 && a.index === 2 && a.ip !== parseIP6("fe80::1"))),
  });
  quiet(() => {
    assertThrows(
      () => pick({ enableIPv6: true, iface: ["eth0"] }, linkLocalOnly),
      Error,
      "Failed to find interface to use that matches the interfaces and/or regexes provided " +
        "(eth0: failed to find IPv6 address for interface eth0 (only link-local fe80::1))",
    );
    assertThrows(
      () => pick({ enableIPv6: true }, linkLocalOnly),
      Error,
      "Failed to find any valid interface to use: failed to find IPv6 address for interface eth0",
    );
  });
});
