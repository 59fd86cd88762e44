/**
 * The reconcile engine (`PeerReconciler`) against the in-memory kernel, through the vxlan
 * and host-gw backends and a minimal data path: repairs after a notification (one log line
 * and one count per repair), stale entries removed only after the first lease snapshot (or
 * after a full period without one), removed and superseded entries, leases of another
 * backend type, failed writes retried, and the debounce of notification bursts. The kernel
 * and its notifications are in memory: no root, no namespace.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { sleep, until } from "../helpers/wait.ts";
import type { MemoryKernel } from "../helpers/memory_kernel.ts";
import {
  added,
  DEBOUNCE_MS,
  DEVICE,
  hostGw,
  hostKernel,
  lease,
  removed,
  routeOnlyPath,
  settle,
  VNI,
  vxlan,
  withBackend,
} from "../helpers/peer_fixture.ts";
import {
  fdbDel,
  fdbList,
  fdbReplace,
  linkByName,
  linkDel,
  neighDel,
  neighList,
  neighReplace,
  type Route,
  routeAdd,
  routeDel,
  routeList,
  routeReplace,
  RTM_NEWROUTE,
} from "../../ffi/netlink/mod.ts";
import { formatIP } from "../../lib/core/ip.ts";
import type { Logger } from "../../lib/core/log.ts";
import { formatMAC } from "../../lib/core/mac.ts";
import type { ExternalInterface } from "../../lib/values/iface.ts";
import { PeerReconciler } from "../../lib/backend/reconcile.ts";
import { ip4 as ip, mac, net4 as net } from "../helpers/addr.ts";

const hasRoute = (k: MemoryKernel, dst: string, pred: (r: Route) => boolean = () => true) =>
  routeList(k, { dst: net(dst) }).some(pred);

// ------------------------------------------------------------------------- vxlan

const PEER = lease("10.5.2.0/24", "192.168.7.2", "vxlan", "02:00:00:00:02:02");

/** The vxlan device's neighbour, FDB entry and route for `PEER`, as the kernel has them. */
function peerState(k: MemoryKernel) {
  const dev = linkByName(k, DEVICE)!.index;
  const neigh = neighList(k, { index: dev }).find((n) => n.ip === ip("10.5.2.0"));
  return {
    dev,
    neighMAC: neigh?.mac ? formatMAC(neigh.mac) : null,
    fdbs: fdbList(k, { index: dev }).map((f) => `${formatMAC(f.mac)} ${formatIP(f.dst!)}`),
    route: hasRoute(k, "10.5.2.0/24", (r) => r.dev === dev && r.gw === ip("10.5.2.0") && r.onlink),
  };
}

Deno.test("vxlan: a lease becomes neighbour, FDB entry and onlink route on the device", async () => {
  await withBackend(vxlan, async ({ kernel, backend, log }) => {
    const dev = linkByName(kernel, DEVICE)!;
    assert(dev.up, "the device is up after start()");
    assertEquals(dev.vxlan?.vni, VNI);
    await backend.handle([added(PEER)]);
    assertEquals(peerState(kernel), {
      dev: dev.index,
      neighMAC: "02:00:00:00:02:02",
      fdbs: ["02:00:00:00:02:02 192.168.7.2"],
      route: true,
    });
    assertEquals(log.count("peer added", "subnet=10.5.2.0/24"), 1);
    await settle(backend);
    assertEquals(backend.stats().repairs, 0, "our own writes echoing back repair nothing");
  });
});

Deno.test("vxlan: deleted neighbour, FDB entry and route and an altered neighbour MAC are put back, one line each", async () => {
  await withBackend(vxlan, async ({ kernel, backend, log }) => {
    await backend.handle([added(PEER)]);
    await settle(backend);
    const { dev } = peerState(kernel);
    const want = peerState(kernel);

    neighDel(kernel, { index: dev, ip: ip("10.5.2.0") });
    await until("neighbour put back", () => peerState(kernel).neighMAC === want.neighMAC);
    fdbDel(kernel, { index: dev, mac: mac("02:00:00:00:02:02") });
    await until("FDB entry put back", () => peerState(kernel).fdbs.length === 1);
    neighReplace(kernel, { index: dev, ip: ip("10.5.2.0"), mac: mac("02:66:66:66:66:66") });
    await until("neighbour MAC set back", () => peerState(kernel).neighMAC === want.neighMAC);
    routeDel(kernel, { dst: net("10.5.2.0/24") });
    await until("route put back", () => peerState(kernel).route);
    await settle(backend);

    assertEquals(peerState(kernel), want);
    const s = backend.stats();
    assertEquals([s.repairs, s.repairs_neigh, s.repairs_fdb, s.repairs_route], [4, 2, 1, 1]);
    assertEquals(log.count("repaired: neighbour 10.5.2.0 lladdr 02:00:00:00:02:02"), 2);
    assertEquals(log.count("repaired: fdb 02:00:00:00:02:02 dst 192.168.7.2"), 1);
    assertEquals(log.count("repaired: route 10.5.2.0/24 via 10.5.2.0"), 1);
    assertEquals(log.count("repaired:"), 4, "one line per repair");
    assert(log.count("repaired:", "trigger=netlink") === 4, "each repair followed a notification");
  });
});

Deno.test("vxlan: a deleted device is recreated with its MAC, and the peers' entries with it", async () => {
  await withBackend(vxlan, async ({ kernel, backend, log }) => {
    await backend.handle([added(PEER)]);
    await settle(backend);
    const before = linkByName(kernel, DEVICE)!;
    linkDel(kernel, before.index);
    await until("device recreated and programmed", () => {
      const l = linkByName(kernel, DEVICE);
      return l !== null && l.up && peerState(kernel).route;
    });
    await settle(backend);
    const after = linkByName(kernel, DEVICE)!;
    assert(after.index !== before.index, "a new device");
    assertEquals(formatMAC(after.mac!), formatMAC(before.mac!), "with the MAC peers know");
    assertEquals(peerState(kernel).fdbs, ["02:00:00:00:02:02 192.168.7.2"]);
    assertEquals(log.count(`repaired: recreated ${DEVICE} (deleted) with MAC`), 1);
    const s = backend.stats();
    assertEquals([s.repairs_device, s.repairs_address, s.repairs_link], [1, 1, 1]);
    assertEquals([s.repairs_neigh, s.repairs_fdb, s.repairs_route], [1, 1, 1]);
  });
});

Deno.test("vxlan: a new VtepMAC supersedes the old FDB entry; a removed lease takes its entries along", async () => {
  await withBackend(vxlan, async ({ kernel, backend, log }) => {
    await backend.handle([added(PEER)]);
    const moved = lease("10.5.2.0/24", "192.168.7.2", "vxlan", "02:00:00:00:02:03");
    await backend.handle([added(moved)]);
    const s = peerState(kernel);
    assertEquals([s.neighMAC, s.fdbs, s.route], [
      "02:00:00:00:02:03",
      ["02:00:00:00:02:03 192.168.7.2"],
      true,
    ]);

    await backend.handle([removed(moved)]);
    assertEquals(peerState(kernel), { dev: s.dev, neighMAC: null, fdbs: [], route: false });
    assertEquals(backend.stats().peers, 0);
    assertEquals(log.count("peer removed", "subnet=10.5.2.0/24"), 1);
    await settle(backend);
    assertEquals(peerState(kernel).route, false, "nothing brings a removed peer back");
  });
});

Deno.test("vxlan: stale neighbour, FDB entry and route stay until the first lease snapshot", async () => {
  const STALE_MAC = "02:00:00:00:77:77";
  await withBackend(vxlan, async ({ kernel, backend, log }) => {
    const dev = linkByName(kernel, DEVICE)!.index;
    // Left by a previous run for a host that has gone since.
    neighReplace(kernel, { index: dev, ip: ip("10.5.77.0"), mac: mac(STALE_MAC) });
    fdbReplace(kernel, { index: dev, mac: mac(STALE_MAC), dst: ip("192.168.7.77") });
    routeReplace(kernel, { dst: net("10.5.77.0/24"), gw: ip("10.5.77.0"), dev, onlink: true });
    await settle(backend);
    assert(backend.stats().reconciles >= 1, "the notifications brought a reconcile");
    assert(hasRoute(kernel, "10.5.77.0/24"), "no snapshot yet: the stale route stays");
    assertEquals(neighList(kernel, { index: dev }).length, 1);
    assertEquals(backend.stats().stale_removed, 0);

    await backend.handle([added(PEER)]);
    await settle(backend);
    assert(!hasRoute(kernel, "10.5.77.0/24"), "stale route removed after the snapshot");
    assertEquals(neighList(kernel, { index: dev }).map((n) => formatIP(n.ip)), ["10.5.2.0"]);
    assertEquals(peerState(kernel).fdbs, ["02:00:00:00:02:02 192.168.7.2"]);
    assertEquals(backend.stats().stale_removed, 3);
    assertEquals(log.count("removed stale:"), 3);
    assertEquals(log.count("startup cleanup done", "stale=3", "peers=1"), 1);
  });
});

// ----------------------------------------------------------------------- host-gw

const GW_PEER = lease("10.5.2.0/24", "192.168.7.2", "host-gw");
const viaPeer = (r: Route) => r.gw === ip("192.168.7.2");

Deno.test("host-gw: a deleted route is put back after the notification", async () => {
  await withBackend(hostGw, async ({ kernel, backend, ext, log }) => {
    await backend.handle([added(GW_PEER)]);
    assert(hasRoute(kernel, "10.5.2.0/24", (r) => viaPeer(r) && r.dev === ext.index));
    await settle(backend);
    routeDel(kernel, { dst: net("10.5.2.0/24") });
    await until("route put back", () => hasRoute(kernel, "10.5.2.0/24", viaPeer));
    await settle(backend);
    assertEquals([backend.stats().repairs, backend.stats().repairs_route], [1, 1]);
    assertEquals(log.count("repaired: route 10.5.2.0/24 via 192.168.7.2", "trigger=netlink"), 1);
  });
});

Deno.test("host-gw: stale routes go only after the first snapshot, once; other routes stay", async () => {
  const seed = ({ kernel, ext }: { kernel: MemoryKernel; ext: ExternalInterface }) => {
    const dev = ext.index;
    routeAdd(kernel, { dst: net("10.5.9.0/24"), gw: ip("192.168.7.9"), dev }); // stale
    routeAdd(kernel, { dst: net("172.16.0.0/16"), gw: ip("192.168.7.254"), dev }); // not ours
  };
  await withBackend(hostGw, async ({ kernel, backend, ext, log }) => {
    kernel.overrun(); // forces a resync, before any snapshot
    await until("reconciled", () => backend.stats().reconciles >= 1);
    await settle(backend);
    assert(hasRoute(kernel, "10.5.9.0/24"), "kept before the first snapshot");

    await backend.handle([]); // the first snapshot may well be empty
    await settle(backend);
    assert(!hasRoute(kernel, "10.5.9.0/24"), "removed after the snapshot");
    assert(hasRoute(kernel, "172.16.0.0/16"), "a route outside the Network is never touched");
    assert(hasRoute(kernel, "192.168.7.0/24"), "the connected route stays");
    assertEquals(backend.stats().stale_removed, 1);
    assertEquals(log.count("removed stale: route 10.5.9.0/24 via 192.168.7.9"), 1);

    // Cleanup runs once per start: later unknown routes in the Network are someone else's.
    routeAdd(kernel, { dst: net("10.5.10.0/24"), gw: ip("192.168.7.10"), dev: ext.index });
    await settle(backend);
    assert(hasRoute(kernel, "10.5.10.0/24"));
    assertEquals(backend.stats().stale_removed, 1);
  }, seed);
});

Deno.test("host-gw: without any snapshot, stale routes go after one full period", async () => {
  await withBackend((c) => hostGw(c, 0.2), async ({ kernel, backend, log }) => {
    kernel.overrun();
    await until("reconciled on the notification", () => backend.stats().reconciles >= 1);
    assert(hasRoute(kernel, "10.5.9.0/24"), "kept by the reconcile before the first period");
    await until("periodic cleanup", () => !hasRoute(kernel, "10.5.9.0/24"), 5000, 20);
    assertEquals(log.count("removed stale: route 10.5.9.0/24", "trigger=periodic"), 1);
  }, ({ kernel, ext }) => {
    routeAdd(kernel, { dst: net("10.5.9.0/24"), gw: ip("192.168.7.9"), dev: ext.index });
  });
});

Deno.test("host-gw: leases of another backend type are ignored, logged once, and drop what they replace", async () => {
  await withBackend(hostGw, async ({ kernel, backend, log }) => {
    const foreign = lease("10.5.3.0/24", "192.168.7.3", "vxlan", "02:00:00:00:03:03");
    await backend.handle([added(foreign)]);
    await backend.handle([added(foreign)]);
    assert(!hasRoute(kernel, "10.5.3.0/24"), "not routed");
    assertEquals(backend.stats().ignored_leases, 2);
    assertEquals(log.count("ignoring lease of another backend type", "subnet=10.5.3.0/24"), 1);

    await backend.handle([added(GW_PEER)]);
    assert(hasRoute(kernel, "10.5.2.0/24", viaPeer));
    await backend.handle([added(lease("10.5.2.0/24", "192.168.7.2", ""))]); // a udp lease
    assert(!hasRoute(kernel, "10.5.2.0/24"), "a lease turned foreign loses its route");
    assertEquals(backend.stats().peers, 0);
    assertEquals(log.count("ignoring lease of another backend type", "backend=(none)"), 1);
  });
});

Deno.test("host-gw: a refused write is logged and counted, and the next reconcile installs it", async () => {
  await withBackend(hostGw, async ({ kernel, backend, log }) => {
    kernel.failNext(RTM_NEWROUTE, "ENETUNREACH");
    await backend.handle([added(GW_PEER)]);
    assert(!hasRoute(kernel, "10.5.2.0/24"));
    assertEquals(backend.stats().errors, 1);
    assertEquals(log.count("failed to program peer", "ENETUNREACH"), 1);
    await until("installed by the reconcile", () => hasRoute(kernel, "10.5.2.0/24", viaPeer));
    assertEquals(backend.stats().repairs_route, 1);
  });
});

// ---------------------------------------------------------------- the engine alone

const silent: Logger = { error() {}, warn() {}, info() {}, debug() {} };

/** The engine with a host-gw-like data path on `dev`, checking periodically only hourly. */
function engineOn(kernel: MemoryKernel, dev: number, debounceMs: number): PeerReconciler {
  const dp = routeOnlyPath(dev);
  return new PeerReconciler({ nl: kernel, notifications: kernel }, dp, silent, {
    intervalSeconds: 3600,
    debounceMs,
  });
}

async function withEngine(
  debounceMs: number,
  fn: (e: { kernel: MemoryKernel; engine: PeerReconciler; dev: number }) => Promise<void>,
): Promise<void> {
  const { kernel, ext } = hostKernel();
  const engine = engineOn(kernel, ext.index, debounceMs);
  engine.start();
  try {
    engine.handle([]);
    await until("first reconcile", () => engine.stats().reconciles === 1);
    await fn({ kernel, engine, dev: ext.index });
  } finally {
    engine.stop();
  }
}

Deno.test("engine: only notifications that may concern our entries bring a reconcile", async () => {
  await withEngine(DEBOUNCE_MS, async ({ kernel, engine, dev }) => {
    const reconciles = () => engine.stats().reconciles;
    routeAdd(kernel, { dst: net("172.16.0.0/16"), gw: ip("192.168.7.254"), dev });
    const other = kernel.addLink({ name: "dummy0" });
    neighReplace(kernel, { index: other.index, ip: ip("10.9.9.9"), mac: mac("02:09:09:09:09:09") });
    await sleep(10 * DEBOUNCE_MS);
    assertEquals(reconciles(), 1, "foreign route, device and neighbour: nothing to check");

    neighReplace(kernel, { index: dev, ip: ip("192.168.7.5"), mac: mac("02:05:05:05:05:05") });
    await until("a neighbour on our device", () => reconciles() === 2);
    routeAdd(kernel, { dst: net("10.5.99.0/24"), gw: ip("192.168.7.99"), dev });
    await until("a route inside the Network", () => reconciles() === 3);
    kernel.overrun();
    await until("lost notifications: resync", () => reconciles() === 4);
    await sleep(10 * DEBOUNCE_MS);
    assertEquals(reconciles(), 4, "one reconcile each");
  });
});

Deno.test("engine: a burst of notifications gives few reconciles, and one while it lasts", async () => {
  const debounceMs = 20;
  await withEngine(debounceMs, async ({ kernel, engine, dev }) => {
    const reconciles = () => engine.stats().reconciles - 1; // the first was the snapshot's
    const route = { dst: net("10.5.200.0/24"), gw: ip("192.168.7.200"), dev };
    // One notification every 10 ms, never quiet for a debounce period: the burst lasts
    // three times the longest a reconcile may be put off (10 debounce periods).
    const notifications = 60;
    const t0 = Date.now();
    let first = -1;
    for (let i = 0; i < notifications; i++) {
      if (i % 2 === 0) routeAdd(kernel, route);
      else routeDel(kernel, route);
      await sleep(debounceMs / 2);
      if (first < 0 && reconciles() > 0) first = Date.now() - t0;
    }
    const burstMs = Date.now() - t0;
    await sleep(5 * debounceMs);
    const n = reconciles();
    console.log(
      `  ${notifications} notifications over ${burstMs} ms → ${n} reconciles, the first after ${first} ms`,
    );
    assert(first >= 0, "a reconcile came while the burst went on");
    // One per 10 debounce periods and one after; a busy machine's pauses add a few more.
    assert(n <= notifications / 4, `${n} reconciles for ${notifications} notifications`);
  });
});
