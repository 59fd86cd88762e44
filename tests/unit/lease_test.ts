// Unit tests for lib/values/lease.ts: subnet keys (`<prefix>/subnets/10.5.52.0-24`) and the
// lease value JSON, byte for byte as upstream writes them (README "Leases").
import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { eachCase, eachNull } from "./table.ts";
import {
  decodeLeaseAttrs,
  describeLease,
  encodeLeaseAttrs,
  type LeaseAttrs,
  LeaseParseError,
  parseSubnetKey,
  subnetKey,
} from "../../lib/values/lease.ts";
import {
  formatNet4,
  formatNet6,
  parseCIDR4,
  parseCIDR6,
  parseIP4,
  parseIP6,
} from "../../lib/core/ip.ts";

const PUB = parseIP4("192.168.64.3")!;

// Lease values as upstream writes them, verbatim.
const EXAMPLES: [string, LeaseAttrs, string][] = [
  [
    "vxlan",
    {
      publicIP: PUB,
      publicIPv6: null,
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
    },
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  ],
  [
    "host-gw",
    { publicIP: PUB, publicIPv6: null, backendType: "host-gw" },
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"host-gw"}',
  ],
  ["udp", { publicIP: PUB, publicIPv6: null }, '{"PublicIP":"192.168.64.3","PublicIPv6":null}'],
  [
    "vxlan dual-stack",
    {
      publicIP: PUB,
      publicIPv6: parseIP6("2001:db8:0:0:0:0:0:3")!,
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
      backendV6Data: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:ff" },
    },
    '{"PublicIP":"192.168.64.3","PublicIPv6":"2001:db8::3","BackendType":"vxlan",' +
    '"BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
  ],
  [
    "IPv6-only",
    { publicIP: 0, publicIPv6: parseIP6("fd00::1")! },
    '{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1"}',
  ],
];

Deno.test("encodeLeaseAttrs matches upstream byte for byte", () => {
  for (const [name, attrs, want] of EXAMPLES) assertEquals(encodeLeaseAttrs(attrs), want, name);
});

Deno.test("encodeLeaseAttrs omits empty BackendType and null BackendData", () => {
  const a: LeaseAttrs = {
    publicIP: PUB,
    publicIPv6: null,
    backendType: "",
    backendData: null,
    backendV6Data: undefined,
  };
  assertEquals(encodeLeaseAttrs(a), '{"PublicIP":"192.168.64.3","PublicIPv6":null}');
});

Deno.test("decode(encode(x)) round-trips; encode(decode(upstream)) reproduces the bytes", () => {
  for (const [name, attrs, text] of EXAMPLES) {
    assertEquals(decodeLeaseAttrs(encodeLeaseAttrs(attrs)), attrs, name);
    assertEquals(encodeLeaseAttrs(decodeLeaseAttrs(text)), text, name);
  }
});

Deno.test("decodeLeaseAttrs accepts old and loosely-cased upstream values", () => {
  const cases: [string, string, Partial<LeaseAttrs>][] = [
    // ≤0.14: no PublicIPv6 field at all.
    ["old udp", '{"PublicIP":"10.0.0.7"}', { publicIP: parseIP4("10.0.0.7")!, publicIPv6: null }],
    // ≤0.13 vxlan without VNI.
    [
      "old vxlan",
      '{"PublicIP":"10.0.0.7","BackendType":"vxlan","BackendData":{"VtepMAC":"c6:d2:32:6f:8f:44"}}',
      { backendType: "vxlan", backendData: { VtepMAC: "c6:d2:32:6f:8f:44" } },
    ],
    [
      "case-insensitive",
      '{"publicip":"10.0.0.7","PUBLICIPV6":"FD00::0001","backendtype":"host-gw","backendData":{"x":1}}',
      {
        publicIP: parseIP4("10.0.0.7")!,
        publicIPv6: parseIP6("fd00::1")!,
        backendType: "host-gw",
        backendData: { x: 1 },
      },
    ],
    ["unknown fields", '{"PublicIP":"10.0.0.7","Extra":[1,2],"PublicIPv6":null}', {
      publicIPv6: null,
    }],
    ["missing PublicIP", '{"BackendType":"vxlan"}', { publicIP: 0 }],
    ["explicit nulls", '{"PublicIP":"1.2.3.4","BackendType":null,"BackendData":null}', {
      backendType: undefined,
    }],
  ];
  for (const [name, text, want] of cases) {
    const got = decodeLeaseAttrs(text);
    for (const [k, v] of Object.entries(want)) {
      assertEquals(got[k as keyof LeaseAttrs], v, `${name}.${k}`);
    }
  }
  assert(!("backendData" in decodeLeaseAttrs('{"PublicIP":"1.2.3.4","BackendData":null}')));
});

Deno.test("decodeLeaseAttrs rejects garbage with LeaseParseError", () => {
  const bad: [string, RegExp][] = [
    ["", /not JSON/],
    ["{", /not JSON/],
    ["[]", /not a JSON object/],
    ["null", /not a JSON object/],
    ['"192.168.64.3"', /not a JSON object/],
    ['{"PublicIP":"192.168.64"}', /PublicIP/],
    ['{"PublicIP":"fd00::1"}', /PublicIP/],
    ['{"PublicIP":3232251907}', /PublicIP/],
    ['{"PublicIP":"1.2.3.4","PublicIPv6":"1.2.3.4"}', /PublicIPv6/],
    ['{"PublicIP":"1.2.3.4","PublicIPv6":"zz::"}', /PublicIPv6/],
    ['{"PublicIP":"1.2.3.4","BackendType":5}', /BackendType/],
  ];
  for (const [text, re] of bad) {
    const e = assertThrows(() => decodeLeaseAttrs(text), LeaseParseError);
    assertMatch(e.message, re, text);
  }
});

Deno.test("subnetKey: IPv4 and dual-stack (canonical IPv6)", () => {
  assertEquals(subnetKey(parseCIDR4("10.5.52.0/24")!), "10.5.52.0-24");
  assertEquals(
    subnetKey(parseCIDR4("10.42.1.0/24")!, parseCIDR6("2001:CAFE:0042:0001:0000::/64")!),
    "10.42.1.0-24&2001:cafe:42:1::-64",
  );
});

/** Parsed key as text: `10.5.52.0/24` or `10.42.1.0/24 2001:cafe:42:1::/64`; null when rejected. */
function keyText(k: string): string | null {
  const p = parseSubnetKey(k);
  if (!p) return null;
  return p.ipv6Subnet
    ? `${formatNet4(p.subnet)} ${formatNet6(p.ipv6Subnet)}`
    : formatNet4(p.subnet);
}

Deno.test("parseSubnetKey matches at the end of a full etcd path", () => {
  const cases: [string, string][] = [
    ["10.5.52.0-24", "10.5.52.0/24"],
    ["/coreos.com/network/subnets/10.5.52.0-24", "10.5.52.0/24"],
    ["/my/prefix-1.2.3.4/subnets/10.5.52.0-24", "10.5.52.0/24"],
    ["10.42.1.0-24&2001:cafe:42:1::-64", "10.42.1.0/24 2001:cafe:42:1::/64"],
    [
      "/coreos.com/network/subnets/10.42.1.0-24&2001:cafe:42:1::-64",
      "10.42.1.0/24 2001:cafe:42:1::/64",
    ],
    ["/coreos.com/network/subnets/0.0.0.0-0", "0.0.0.0/0"],
    ["10.5.52.0-024", "10.5.52.0/24"], // Go's ParseUint accepts leading zeros
    ["10.5.52.0-31", "10.5.52.0/31"],
    ["10.42.1.0-24&fd00::-127", "10.42.1.0/24 fd00::/127"],
  ];
  eachCase(keyText, cases);
});

Deno.test("parseSubnetKey rejects non-keys", () => {
  const bad = [
    "",
    "/coreos.com/network/config",
    "/coreos.com/network/subnets",
    "10.5.52.0",
    "10.5.52.0-24/extra", // must be at the end
    "10.5.52.0-24&", // dangling '&'
    "10.5.52.0/24",
    "10.5.256.0-24", // not an IPv4
    "10.05.52.0-24", // leading zero
    "10.5.52.0-32", // prefix parsed as a 5-bit number (≤31)
    "10.5.52.0-99",
    "10.42.1.0-24&2001:CAFE:42:1::-64", // upper case does not match the regex
    "10.42.1.0-24&2001:cafe:42:1::-128", // 7-bit IPv6 prefix (≤127)
    "10.42.1.0-24&2001:::1-64", // bad IPv6
    "10.5.52.7-24", // host bits set
    "10.42.1.0-24&2001:cafe:42:1::5-64",
  ];
  eachNull(keyText, bad);
});

Deno.test("subnetKey and parseSubnetKey round-trip", () => {
  const nets: [string, string?][] = [["10.5.52.0/24"], ["192.168.0.128/25"], [
    "10.42.1.0/24",
    "2001:cafe:42:1::/64",
  ], ["10.0.0.0/30", "::/120"]];
  for (const [n4, n6] of nets) {
    const s4 = parseCIDR4(n4)!, s6 = n6 ? parseCIDR6(n6)! : undefined;
    assertEquals(
      parseSubnetKey(subnetKey(s4, s6)),
      s6 ? { subnet: s4, ipv6Subnet: s6 } : { subnet: s4 },
      n4,
    );
  }
});

Deno.test("describeLease", () => {
  assertEquals(describeLease({ subnet: parseCIDR4("10.5.52.0/24")! }), "10.5.52.0/24");
  assertEquals(
    describeLease({
      subnet: parseCIDR4("10.5.52.0/24")!,
      ipv6Subnet: parseCIDR6("fd00:0:0:1::/64")!,
    }),
    "10.5.52.0/24,fd00:0:0:1::/64",
  );
});
