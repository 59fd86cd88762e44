// Leases of IPv6-only networks on the in-memory store: every key's IPv4 part is
// 0.0.0.0/0 and every PublicIP 0.0.0.0, so hosts are told apart by the IPv6 subnet and
// found by their PublicIPv6 (upstream v0.20.2 matches by PublicIP and gives every host the
// same lease); dual-stack keys carry both parts. No etcd, no root.
import { assert, assertEquals, assertNotEquals } from "../helpers/assert.ts";
import { MemoryStore } from "../helpers/memory_store.ts";
import { captureLogs } from "../helpers/logs.ts";
import { hostManager, recorder } from "../helpers/control.ts";
import { until } from "../helpers/wait.ts";
import { formatNet6, parseCIDR6, parseIP6 } from "../../lib/core/ip.ts";
import { remoteLeaseProblem } from "../../lib/subnet/allocator.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import { describeLease, type LeaseAttrs } from "../../lib/values/lease.ts";

const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd42::/56"}';
const DUAL = '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd42::/56"}';
const P = "/coreos.com/network/subnets";
const v6val = (ip6: string) => `{"PublicIP":"0.0.0.0","PublicIPv6":"${ip6}"}`;
const attrs6 = (ip6: string): LeaseAttrs => ({ publicIP: 0, publicIPv6: parseIP6(ip6)! });

function setup() {
  const store = new MemoryStore();
  return { store, registry: new SubnetRegistry(store, "/coreos.com/network") };
}

Deno.test("IPv6-only: each host its own lease, found again by its PublicIPv6", async () => {
  const { store, registry } = setup();
  const host = (ip6: string, random: number) =>
    hostManager(registry, V6ONLY, "0.0.0.0", { attrs: attrs6(ip6), random: () => random });
  const a = await host("2001:db8::10", 0).acquire();
  const b = await host("2001:db8::11", 0).acquire();
  assertNotEquals(formatNet6(a.ipv6Subnet!), formatNet6(b.ipv6Subnet!));
  assertEquals(store.keys().sort(), [
    `${P}/0.0.0.0-0&fd42:0:0:1::-64`,
    `${P}/0.0.0.0-0&fd42:0:0:2::-64`,
  ]);
  assertEquals(store.peek(`${P}/0.0.0.0-0&fd42:0:0:1::-64`)?.value, v6val("2001:db8::10"));
  // A restart (random would pick another subnet) finds its own lease by PublicIPv6.
  const again = await host("2001:db8::11", 0.9).acquire();
  assertEquals(formatNet6(again.ipv6Subnet!), formatNet6(b.ipv6Subnet!));
  assertEquals(store.keys().length, 2);
});

Deno.test("IPv6-only: the previous IPv6 subnet from subnet.env is taken when free", async () => {
  const { store, registry } = setup();
  store.put(`${P}/0.0.0.0-0&fd42:0:0:5::-64`, v6val("2001:db8::99"));
  const previous = { ipv6Subnet: parseCIDR6("fd42:0:0:7::/64")! };
  const l = await hostManager(registry, V6ONLY, "0.0.0.0", {
    attrs: attrs6("2001:db8::10"),
    previous,
  }).acquire();
  assertEquals(formatNet6(l.ipv6Subnet!), "fd42:0:0:7::/64", "not held: taken");
  const held = { ipv6Subnet: parseCIDR6("fd42:0:0:5::/64")! };
  const m = await hostManager(registry, V6ONLY, "0.0.0.0", {
    attrs: attrs6("2001:db8::11"),
    previous: held,
    random: () => 0,
  }).acquire();
  assertNotEquals(formatNet6(m.ipv6Subnet!), "fd42:0:0:5::/64", "held by another host");
});

Deno.test("IPv6-only watch: leases told apart by their IPv6 part; our own and our PublicIPv6 stay out", async () => {
  const { store, registry } = setup();
  const cfg = parseNetworkConfig(V6ONLY);
  store.put(`${P}/0.0.0.0-0&fd42:0:0:1::-64`, v6val("2001:db8::10"));
  store.put(`${P}/0.0.0.0-0&fd42:0:0:2::-64`, v6val("2001:db8::11"));
  store.put(`${P}/0.0.0.0-0&fd42:0:0:9::-64`, v6val("2001:db8::19"));
  const { w, seen, own } = recorder(registry, {}, undefined, (l) => remoteLeaseProblem(cfg, l));
  w.setOwn({ ip: 0, prefix: 0 }, 0, parseCIDR6("fd42:0:0:9::/64")!, parseIP6("2001:db8::19")!);
  await captureLogs(async () => {
    await w.start();
    assertEquals(seen.sort(), ["added:fd42:0:0:1::/64", "added:fd42:0:0:2::/64"]);
    assertEquals(own.map((e) => e.type), ["put"]);
    // Our PublicIPv6 on another subnet: our own write in transit, never a peer.
    store.put(`${P}/0.0.0.0-0&fd42:0:0:a::-64`, v6val("2001:db8::19"));
    // A key without an IPv6 part has nothing to route in an IPv6-only network.
    store.put(`${P}/0.0.0.0-0`, v6val("2001:db8::12"));
    store.remove(`${P}/0.0.0.0-0&fd42:0:0:1::-64`);
    await until("removal", () => seen.length === 3, 1000, 2);
  });
  assertEquals(seen[2], "removed:fd42:0:0:1::/64");
  assertEquals(w.leases().map((l) => describeLease(l)), ["fd42:0:0:2::/64"]);
  assert(w.stats.badLeases >= 1, "the key without an IPv6 part is unusable");
  w.stop();
});

Deno.test("dual stack: the key carries both parts; a dual-stack peer is one lease", async () => {
  const { store, registry } = setup();
  const l = await hostManager(registry, DUAL, "192.168.0.1", {
    attrs: { publicIP: 0xc0a80001, publicIPv6: parseIP6("2001:db8::1")! },
    random: () => 0,
  }).acquire();
  assertEquals(describeLease(l), "10.5.1.0/24,fd42:0:0:1::/64");
  assertEquals(store.keys(), [`${P}/10.5.1.0-24&fd42:0:0:1::-64`]);
  assertEquals(
    store.peek(store.keys()[0])?.value,
    '{"PublicIP":"192.168.0.1","PublicIPv6":"2001:db8::1"}',
  );
});
