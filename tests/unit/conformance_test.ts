// Inputs on which ours once differed from upstream flanneld v0.20.2 (fed the same config,
// keys and values): each case says what upstream does and checks that ours does the same,
// or the deviation the README's "Deviations from upstream" table argues.
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { MemoryStore } from "../helpers/memory_store.ts";
import { hostManager } from "../helpers/control.ts";
import { captureLogs } from "../helpers/logs.ts";
import { recorder } from "../helpers/control.ts";
import { until } from "../helpers/wait.ts";
import { formatMAC } from "../../lib/core/mac.ts";
import { formatNet4, overlaps4, parseCIDR4 } from "../../lib/core/ip.ts";
import { leaseVtepMAC } from "../../lib/backend/vxlan/config.ts";
import { chooseBackend } from "../../lib/daemon/backends.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { ConfigError, parseNetworkConfig } from "../../lib/values/config.ts";
import {
  decodeLeaseAttrs,
  keySubnets,
  LeaseParseError,
  parseSubnetKey,
} from "../../lib/values/lease.ts";

const P = "/coreos.com/network/subnets";

Deno.test("config: a /0 Network or IPv6Network is refused in upstream's words", () => {
  for (
    const [text, field] of [
      ['{"Network":"0.0.0.0/0"}', "Network"],
      ['{"Network":"10.0.0.0/0"}', "Network"],
      ['{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"::/0"}', "IPv6Network"],
    ]
  ) {
    const e = assertThrows(() => parseNetworkConfig(text), ConfigError);
    assertEquals(e.field, field, text);
    assert(e.message.startsWith(`please define a correct ${field} parameter`), e.message);
  }
});

Deno.test("config: keys differing only in case: the later one wins, as Go's decoder", () => {
  const c = parseNetworkConfig('{"Network":"10.5.0.0/16","network":"192.168.0.0/16"}');
  assertEquals(formatNet4(c.network!), "192.168.0.0/16");
  const d = parseNetworkConfig('{"network":"192.168.0.0/16","NETWORK":"10.5.0.0/16"}');
  assertEquals(formatNet4(d.network!), "10.5.0.0/16");
  const b = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","Backend":{"Type":"udp","type":"vxlan","vni":2,"VNI":3}}',
  );
  assertEquals([b.backendType, chooseBackend(b).options], ["vxlan", {
    vni: 3,
    port: 0,
    mtu: 0,
    gbp: false,
    learning: false,
    directRouting: false,
    disableTxChecksum: null,
  }]);
});

Deno.test("config: udp only when Backend is absent; a Backend without Type is refused", () => {
  assertEquals(chooseBackend(parseNetworkConfig('{"Network":"10.5.0.0/16"}')).options, {
    port: 8285,
    offloads: true,
  });
  for (const backend of ["{}", "null", '{"Type":""}', '{"Type":null}', '{"Port":8285}']) {
    const cfg = parseNetworkConfig(`{"Network":"10.5.0.0/16","Backend":${backend}}`);
    assertEquals(cfg.backendType, "", backend);
    const e = assertThrows(() => chooseBackend(cfg), ConfigError, "Backend has no Type");
    assertEquals(e.field, "Backend.Type");
    assert(e.message.includes("leave Backend out for udp"), e.message);
  }
});

Deno.test("lease keys with host bits: never routed, but they occupy their subnet", () => {
  assertEquals(parseSubnetKey(`${P}/10.5.2.3-24`), null);
  const k = keySubnets(`${P}/10.5.2.3-24&fd00::1-64`)!;
  assertEquals(k.exact, false);
  assertEquals(formatNet4(k.subnet), "10.5.2.0/24");
  assertEquals(k.ipv6Subnet?.prefix, 64);
  assertEquals(keySubnets(`${P}/10.5.2.0-24`)?.exact, true);
});

Deno.test("allocation never hands out a subnet a host-bits key or a bad value occupies", async () => {
  const store = new MemoryStore();
  const registry = new SubnetRegistry(store, "/coreos.com/network");
  // SubnetMin..Max holds 3 subnets; two are taken by keys that are no usable lease.
  const cfg = `{"Network":"10.8.0.0/16","SubnetMin":"10.8.1.0","SubnetMax":"10.8.3.0"}`;
  store.put(`${P}/10.8.1.7-24`, '{"PublicIP":"192.168.0.7","PublicIPv6":null}');
  store.put(`${P}/10.8.2.0-24`, "not json");
  for (let i = 0; i < 5; i++) {
    const m = hostManager(registry, cfg, `192.168.1.${i + 1}`, { random: () => 0 });
    if (i === 0) {
      assertEquals(formatNet4((await m.acquire()).subnet), "10.8.3.0/24");
      continue;
    }
    const e = await m.acquire().then(() => null, (e) => e as Error);
    assert(e?.message.startsWith("out of subnets"), String(e));
  }
  const taken = ["10.8.1.0/24", "10.8.2.0/24"].map((s) => parseCIDR4(s)!);
  const mine = store.keys().filter((k) => k.endsWith("10.8.3.0-24"));
  assertEquals(mine.length, 1);
  assert(!taken.some((t) => overlaps4(t, parseCIDR4("10.8.3.0/24")!)));
});

Deno.test("watch: a host-bits key is reported once and never routed", async () => {
  const store = new MemoryStore();
  const registry = new SubnetRegistry(store, "/coreos.com/network");
  store.put(`${P}/10.5.2.3-24`, '{"PublicIP":"192.168.0.2","PublicIPv6":null}');
  const { w, seen } = recorder(registry, { backoffMinMs: 5, progressIntervalMs: 10 });
  const lines = await captureLogs(async () => {
    await w.start();
    store.put(`${P}/10.5.2.3-24`, '{"PublicIP":"192.168.0.2","PublicIPv6":null}');
    store.put(`${P}/10.5.4.0-24`, '{"PublicIP":"192.168.0.4","PublicIPv6":null}');
    await until("a valid add", () => seen.length === 1, 1000, 2);
  });
  assertEquals(seen, ["added:10.5.4.0/24"]);
  const bad = lines.filter((l) => l.includes("host bits set"));
  assertEquals(bad.length, 1, lines.join("\n"));
  w.stop();
});

Deno.test("lease values: PublicIP null is refused (absent is 0.0.0.0); later keys win", () => {
  assertThrows(() => decodeLeaseAttrs('{"PublicIP":null}'), LeaseParseError, "PublicIP is null");
  assertEquals(decodeLeaseAttrs('{"PublicIPv6":"fd00::1"}').publicIP, 0);
  assertEquals(
    decodeLeaseAttrs('{"PublicIP":"192.168.0.1","publicip":"192.168.0.2"}').publicIP,
    0xc0a80002,
  );
});

Deno.test("vxlan BackendData: VtepMAC in Go's three forms; a VNI that is not a number skips", () => {
  for (const form of ["0a:58:0a:f4:00:01", "0A-58-0A-F4-00-01", "0a58.0af4.0001"]) {
    assertEquals(formatMAC(leaseVtepMAC({ VtepMAC: form })!), "0a:58:0a:f4:00:01", form);
  }
  for (
    const bad of ["0a:58:0a:f4:00", "0a58.0af4.00", "0a:58:0a-f4:00:01", "00:00:00:00:00:00:00:01"]
  ) {
    assertEquals(leaseVtepMAC({ VtepMAC: bad }), null, bad);
  }
  const mac = "0a:58:0a:f4:00:01";
  assert(leaseVtepMAC({ VNI: 1, VtepMAC: mac }) !== null);
  assert(leaseVtepMAC({ VNI: null, VtepMAC: mac }) !== null);
  for (const vni of ["1", -1, 1.5, 2 ** 32, true]) {
    assertEquals(leaseVtepMAC({ VNI: vni, VtepMAC: mac }), null, JSON.stringify(vni));
  }
});
