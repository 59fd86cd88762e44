// Unit tests for lib/core/ip.ts: Go-compatible text forms, CIDR masking, containment.
import { assert, assertEquals } from "../helpers/assert.ts";
import { eachCase, eachNull } from "./table.ts";
import {
  contains4,
  contains6,
  equal4,
  formatIP4,
  formatIP6,
  formatNet4,
  formatNet6,
  ip4Net,
  mask4,
  mask6,
  overlaps4,
  overlaps6,
  parseCIDR4,
  parseCIDR6,
  parseIfaceCIDR4,
  parseIP4,
  parseIP6,
  size4,
  size6,
} from "../../lib/core/ip.ts";

Deno.test("parseIP4 accepts dotted quads and computes the u32", () => {
  const cases: [string, number][] = [
    ["0.0.0.0", 0],
    ["10.5.52.1", 0x0a053401],
    ["255.255.255.255", 0xffffffff],
    ["192.168.64.3", 0xc0a84003],
  ];
  eachCase(parseIP4, cases);
});

Deno.test("parseIP4 rejects malformed text", () => {
  eachNull(parseIP4, [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "01.2.3.4",
    "1.2.3.4 ",
    " 1.2.3.4",
    "a.b.c.d",
    "1..3.4",
    "1.2.3.4/8",
    "::1",
  ]);
});

Deno.test("formatIP4 round-trips and handles the top bit", () => {
  const texts = ["0.0.0.0", "10.5.255.0", "128.0.0.1", "255.255.255.255"];
  eachCase((t: string) => formatIP4(parseIP4(t)!), texts.map((t) => [t, t]));
});

Deno.test("mask4 and size4 at the edges", () => {
  eachCase(mask4, [[0, 0], [1, 0x80000000], [24, 0xffffff00], [32, 0xffffffff]]);
  eachCase(size4, [[32, 1], [24, 256], [0, 2 ** 32]]);
});

Deno.test("parseCIDR4 masks host bits; rejects bad input", () => {
  const ok: [string, string][] = [
    ["10.5.0.0/16", "10.5.0.0/16"],
    ["10.5.52.1/24", "10.5.52.0/24"],
    ["192.168.1.255/0", "0.0.0.0/0"],
    ["10.1.2.3/32", "10.1.2.3/32"],
    ["255.255.255.255/1", "128.0.0.0/1"],
  ];
  eachCase((t: string) => formatNet4(parseCIDR4(t)!), ok);
  eachNull(parseCIDR4, [
    "10.0.0.0",
    "10.0.0.0/33",
    "10.0.0.0/",
    "10.0.0.0/-1",
    "10.0.0.0/a",
    "10.0.0/8",
    "/8",
  ]);
});

Deno.test("parseIfaceCIDR4 keeps host bits", () => {
  assertEquals(parseIfaceCIDR4("10.5.52.1/24"), { ip: parseIP4("10.5.52.1"), prefix: 24 });
  assertEquals(parseIfaceCIDR4("10.5.52.1"), null);
});

Deno.test("contains4 / overlaps4 / equal4", () => {
  const n16 = parseCIDR4("10.5.0.0/16")!;
  const n24 = parseCIDR4("10.5.52.0/24")!;
  const other = parseCIDR4("10.6.0.0/16")!;
  assert(contains4(n16, parseIP4("10.5.255.255")!));
  assert(!contains4(n16, parseIP4("10.6.0.0")!));
  assert(!contains4(n16, parseIP4("10.4.255.255")!));
  assert(overlaps4(n16, n24) && overlaps4(n24, n16), "overlap is symmetric");
  assert(!overlaps4(n16, other) && !overlaps4(other, n16));
  assert(!overlaps4(n24, parseCIDR4("10.5.53.0/24")!), "adjacent subnets do not overlap");
  assert(overlaps4(parseCIDR4("0.0.0.0/0")!, n24));
  assert(equal4(n24, ip4Net(parseIP4("10.5.52.77")!, 24)));
  assert(!equal4(n24, ip4Net(parseIP4("10.5.52.0")!, 25)));
});

// Go's net.IP.String: lowercase, longest zero run (≥2 groups) compressed, first on a tie.
Deno.test("formatIP6 matches Go's canonical form", () => {
  const cases: [string, string][] = [
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["2001:CAFE:42:1:0:0:0:0", "2001:cafe:42:1::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // tie: first run wins
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // longer second run wins
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // single zero group: no ::
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["fd00:0010:0005:0000:0000:0000:0000:0001", "fd00:10:5::1"], // leading zeros dropped
    ["FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
    ["0:0:1:0:0:0:0:0", "0:0:1::"],
    ["0:0:1:1:0:0:1:1", "::1:1:0:0:1:1"], // tie at start: first wins
    ["0:0:0:1:0:0:0:0", "0:0:0:1::"], // longer later run wins
  ];
  eachCase((t: string) => formatIP6(parseIP6(t)!), cases);
});

Deno.test("parseIP6 accepts compressed and embedded-IPv4 forms", () => {
  const cases: [string, bigint][] = [
    ["::", 0n],
    ["::1", 1n],
    ["1::", 1n << 112n],
    ["1:2:3:4:5:6:7::", 0x0001000200030004000500060007_0000n],
    ["::2:3:4:5:6:7:8", 0x0000000200030004000500060007_0008n],
    ["::ffff:1.2.3.4", 0xffff01020304n],
    ["64:ff9b::10.0.0.1", (0x64ff9bn << 96n) | 0x0a000001n],
    ["ABCD::Ef", (0xabcdn << 112n) | 0xefn],
  ];
  eachCase(parseIP6, cases);
});

Deno.test("parseIP6 rejects malformed text", () => {
  const bad = [
    "",
    ":",
    ":::",
    "1:::2",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1::2:3:4:5:6:7:8",
    "12345::",
    "g::",
    "1.2.3.4",
    "::1.2.3",
    "::1.2.3.4:5",
    "1.2.3.4::",
    ":1::2",
    "1::2:",
    "[::1]",
    "fe80::1%eth0",
    " ::1",
  ];
  eachNull(parseIP6, bad);
});

Deno.test("mask6 / size6 at the edges", () => {
  eachCase(mask6, [[0, 0n], [128, (1n << 128n) - 1n], [64, ((1n << 64n) - 1n) << 64n]]);
  eachCase(size6, [[128, 1n], [64, 1n << 64n]]);
});

Deno.test("parseCIDR6 masks host bits; rejects bad input", () => {
  const ok: [string, string][] = [
    ["2001:cafe:42::/56", "2001:cafe:42::/56"],
    ["2001:cafe:42:1::1/64", "2001:cafe:42:1::/64"],
    ["fd00::ffff/0", "::/0"],
    ["::1/128", "::1/128"],
  ];
  eachCase((t: string) => formatNet6(parseCIDR6(t)!), ok);
  eachNull(parseCIDR6, [
    "fd00::",
    "fd00::/129",
    "fd00::/",
    "fd00::/x",
    "10.0.0.0/8",
    "fd00::/1000",
  ]);
});

Deno.test("contains6 / overlaps6", () => {
  const n48 = parseCIDR6("fd00:10:5::/48")!;
  const n64 = parseCIDR6("fd00:10:5:7::/64")!;
  assert(contains6(n48, parseIP6("fd00:10:5:ffff::1")!));
  assert(!contains6(n48, parseIP6("fd00:10:6::")!));
  assert(overlaps6(n48, n64) && overlaps6(n64, n48));
  assert(!overlaps6(n64, parseCIDR6("fd00:10:5:8::/64")!));
});
