import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import type { Link } from "../../ffi/netlink/mod.ts";
import {
  checksumWorkaround,
  leaseVtepMAC,
  needsChecksumWorkaround,
  parseVxlanConfig,
} from "../../lib/backend/vxlan/config.ts";
import { incompatibility, randomMAC } from "../../lib/backend/vxlan/device.ts";
import { ConfigError } from "../../lib/values/config.ts";
import { formatMAC } from "../../lib/core/mac.ts";

Deno.test("vxlan config: defaults", () => {
  assertEquals(parseVxlanConfig({ Type: "vxlan" }), {
    vni: 1,
    port: 0,
    mtu: 0,
    gbp: false,
    learning: false,
    directRouting: false,
    disableTxChecksum: null,
  });
});

Deno.test("vxlan config: keys are case-insensitive", () => {
  const c = parseVxlanConfig({
    vni: 42,
    PORT: 4789,
    mtu: 9000,
    gbp: true,
    learning: true,
    directrouting: true,
  });
  assertEquals([c.vni, c.port, c.mtu, c.gbp, c.learning, c.directRouting], [
    42,
    4789,
    9000,
    true,
    true,
    true,
  ]);
});

Deno.test("vxlan config: checksum workaround from config, else automatic", () => {
  assertEquals(parseVxlanConfig({ DisableTxChecksumOffload: false }).disableTxChecksum, false);
  assertEquals(parseVxlanConfig({ disabletxchecksumoffload: true }).disableTxChecksum, true);
  assertEquals(parseVxlanConfig({}).disableTxChecksum, null);
});

Deno.test("vxlan config: invalid values name the field", () => {
  for (
    const bad of [{ VNI: 1 << 24 }, { VNI: -1 }, { Port: 70000 }, { GBP: "yes" }, { VNI: "1" }]
  ) {
    const key = Object.keys(bad)[0];
    const e = assertThrows(() => parseVxlanConfig(bad), ConfigError);
    assertEquals(e.field, `Backend.${key}`, JSON.stringify(bad));
    assert(e.message.startsWith(`${e.field} must be `), e.message);
  }
});

Deno.test("leaseVtepMAC: reads VtepMAC case-insensitively, rejects junk", () => {
  assertEquals(
    formatMAC(leaseVtepMAC({ VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" })!),
    "c6:d2:32:6f:8f:44",
  );
  assertEquals(formatMAC(leaseVtepMAC({ vtepmac: "C6:D2:32:6F:8F:44" })!), "c6:d2:32:6f:8f:44");
  for (const bad of [undefined, null, "x", {}, { VtepMAC: 5 }, { VtepMAC: "c6:d2:32" }]) {
    assertEquals(leaseVtepMAC(bad), null);
  }
});

Deno.test("randomMAC: locally administered unicast", () => {
  for (let i = 0; i < 100; i++) {
    const m = randomMAC();
    assertEquals([m.length, m[0] & 0x03], [6, 0x02]);
  }
});

const want = {
  name: "flannel.1",
  vni: 1,
  port: 0,
  local: 0xc0a8010a,
  underlayIndex: 2,
  gbp: false,
};

function vxlanLink(over: Partial<NonNullable<Link["vxlan"]>> = {}, kind = "vxlan"): Link {
  return {
    index: 5,
    name: "flannel.1",
    mtu: 1450,
    flags: 0,
    up: true,
    mac: new Uint8Array(6),
    type: 1,
    kind,
    vxlan: {
      vni: 1,
      port: 8472,
      local: 0xc0a8010a,
      underlayIndex: 2,
      learning: false,
      gbp: false,
      l2miss: false,
      l3miss: false,
      ...over,
    },
  };
}

Deno.test("incompatibility: strict on kind, VNI, GBP, l2miss", () => {
  assertEquals(incompatibility(vxlanLink(), want), null);
  assert(incompatibility(vxlanLink({}, "bridge"), want));
  assert(incompatibility(vxlanLink({ vni: 2 }), want));
  assert(incompatibility(vxlanLink({ gbp: true }), want));
  assert(incompatibility(vxlanLink({ l2miss: true }), want));
});

Deno.test("incompatibility: underlay, local and port only when both are set", () => {
  assert(incompatibility(vxlanLink({ underlayIndex: 3 }), want));
  assert(incompatibility(vxlanLink({ local: 0xc0a8010b }), want));
  assertEquals(incompatibility(vxlanLink({ underlayIndex: 0, local: 0 }), want), null);
  // Port 0 = kernel default: any existing port fits; an explicit port must match.
  assertEquals(incompatibility(vxlanLink({ port: 4789 }), want), null);
  assert(incompatibility(vxlanLink({ port: 4789 }), { ...want, port: 8472 }));
  // Learning is not compared (upstream does not either).
  assertEquals(incompatibility(vxlanLink({ learning: true }), want), null);
});

Deno.test("vxlan: checksum workaround by default only below 5.7 or behind NAT", () => {
  const cases: [string, boolean, boolean][] = [
    ["4.19.0-25-amd64", false, true],
    ["5.6.19", false, true],
    ["5.7.0", false, false],
    ["6.18.44-fc-v595", false, false],
    ["6.18.44-fc-v595", true, true],
    ["garbage", false, true],
  ];
  for (const [kernelRelease, behindNAT, want] of cases) {
    assertEquals(
      needsChecksumWorkaround({ kernelRelease, behindNAT }),
      want,
      `${kernelRelease} nat=${behindNAT}`,
    );
    assertEquals(checksumWorkaround(parseVxlanConfig({}), { kernelRelease, behindNAT }), want);
  }
  // An explicit setting always wins.
  const cfg = parseVxlanConfig({ DisableTxChecksumOffload: true });
  assertEquals(checksumWorkaround(cfg, { kernelRelease: "6.1", behindNAT: false }), true);
  const off = parseVxlanConfig({ DisableTxChecksumOffload: false });
  assertEquals(checksumWorkaround(off, { kernelRelease: "4.19", behindNAT: true }), false);
});
