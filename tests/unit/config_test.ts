// Unit tests for lib/values/config.ts: upstream's network config defaults and validation
// (README "Network config").
import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { eachCase } from "./table.ts";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../../lib/values/config.ts";
import { formatIP4, formatIP6, formatNet4, formatNet6 } from "../../lib/core/ip.ts";

const parse = (o: unknown): NetworkConfig => parseNetworkConfig(JSON.stringify(o));

/** Asserts that the config is rejected with a ConfigError naming `field`, message matching `re`. */
function rejects(o: unknown, field: string, re: RegExp): void {
  const text = typeof o === "string" ? o : JSON.stringify(o);
  const e = assertThrows(() => parseNetworkConfig(text), ConfigError, re);
  assertEquals(e.field, field, `${text}: ${e.message}`);
}

/** v4 summary: [network, subnetLen, subnetMin, subnetMax]. */
const v4 = (
  c: NetworkConfig,
) => [formatNet4(c.network!), c.subnetLen, formatIP4(c.subnetMin), formatIP4(c.subnetMax)];
const v6 = (c: NetworkConfig) => [
  formatNet6(c.ipv6Network!),
  c.ipv6SubnetLen,
  formatIP6(c.ipv6SubnetMin),
  formatIP6(c.ipv6SubnetMax),
];

Deno.test("a /16 vxlan network: /24 subnets from .1.0 to .255.0, IPv4 only", () => {
  const c = parse({ Network: "10.5.0.0/16", Backend: { Type: "vxlan" } });
  assertEquals(v4(c), ["10.5.0.0/16", 24, "10.5.1.0", "10.5.255.0"]);
  assertEquals(c.backendType, "vxlan");
  assertEquals(c.enableIPv4, true);
  assertEquals(c.enableIPv6, false);
  assertEquals(c.enableNFTables, false);
  assertEquals(c.ipv6Network, undefined);
});

// Rows: input network → [masked network, SubnetLen, SubnetMin, SubnetMax] (v4 and v6 rules alike).
Deno.test("SubnetLen and SubnetMin/Max defaults by network prefix, v4 and v6", () => {
  const cases: [string, (string | number)[]][] = [
    ["10.0.0.0/8", ["10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"]],
    ["10.5.0.0/16", ["10.5.0.0/16", 24, "10.5.1.0", "10.5.255.0"]],
    ["10.5.0.0/22", ["10.5.0.0/22", 24, "10.5.1.0", "10.5.3.0"]],
    ["10.5.0.0/23", ["10.5.0.0/23", 25, "10.5.0.128", "10.5.1.128"]],
    ["10.5.0.0/28", ["10.5.0.0/28", 30, "10.5.0.4", "10.5.0.12"]],
    ["10.5.7.9/16", ["10.5.0.0/16", 24, "10.5.1.0", "10.5.255.0"]], // host bits masked
    ["255.255.0.0/16", ["255.255.0.0/16", 24, "255.255.1.0", "255.255.255.0"]], // no overflow
    ["fd00:10:5::/48", ["fd00:10:5::/48", 64, "fd00:10:5:1::", "fd00:10:5:ffff::"]],
    ["fd00:10:5::/62", ["fd00:10:5::/62", 64, "fd00:10:5:1::", "fd00:10:5:3::"]],
    ["fd00:10:5::/63", ["fd00:10:5::/63", 65, "fd00:10:5:0:8000::", "fd00:10:5:1:8000::"]],
    ["fd00:10:5::/124", ["fd00:10:5::/124", 126, "fd00:10:5::4", "fd00:10:5::c"]],
    ["fd00:10:5::99/120", ["fd00:10:5::/120", 122, "fd00:10:5::40", "fd00:10:5::c0"]], // masked
  ];
  eachCase((net: string) => {
    if (!net.includes(":")) return v4(parse({ Network: net }));
    return v6(parse({ Network: "10.5.0.0/16", EnableIPv6: true, IPv6Network: net }));
  }, cases);
});

Deno.test("explicit SubnetLen and bounds are kept", () => {
  const c = parse({
    Network: "10.5.0.0/16",
    SubnetLen: 26,
    SubnetMin: "10.5.10.64",
    SubnetMax: "10.5.20.192",
  });
  assertEquals(v4(c), ["10.5.0.0/16", 26, "10.5.10.64", "10.5.20.192"]);
  // Defaults follow an explicit SubnetLen.
  assertEquals(v4(parse({ Network: "10.5.0.0/16", SubnetLen: 18 })), [
    "10.5.0.0/16",
    18,
    "10.5.64.0",
    "10.5.192.0",
  ]);
  assertEquals(v4(parse({ Network: "10.5.0.0/16", SubnetLen: 30 })), [
    "10.5.0.0/16",
    30,
    "10.5.0.4",
    "10.5.255.252",
  ]);
  // "0.0.0.0" is Go's zero IP: same as unset.
  assertEquals(v4(parse({ Network: "10.5.0.0/16", SubnetMin: "0.0.0.0" })).slice(2), [
    "10.5.1.0",
    "10.5.255.0",
  ]);
});

Deno.test("v4 validation errors name the field", () => {
  const cases: [unknown, string, RegExp][] = [
    [{ Network: "10.5.0.0/29" }, "Network", /too small.*\/28/],
    [{ Network: "10.5.0.0/32" }, "Network", /too small/],
    [{ Network: "10.5.0.0/16", SubnetLen: 31 }, "SubnetLen", /less than \/31/],
    [{ Network: "10.5.0.0/16", SubnetLen: 17 }, "SubnetLen", /four subnets/],
    [{ Network: "10.5.0.0/16", SubnetLen: 8 }, "SubnetLen", /four subnets/],
    [{ Network: "10.5.0.0/16", SubnetMin: "10.6.1.0" }, "SubnetMin", /not in the range/],
    [{ Network: "10.5.0.0/16", SubnetMax: "10.4.255.0" }, "SubnetMax", /not in the range/],
    [{ Network: "10.5.0.0/16", SubnetMin: "10.5.1.1" }, "SubnetMin", /SubnetLen boundary/],
    [{ Network: "10.5.0.0/16", SubnetMax: "10.5.20.128" }, "SubnetMax", /SubnetLen boundary/],
    [
      { Network: "10.5.0.0/16", SubnetLen: 26, SubnetMin: "10.5.1.32" },
      "SubnetMin",
      /SubnetLen boundary/,
    ],
    [
      { Network: "10.5.0.0/16", SubnetMin: "10.5.9.0", SubnetMax: "10.5.8.0" },
      "SubnetMin",
      /above/,
    ],
    [{ Network: "10.5.0.0/16", SubnetMin: "10.5.1" }, "SubnetMin", /not an IPv4/],
    [{ Network: "10.5.0.0/16", SubnetMax: "fd00::" }, "SubnetMax", /not an IPv4/],
    [{}, "Network", /required/],
    [{ Network: "" }, "Network", /required/],
    [{ Backend: { Type: "vxlan" } }, "Network", /required/],
    [{ Network: "10.5.0.0" }, "Network", /not an IPv4 CIDR/],
    [{ Network: "fd00::/48" }, "Network", /not an IPv4 CIDR/],
  ];
  for (const [o, f, re] of cases) rejects(o, f, re);
});

const V6NET = { EnableIPv6: true, IPv6Network: "fd00:10:5::/48" };

Deno.test("explicit IPv6SubnetLen and bounds are kept", () => {
  const c = parse({
    ...V6NET,
    Network: "10.5.0.0/16",
    IPv6SubnetLen: 56,
    IPv6SubnetMin: "fd00:10:5:200::",
    IPv6SubnetMax: "fd00:10:5:f00::",
  });
  assertEquals(v6(c), ["fd00:10:5::/48", 56, "fd00:10:5:200::", "fd00:10:5:f00::"]);
  assertEquals(v6(parse({ ...V6NET, EnableIPv4: false, IPv6SubnetLen: 126 })).slice(1, 3), [
    126,
    "fd00:10:5::4",
  ]);
});

Deno.test("v6 validation errors name the field", () => {
  const base = { Network: "10.5.0.0/16", ...V6NET };
  const cases: [unknown, string, RegExp][] = [
    [{ ...base, IPv6Network: "fd00::/125" }, "IPv6Network", /too small.*\/124/],
    [{ ...base, IPv6SubnetLen: 127 }, "IPv6SubnetLen", /less than \/127/],
    [{ ...base, IPv6SubnetLen: 49 }, "IPv6SubnetLen", /four subnets/],
    [{ ...base, IPv6SubnetMin: "fd00:10:6::" }, "IPv6SubnetMin", /not in the range/],
    [{ ...base, IPv6SubnetMax: "fd00:10:4:ffff::" }, "IPv6SubnetMax", /not in the range/],
    [{ ...base, IPv6SubnetMin: "fd00:10:5:1::1" }, "IPv6SubnetMin", /SubnetLen boundary/],
    [{ ...base, IPv6SubnetMax: "fd00:10:5:2:8000::" }, "IPv6SubnetMax", /SubnetLen boundary/],
    [
      { ...base, IPv6SubnetMin: "fd00:10:5:9::", IPv6SubnetMax: "fd00:10:5:8::" },
      "IPv6SubnetMin",
      /above/,
    ],
    [{ ...base, IPv6SubnetMin: "10.5.1.0" }, "IPv6SubnetMin", /not an IPv6/],
    [{ ...base, IPv6Network: undefined }, "IPv6Network", /required/],
    [{ ...base, IPv6Network: "10.0.0.0/8" }, "IPv6Network", /not an IPv6 CIDR/],
  ];
  for (const [o, f, re] of cases) rejects(o, f, re);
});

Deno.test("EnableIPv4 / EnableIPv6 combinations", () => {
  const both = parse({ Network: "10.5.0.0/16", ...V6NET });
  assertEquals([both.enableIPv4, both.enableIPv6, v4(both)[1], v6(both)[1]], [
    true,
    true,
    24,
    64,
  ]);
  const only6 = parse({ ...V6NET, EnableIPv4: false });
  assertEquals([only6.enableIPv4, only6.network, v6(only6)[0]], [
    false,
    undefined,
    "fd00:10:5::/48",
  ]);
  // EnableIPv4:false makes Network optional; IPv6 fields are ignored while IPv6 is off.
  const only4 = parse({ Network: "10.5.0.0/16", IPv6Network: "garbage" });
  assertEquals([only4.enableIPv6, only4.ipv6Network], [false, undefined]);
  rejects(
    { Network: "10.5.0.0/16", EnableIPv4: false, EnableIPv6: false },
    "EnableIPv4",
    /both false/,
  );
  rejects({ EnableIPv4: false }, "EnableIPv4", /both false/);
});

Deno.test("Backend type: absent → udp (upstream quirk), lower-cased, raw object kept", () => {
  const cases: [unknown, string][] = [
    [undefined, "udp"],
    [{ Type: "VXLAN" }, "vxlan"],
    [{ Type: "Host-GW" }, "host-gw"],
    [{ type: "vxlan" }, "vxlan"],
    [{ TYPE: "UDP", Port: 8285 }, "udp"],
  ];
  for (const [b, want] of cases) {
    const c = parse({ Network: "10.5.0.0/16", Backend: b });
    assertEquals(c.backendType, want, JSON.stringify(b));
  }
  const raw = { Type: "vxlan", VNI: 4096, Port: 4789, DirectRouting: true };
  assertEquals(parse({ Network: "10.5.0.0/16", Backend: raw }).backend, raw);
});

Deno.test("field names match case-insensitively; unknown fields are ignored", () => {
  const c = parse({
    network: "10.6.0.0/16",
    subnetlen: 25,
    SUBNETMIN: "10.6.2.0",
    subnetMax: "10.6.3.128",
    enableipv6: true,
    ipv6network: "fd00:1::/48",
    IPV6SUBNETLEN: 60,
    enablenftables: true,
    backend: { type: "VXLAN" },
    Unknown: 1,
    Nested: { Network: "1.2.3.4/8" },
  });
  assertEquals(v4(c), ["10.6.0.0/16", 25, "10.6.2.0", "10.6.3.128"]);
  assertEquals([c.enableIPv6, c.ipv6SubnetLen, formatNet6(c.ipv6Network!)], [
    true,
    60,
    "fd00:1::/48",
  ]);
  assertEquals(c.enableNFTables, true);
  assertEquals(c.backendType, "vxlan");
});

Deno.test("non-JSON and wrong types give a ConfigError naming the field", () => {
  for (const text of ["", "not json", "{", '{"Network":"10.5.0.0/16",}']) rejects(text, "", /JSON/);
  for (const text of ["[]", "null", '"10.5.0.0/16"', "42"]) rejects(text, "", /object/);
  const net = "10.5.0.0/16";
  const cases: [unknown, string][] = [
    [{ Network: 10 }, "Network"],
    [{ Network: ["10.5.0.0/16"] }, "Network"],
    [{ Network: net, SubnetLen: "24" }, "SubnetLen"],
    [{ Network: net, SubnetLen: -1 }, "SubnetLen"],
    [{ Network: net, SubnetLen: 24.5 }, "SubnetLen"],
    [{ Network: net, SubnetMin: 1 }, "SubnetMin"],
    [{ Network: net, SubnetMax: true }, "SubnetMax"],
    [{ Network: net, EnableIPv4: "true" }, "EnableIPv4"],
    [{ Network: net, EnableIPv6: 1 }, "EnableIPv6"],
    [{ Network: net, EnableNFTables: "yes" }, "EnableNFTables"],
    [{ Network: net, IPv6SubnetLen: "64" }, "IPv6SubnetLen"],
    [{ Network: net, Backend: "vxlan" }, "Backend"],
    [{ Network: net, Backend: ["vxlan"] }, "Backend"],
    [{ Network: net, Backend: { Type: 1 } }, "Backend.Type"],
  ];
  for (const [o, f] of cases) rejects(o, f, new RegExp(f.replace(".", "\\.")));
});
