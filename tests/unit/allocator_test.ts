// Unit tests for lib/subnet/allocator.ts: which existing leases a host may reuse, the
// candidate subnets between SubnetMin and SubnetMax, and the random pick among free ones.
import { assert, assertEquals } from "../helpers/assert.ts";
import { eachCase } from "./table.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import { formatNet4, formatNet6, type IP4Net, type IP6Net } from "../../lib/core/ip.ts";
import {
  freeSubnets4,
  freeSubnets6,
  isCompatible,
  MAX_CANDIDATES,
  pickRandom,
} from "../../lib/subnet/allocator.ts";
import { net4 as n4, net6 as n6 } from "../helpers/addr.ts";

const cfg = (o: Record<string, unknown>) => parseNetworkConfig(JSON.stringify(o));
const V4 = cfg({ Network: "10.5.0.0/16", SubnetMin: "10.5.10.0", SubnetMax: "10.5.200.0" });
const DUAL = cfg({ Network: "10.5.0.0/16", EnableIPv6: true, IPv6Network: "fd00:10:5::/48" });
const V6ONLY = cfg({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00:10:5::/48" });

Deno.test("isCompatible: range, prefix and IPv6 presence", () => {
  const cases: [string, ReturnType<typeof cfg>, string, string | undefined, boolean][] = [
    ["inside", V4, "10.5.52.0/24", undefined, true],
    ["SubnetMin inclusive", V4, "10.5.10.0/24", undefined, true],
    ["SubnetMax inclusive", V4, "10.5.200.0/24", undefined, true],
    ["below SubnetMin", V4, "10.5.9.0/24", undefined, false],
    ["above SubnetMax", V4, "10.5.201.0/24", undefined, false],
    ["other network", V4, "10.6.52.0/24", undefined, false],
    ["wrong prefix", V4, "10.5.52.0/25", undefined, false],
    ["wider prefix", V4, "10.5.52.0/23", undefined, false],
    ["v6 part while IPv6 disabled", V4, "10.5.52.0/24", "fd00:10:5:1::/64", false],
    ["dual ok", DUAL, "10.5.52.0/24", "fd00:10:5:1::/64", true],
    ["dual, v6 missing", DUAL, "10.5.52.0/24", undefined, false],
    ["dual, v6 first subnet skipped", DUAL, "10.5.52.0/24", "fd00:10:5::/64", false],
    ["dual, v6 last subnet", DUAL, "10.5.52.0/24", "fd00:10:5:ffff::/64", true],
    ["dual, v6 outside", DUAL, "10.5.52.0/24", "fd00:10:6::/64", false],
    ["dual, v6 wrong prefix", DUAL, "10.5.52.0/24", "fd00:10:5:1::/80", false],
    ["dual, v4 bad", DUAL, "10.5.0.0/24", "fd00:10:5:1::/64", false],
    ["v6-only ignores v4 part", V6ONLY, "0.0.0.0/0", "fd00:10:5:2::/64", true],
  ];
  for (const [name, c, s4, s6, want] of cases) {
    assertEquals(
      isCompatible(c, { subnet: n4(s4), ipv6Subnet: s6 ? n6(s6) : undefined }),
      want,
      name,
    );
  }
});

const fmt4 = (l: IP4Net[]) => l.map(formatNet4);
const fmt6 = (l: IP6Net[]) => l.map(formatNet6);

Deno.test("freeSubnets4 walks SubnetMin..SubnetMax in SubnetLen steps, inclusive", () => {
  const small = cfg({ Network: "10.5.0.0/22" }); // /24s: .1, .2, .3 (first skipped)
  assertEquals(fmt4(freeSubnets4(small, [])), ["10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24"]);
  const tiny = cfg({ Network: "192.168.7.0/28" }); // /30s
  assertEquals(fmt4(freeSubnets4(tiny, [])), [
    "192.168.7.4/30",
    "192.168.7.8/30",
    "192.168.7.12/30",
  ]);
  const top = cfg({ Network: "255.255.252.0/22" }); // no overflow past 255.255.255.255
  assertEquals(fmt4(freeSubnets4(top, [])), [
    "255.255.253.0/24",
    "255.255.254.0/24",
    "255.255.255.0/24",
  ]);
});

Deno.test("freeSubnets4 stays within bounds, aligned, at most 100", () => {
  const got = freeSubnets4(V4, []);
  assertEquals(got.length, MAX_CANDIDATES);
  assertEquals(MAX_CANDIDATES, 100);
  assertEquals(formatNet4(got[0]), "10.5.10.0/24");
  assertEquals(formatNet4(got[99]), "10.5.109.0/24");
  for (const s of got) {
    assert(
      s.ip >= V4.subnetMin && s.ip <= V4.subnetMax && s.prefix === 24 && s.ip % 256 === 0,
      formatNet4(s),
    );
  }
  assertEquals(freeSubnets4(V4, [], 5).length, 5);
  // Whole range is 191 subnets; with the first 100 taken, the rest are 91.
  const taken = got;
  const rest = freeSubnets4(V4, taken);
  assertEquals([rest.length, formatNet4(rest[0]), formatNet4(rest.at(-1)!)], [
    91,
    "10.5.110.0/24",
    "10.5.200.0/24",
  ]);
});

Deno.test("freeSubnets4 skips taken subnets of any size, in any order", () => {
  const c = cfg({ Network: "10.5.0.0/16", SubnetMax: "10.5.20.0" });
  const taken = [
    "10.5.13.0/24", // exact
    "10.5.1.0/24",
    "10.5.4.0/22", // larger: covers 4,5,6,7
    "10.5.9.128/25", // smaller, inside 9
    "10.5.16.200/32",
    "10.4.0.0/16", // outside: irrelevant
    "10.5.0.0/24", // first subnet (not a candidate anyway)
  ].map(n4);
  const want = ["2", "3", "8", "10", "11", "12", "14", "15", "17", "18", "19", "20"].map((x) =>
    `10.5.${x}.0/24`
  );
  assertEquals(fmt4(freeSubnets4(c, taken)), want);
  assertEquals(
    fmt4(freeSubnets4(c, [...taken].reverse())),
    want,
    "order of leases does not matter",
  );
  // A lease covering the whole network leaves nothing ("out of subnets").
  assertEquals(freeSubnets4(c, [n4("10.0.0.0/8")]), []);
  // A big lease and a small one at the same address.
  assertEquals(fmt4(freeSubnets4(c, [n4("10.5.2.0/26"), n4("10.5.0.0/20")])).slice(0, 2), [
    "10.5.16.0/24",
    "10.5.17.0/24",
  ]);
});

Deno.test("freeSubnets4 with many leases: only the first 100 free are returned", () => {
  const c = cfg({ Network: "10.0.0.0/8" });
  const taken = Array.from(
    { length: 5000 },
    (_, i) => ({ ip: c.subnetMin + i * 2 * 256, prefix: 24 }),
  );
  const got = freeSubnets4(c, taken);
  assertEquals(got.length, 100);
  // Every other /24 from SubnetMin is taken: the free ones are the odd steps.
  got.forEach((s, i) => assertEquals(s.ip, c.subnetMin + (2 * i + 1) * 256));
});

Deno.test("freeSubnets6 walks IPv6SubnetMin upward and skips overlaps", () => {
  const c = cfg({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00:10:5::/62" });
  assertEquals(fmt6(freeSubnets6(c, [])), [
    "fd00:10:5:1::/64",
    "fd00:10:5:2::/64",
    "fd00:10:5:3::/64",
  ]);
  assertEquals(fmt6(freeSubnets6(c, [n6("fd00:10:5:2::/63")])), ["fd00:10:5:1::/64"]);
  assertEquals(fmt6(freeSubnets6(c, [n6("fd00:10:5:1::8/125")])), [
    "fd00:10:5:2::/64",
    "fd00:10:5:3::/64",
  ]);
  const big = freeSubnets6(V6ONLY, [n6("fd00:10:5:1::/64")]);
  assertEquals([big.length, formatNet6(big[0]), formatNet6(big[99])], [
    100,
    "fd00:10:5:2::/64",
    "fd00:10:5:65::/64",
  ]);
});

Deno.test("pickRandom: empty, deterministic with an injected rand", () => {
  assertEquals(pickRandom([], () => 0), undefined);
  const items = ["a", "b", "c", "d"];
  const cases: [number, string][] = [[0, "a"], [0.2499, "a"], [0.25, "b"], [0.5, "c"], [
    0.9999999,
    "d",
  ]];
  eachCase((r: number) => pickRandom(items, () => r), cases);
});

Deno.test("pickRandom is roughly uniform with the default rand", () => {
  const n = 10, draws = 20000;
  const counts = new Array(n).fill(0);
  const items = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < draws; i++) counts[pickRandom(items)!]++;
  // Expected 2000 each; σ ≈ 42, so ±400 is > 9σ yet catches any real bias.
  for (const c of counts) assert(c > 1600 && c < 2400, `counts ${counts}`);
});
