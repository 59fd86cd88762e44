/**
 * IPv6 in the routing backends, against the in-memory kernel: vxlan's second device
 * `flannel-v6.<VNI>` (local address the public IPv6, MTU 70 below the underlay's, our
 * subnet's /128) and BackendV6Data in the lease; per dual-stack peer the IPv6 neighbour,
 * FDB entry and onlink route beside the IPv4 ones; repairs, device recreation and stale
 * cleanup in IPv6; leases without usable IPv6 data (IPv4 still programmed, one warning);
 * DirectRouting in IPv6; IPv6-only networks; host-gw's IPv6 routes and NAT check.
 */

import { assert, assertEquals, assertRejects, assertThrows } from "../helpers/assert.ts";
import { until } from "../helpers/wait.ts";
import type { MemoryKernel } from "../helpers/memory_kernel.ts";
import {
  added,
  DEVICE,
  DEVICE6,
  HOST_IP6,
  hostGw,
  hostKernel,
  type KernelHost,
  lease,
  removed,
  settle,
  type Stack,
  VNI,
  vxlan,
  withBackend,
} from "../helpers/peer_fixture.ts";
import {
  addrList,
  fdbDel,
  fdbList,
  fdbReplace,
  linkByName,
  linkDel,
  linkSetDown,
  neighDel,
  neighList,
  neighReplace,
  type Route,
  routeAdd,
  routeDel,
  routeList,
  routeReplace,
} from "../../ffi/netlink/mod.ts";
import { formatIP, formatNet, parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";
import { formatMAC } from "../../lib/core/mac.ts";
import { encodeLeaseAttrs } from "../../lib/values/lease.ts";
import { ip6, mac, net6 } from "../helpers/addr.ts";

const on = (stack: Stack) => (c: KernelHost) => vxlan(c, 3600, stack);
const gwOn = (stack: Stack) => (c: KernelHost) => hostGw(c, 3600, stack);

const MAC4 = "02:00:00:00:02:04", MAC6 = "02:00:00:00:02:06";
/** A dual-stack vxlan peer at 192.168.7.2 / 2001:db8:7::2. */
const PEER = lease("10.5.2.0/24", "192.168.7.2", "vxlan", MAC4, {
  subnet: "fd42:0:0:2::/64",
  publicIP: "2001:db8:7::2",
  vtepMAC: MAC6,
});

/** The IPv6 entries for the peer subnet `sn` on `DEVICE6`, as the kernel has them. */
function v6State(k: MemoryKernel, sn = "fd42:0:0:2::/64") {
  const dev = linkByName(k, DEVICE6)?.index ?? -1;
  const gw = net6(sn).ip;
  const neigh = neighList(k, { index: dev, family: 6 }).find((n) => n.ip === gw);
  return {
    neigh: neigh?.mac ? formatMAC(neigh.mac) : null,
    fdbs: fdbList(k, { index: dev }).map((f) => `${formatMAC(f.mac)} ${formatIP(f.dst!)}`),
    route: routeList(k, { dst: net6(sn) }).some((r) => r.dev === dev && r.gw === gw && r.onlink),
  };
}

const WANT6 = { neigh: MAC6, fdbs: [`${MAC6} 2001:db8:7::2`], route: true };

Deno.test("vxlan dual stack: two devices, BackendV6Data in the lease, our /128 on flannel-v6", async () => {
  await withBackend(
    on("dual"),
    ({ kernel, backend }) => {
      const d4 = linkByName(kernel, DEVICE)!, d6 = linkByName(kernel, DEVICE6)!;
      assertEquals([d4.mtu, d4.vxlan?.vni, d4.vxlan?.local], [1450, VNI, parseIP4("192.168.7.1")]);
      assertEquals([d6.mtu, d6.vxlan?.vni, d6.vxlan?.local, d6.up], [
        1430,
        VNI,
        ip6(HOST_IP6),
        true,
      ]);
      assertEquals(backend.mtu, 1450, "FLANNEL_MTU is the IPv4 device's, as upstream's");
      assertEquals(
        addrList(kernel, { index: d6.index, family: 6 }).map((a) => formatNet(a)),
        ["fd42:0:0:1::/128"],
      );
      assertEquals(backend.deviceNames, [DEVICE, DEVICE6]);
      return Promise.resolve();
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: the lease value is upstream's byte for byte", async () => {
  await withBackend(
    on("dual"),
    async ({ kernel, backend, ext }) => {
      const data = await backend.prepare(); // reuses both devices: same MACs
      const [m4, m6] = [DEVICE, DEVICE6].map((d) => formatMAC(linkByName(kernel, d)!.mac!));
      assertEquals(
        encodeLeaseAttrs({
          publicIP: ext.extAddr,
          publicIPv6: ext.extAddr6,
          backendType: backend.leaseType,
          ...data,
        }),
        `{"PublicIP":"192.168.7.1","PublicIPv6":"2001:db8:7::1","BackendType":"vxlan",` +
          `"BackendData":{"VNI":${VNI},"VtepMAC":"${m4}"},"BackendV6Data":{"VNI":${VNI},"VtepMAC":"${m6}"}}`,
      );
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: a peer gets its IPv6 neighbour, FDB entry and onlink route beside the IPv4 ones", async () => {
  await withBackend(
    on("dual"),
    async ({ kernel, backend, log }) => {
      await backend.handle([added(PEER)]);
      assertEquals(v6State(kernel), WANT6);
      const d4 = linkByName(kernel, DEVICE)!.index;
      assert(routeList(kernel).some((r) => r.dev === d4 && r.gw === parseIP4("10.5.2.0")));
      assertEquals(fdbList(kernel, { index: d4 }).map((f) => formatIP(f.dst!)), ["192.168.7.2"]);
      assertEquals(
        log.count("peer added", "10.5.2.0/24 via 10.5.2.0", "fd42:0:0:2::/64 via fd42:0:0:2::"),
        1,
      );
      await settle(backend);
      assertEquals(backend.stats().repairs, 0, "our own writes echoing back repair nothing");
      assertEquals(backend.stats().peers, 1);

      await backend.handle([removed(PEER)]);
      assertEquals(v6State(kernel), { neigh: null, fdbs: [], route: false });
      assertEquals(routeList(kernel).filter((r) => r.dev === d4).length, 0);
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: deleted IPv6 neighbour, FDB entry and route are put back, one line each", async () => {
  await withBackend(
    on("dual"),
    async ({ kernel, backend, log }) => {
      await backend.handle([added(PEER)]);
      await settle(backend);
      const dev = linkByName(kernel, DEVICE6)!.index;
      neighDel(kernel, { index: dev, ip: ip6("fd42:0:0:2::") });
      await until("neighbour put back", () => v6State(kernel).neigh === MAC6);
      fdbDel(kernel, { index: dev, mac: mac(MAC6) });
      await until("FDB entry put back", () => v6State(kernel).fdbs.length === 1);
      routeDel(kernel, { dst: net6("fd42:0:0:2::/64") });
      await until("route put back", () => v6State(kernel).route);
      await settle(backend);
      assertEquals(v6State(kernel), WANT6);
      const s = backend.stats();
      assertEquals([s.repairs, s.repairs_neigh, s.repairs_fdb, s.repairs_route], [3, 1, 1, 1]);
      assertEquals(
        log.count(`repaired: neighbour fd42:0:0:2:: lladdr ${MAC6}`, "trigger=netlink"),
        1,
      );
      assertEquals(log.count(`repaired: fdb ${MAC6} dst 2001:db8:7::2`, "trigger=netlink"), 1);
      assertEquals(
        log.count("repaired: route fd42:0:0:2::/64 via fd42:0:0:2::", "trigger=netlink"),
        1,
      );
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: flannel-v6 deleted or set down comes back with its MAC, /128 and peers", async () => {
  await withBackend(
    on("dual"),
    async ({ kernel, backend, log }) => {
      await backend.handle([added(PEER)]);
      await settle(backend);
      const before = linkByName(kernel, DEVICE6)!;
      linkDel(kernel, before.index);
      await until("device recreated and programmed", () => v6State(kernel).route);
      const after = linkByName(kernel, DEVICE6)!;
      assertEquals(formatMAC(after.mac!), formatMAC(before.mac!), "with the MAC peers know");
      assertEquals(log.count(`repaired: recreated ${DEVICE6} (deleted) with MAC`), 1);
      await settle(backend);

      // Down drops the IPv6 address, routes and neighbours (the FDB entry stays).
      linkSetDown(kernel, after.index);
      await until("up again and programmed", () => {
        const l = linkByName(kernel, DEVICE6)!;
        return l.up && v6State(kernel).route && v6State(kernel).neigh === MAC6;
      });
      await settle(backend);
      assertEquals(
        addrList(kernel, { index: after.index, family: 6 }).map((a) => formatNet(a)),
        ["fd42:0:0:1::/128"],
      );
      assertEquals(v6State(kernel), WANT6);
      assertEquals(linkByName(kernel, DEVICE)!.up, true, "the IPv4 device is left alone");
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: a lease without BackendV6Data keeps its IPv4 path, logged once; IPv6 follows when it comes", async () => {
  await withBackend(
    on("dual"),
    async ({ kernel, backend, log }) => {
      // What a dual-stack host without IPv6 VTEP data writes (ours before IPv6 support).
      const noV6 = lease("10.5.2.0/24", "192.168.7.2", "vxlan", MAC4, {
        subnet: "fd42:0:0:2::/64",
        publicIP: "2001:db8:7::2",
      });
      await backend.handle([added(noV6)]);
      await backend.handle([added(noV6)]);
      const d4 = linkByName(kernel, DEVICE)!.index;
      assert(routeList(kernel).some((r) => r.dev === d4), "IPv4 still programmed");
      assertEquals(v6State(kernel), { neigh: null, fdbs: [], route: false });
      assertEquals(log.count("no IPv6 path to this vxlan lease", "subnet=10.5.2.0/24"), 1);

      await backend.handle([added(PEER)]);
      assertEquals(v6State(kernel), WANT6);
      // The IPv6 data going away again takes the IPv6 entries along.
      await backend.handle([added(noV6)]);
      assertEquals(v6State(kernel), { neigh: null, fdbs: [], route: false });
      assertEquals(log.count("no IPv6 path to this vxlan lease"), 2, "logged again after a change");
      assert(routeList(kernel).some((r) => r.dev === d4), "and IPv4 stays");
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: stale IPv6 entries go after the first snapshot; IPv6 routes outside IPv6Network stay", async () => {
  const STALE = "02:00:00:00:77:77";
  await withBackend(
    on("dual"),
    async ({ kernel, backend, ext, log }) => {
      const dev = linkByName(kernel, DEVICE6)!.index;
      neighReplace(kernel, { index: dev, ip: ip6("fd42:0:0:77::"), mac: mac(STALE) });
      fdbReplace(kernel, { index: dev, mac: mac(STALE), dst: ip6("2001:db8:7::77") });
      routeReplace(kernel, {
        dst: net6("fd42:0:0:77::/64"),
        gw: ip6("fd42:0:0:77::"),
        dev,
        onlink: true,
      });
      routeAdd(kernel, {
        dst: net6("2001:db8:99::/64"),
        gw: ip6("2001:db8:7::99"),
        dev: ext.index,
      });
      await settle(backend);
      assertEquals(backend.stats().stale_removed, 0, "no snapshot yet");

      await backend.handle([added(PEER)]);
      await settle(backend);
      assertEquals(routeList(kernel, { dst: net6("fd42:0:0:77::/64") }), []);
      assertEquals(
        neighList(kernel, { index: dev, family: 6 }).map((n) => formatIP(n.ip)),
        ["fd42:0:0:2::"],
      );
      assertEquals(v6State(kernel), WANT6);
      assertEquals(routeList(kernel, { dst: net6("2001:db8:99::/64") }).length, 1);
      assertEquals(
        routeList(kernel, { dst: net6("fd42:0:0:1::/128") }).length,
        1,
        "our own address's route stays",
      );
      assertEquals(backend.stats().stale_removed, 3);
      assertEquals(log.count("removed stale: route fd42:0:0:77::/64"), 1);
      assertEquals(log.count("startup cleanup done", "stale=3", "peers=1"), 1);
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan dual stack: DirectRouting routes an IPv6 peer on our segment via its PublicIPv6", async () => {
  const direct = (c: KernelHost) => {
    const b = vxlan(c, 3600, "dual");
    (b.config as { directRouting: boolean }).directRouting = true;
    return b;
  };
  await withBackend(
    direct,
    async ({ kernel, backend, ext }) => {
      await backend.handle([added(PEER)]);
      const [r] = routeList(kernel, { dst: net6("fd42:0:0:2::/64") });
      assertEquals([r.gw, r.dev, r.onlink], [ip6("2001:db8:7::2"), ext.index, false]);
      assertEquals(v6State(kernel).fdbs, [], "no IPv6 VXLAN entries for a direct peer");
    },
    undefined,
    "dual",
  );
});

Deno.test("vxlan IPv6-only: one device, FLANNEL_MTU 70 below the underlay, no IPv4 entries", async () => {
  await withBackend(
    on("v6"),
    async ({ kernel, backend }) => {
      assertEquals(linkByName(kernel, DEVICE), null, "no IPv4 device");
      assertEquals(backend.mtu, 1430);
      const data = await backend.prepare();
      assertEquals(data.backendData, undefined);
      assertEquals((data.backendV6Data as { VNI: number }).VNI, VNI);
      const peer = lease("", "", "vxlan", undefined, {
        subnet: "fd42:0:0:2::/64",
        publicIP: "2001:db8:7::2",
        vtepMAC: MAC6,
      });
      await backend.handle([added(peer)]);
      assertEquals(v6State(kernel), WANT6);
      assertEquals(routeList(kernel, { family: 4 }).filter((r) => r.gw !== undefined), []);
      await settle(backend);
      assertEquals(backend.stats().repairs, 0);
    },
    undefined,
    "v6",
  );
});

// ----------------------------------------------------------------------- host-gw

const GW_PEER = lease("10.5.2.0/24", "192.168.7.2", "host-gw", undefined, {
  subnet: "fd42:0:0:2::/64",
  publicIP: "2001:db8:7::2",
});
const via6 = (k: MemoryKernel, dev: number) =>
  routeList(k, { dst: net6("fd42:0:0:2::/64") }).some((r: Route) =>
    r.gw === ip6("2001:db8:7::2") && r.dev === dev && !r.onlink
  );

Deno.test("host-gw dual stack: IPv6 subnets via the PublicIPv6, repaired when deleted", async () => {
  await withBackend(
    gwOn("dual"),
    async ({ kernel, backend, ext, log }) => {
      await backend.handle([added(GW_PEER)]);
      assert(via6(kernel, ext.index), "IPv6 route via the peer's PublicIPv6");
      assertEquals(routeList(kernel, { dst: parseCIDR4("10.5.2.0/24")! }).length, 1);
      await settle(backend);
      routeDel(kernel, { dst: net6("fd42:0:0:2::/64") });
      await until("route put back", () => via6(kernel, ext.index));
      assertEquals(
        log.count("repaired: route fd42:0:0:2::/64 via 2001:db8:7::2", "trigger=netlink"),
        1,
      );

      await backend.handle([removed(GW_PEER)]);
      assert(!via6(kernel, ext.index), "a removed lease takes its IPv6 route along");
    },
    undefined,
    "dual",
  );
});

Deno.test("host-gw dual stack: a lease without PublicIPv6 is routed in IPv4 only, logged once", async () => {
  await withBackend(
    gwOn("dual"),
    async ({ kernel, backend, log }) => {
      const noV6 = lease("10.5.2.0/24", "192.168.7.2", "host-gw", undefined, {
        subnet: "fd42:0:0:2::/64",
      });
      await backend.handle([added(noV6)]);
      await backend.handle([added(noV6)]);
      assertEquals(routeList(kernel, { dst: net6("fd42:0:0:2::/64") }), []);
      assertEquals(routeList(kernel, { dst: parseCIDR4("10.5.2.0/24")! }).length, 1);
      assertEquals(log.count("no IPv6 path to this host-gw lease"), 1);
    },
    undefined,
    "dual",
  );
});

Deno.test("host-gw IPv6-only: routes in IPv6 alone", async () => {
  await withBackend(
    gwOn("v6"),
    async ({ kernel, backend, ext }) => {
      await backend.handle([added(lease("", "", "host-gw", undefined, {
        subnet: "fd42:0:0:2::/64",
        publicIP: "2001:db8:7::2",
      }))]);
      assert(via6(kernel, ext.index));
      assertEquals(routeList(kernel, { family: 4 }).filter((r) => r.gw !== undefined), []);
    },
    undefined,
    "v6",
  );
});

Deno.test("host-gw: a public IPv6 other than the interface's is refused (NAT)", async () => {
  const natted = (c: KernelHost) =>
    hostGw({ ...c, ext: { ...c.ext, extAddr6: ip6("2001:db8:9::1") } }, 3600, "dual");
  await assertRejects(
    () => withBackend(natted, () => Promise.resolve(), undefined, "dual"),
    Error,
    "the public IPv6 2001:db8:9::1 differs from eth0's address 2001:db8:7::1 (probably you're on a NAT)",
  );
});

Deno.test("vxlan and host-gw: IPv6 enabled on a host without an IPv6 address is refused before any device exists", async () => {
  const host = hostKernel("v4");
  assertThrows(
    () => vxlan(host, 3600, "dual"),
    Error,
    "IPv6 is enabled but eth0 has no IPv6 address",
  );
  assertEquals(linkByName(host.kernel, DEVICE), null);
  await assertRejects(
    () => hostGw(host, 3600, "dual").prepare(),
    Error,
    "the public IPv6 (none) differs from eth0's address (none)",
  );
});
