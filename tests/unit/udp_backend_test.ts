import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { parseUdpConfig, UdpBackend } from "../../lib/backend/udp/backend.ts";
import { backendKind, chooseBackend } from "../../lib/daemon/backends.ts";
import { ConfigError } from "../../lib/values/config.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import type { ExternalInterface } from "../../lib/values/iface.ts";

const ext: ExternalInterface = {
  name: "eth0",
  index: 2,
  mtu: 1500,
  ifaceAddr: 0xc0a80001,
  extAddr: 0xc0a80001,
  ifaceAddr6: null,
  extAddr6: null,
};

Deno.test("udp config: Port is case-insensitive, defaults to 8285, and is range-checked", () => {
  assertEquals(parseUdpConfig({}), { port: 8285, offloads: true });
  assertEquals(parseUdpConfig({ Type: "udp", Port: 0 }), { port: 8285, offloads: true });
  assertEquals(parseUdpConfig({ port: 9000 }), { port: 9000, offloads: true });
  assertEquals(parseUdpConfig({ PORT: 1 }), { port: 1, offloads: true });
  for (const bad of [65536, -1, 1.5, "8285", true]) {
    assertThrows(() => parseUdpConfig({ Port: bad }), ConfigError, "Backend.Port");
  }
});

Deno.test("udp config: Offloads is a case-insensitive boolean, default true", () => {
  assertEquals(parseUdpConfig({ Offloads: false }).offloads, false);
  assertEquals(parseUdpConfig({ offloads: false, Port: 9000 }), { port: 9000, offloads: false });
  assertEquals(parseUdpConfig({ OFFLOADS: true }).offloads, true);
  assertEquals(parseUdpConfig({ Offloads: null }).offloads, true);
  for (const bad of [0, 1, "false", {}]) {
    assertThrows(() => parseUdpConfig({ Offloads: bad }), ConfigError, "Backend.Offloads");
  }
});

Deno.test("udp backend: MTU ext−28, empty lease type, nothing to prepare", async () => {
  const network = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","Backend":{"Type":"udp","port":7000}}',
  );
  const be = new UdpBackend({
    network,
    ext,
    options: parseUdpConfig(network.backend),
    reconcileIntervalSeconds: 10,
  });
  assertEquals(be.mtu, 1472);
  assertEquals(be.leaseType, "");
  assertEquals(be.port, 7000);
  assertEquals(be.offloads, true);
  assertEquals(await be.prepare(), {});
  assertEquals(be.stats(), { repairs_tun: 0 }, "before start: no data path counters, no repairs");
});

Deno.test("registry: udp is registered, unknown types are not", () => {
  const network = parseNetworkConfig('{"Network":"10.5.0.0/16"}');
  const { kind, options } = chooseBackend(network);
  assertEquals(kind, backendKind("udp"));
  assertEquals(kind.create({ network, ext, options, reconcileIntervalSeconds: 10 }).mtu, 1472);
  assertEquals(backendKind("nonesuch"), undefined);
  assertEquals(backendKind("toString"), undefined);
  const bad = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"nonesuch"}}');
  assertThrows(() => chooseBackend(bad), ConfigError, 'unknown backend type "nonesuch"');
  const badPort = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":"x"}}',
  );
  assertThrows(() => chooseBackend(badPort), ConfigError, "Backend.Port");
});

Deno.test("udp refuses IPv6 when the config is read: EnableIPv6, or an IPv6-only network", () => {
  for (
    const [config, field] of [
      ['{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd42::/56"}', "EnableIPv6"],
      [
        '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd42::/56","Backend":{"Type":"udp"}}',
        "EnableIPv4",
      ],
    ]
  ) {
    const e = assertThrows(
      () => chooseBackend(parseNetworkConfig(config)),
      ConfigError,
      "the udp backend carries IPv4 only",
    );
    assertEquals(e.field, field);
  }
  // vxlan and host-gw take the same dual-stack network.
  for (const type of ["vxlan", "host-gw"]) {
    const dual =
      `{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd42::/56","Backend":{"Type":"${type}"}}`;
    assertEquals(chooseBackend(parseNetworkConfig(dual)).kind, backendKind(type));
  }
});
