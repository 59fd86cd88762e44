/**
 * The shared reconcile engine against a real kernel, in a throw-away namespace (root only):
 * stale entries survive until the first lease snapshot, the periodic check alone (netlink
 * watch off) repairs a deleted route, removed and foreign leases, and the fallback cleanup
 * when no snapshot ever arrives.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { linkByName, NetlinkSocket, routeList } from "../ffi/netlink/mod.ts";
import { routeOnlyPath } from "./helpers/peer_fixture.ts";
import { PeerReconciler } from "../lib/backend/reconcile.ts";
import { equalNet, type IP4Net, parseCIDR4, parseIP4 } from "../lib/core/ip.ts";
import type { Lease } from "../lib/values/lease.ts";
import { logger } from "../lib/core/log.ts";
import { createTestNetns, inNetns } from "./helpers/netlink_ns.ts";
import { ip, isRoot, run } from "./helpers/netns.ts";
import { sleep, timeUntil, until } from "./helpers/wait.ts";

const net = (s: string): IP4Net => parseCIDR4(s)!;

function lease(subnet: string, peer: string, backendType = "test"): Lease {
  return {
    subnet: net(subnet),
    attrs: { publicIP: parseIP4(peer)!, publicIPv6: null, backendType },
  };
}

/** A host-gw-like data path over `veth0` in namespace `ns`, checked every second. */
function engineIn(ns: string): { engine: PeerReconciler; routed: (s: string) => boolean } {
  return inNetns(ns, () => {
    const nl = NetlinkSocket.open();
    const dev = linkByName(nl, "veth0")!.index;
    const dp = routeOnlyPath(dev, false);
    // No notifications: only the periodic check can repair.
    const engine = new PeerReconciler({ nl, notifications: null }, dp, logger("test"), {
      intervalSeconds: 1,
    });
    engine.start();
    const routed = (s: string) => routeList(nl).some((r) => equalNet(r.dst, net(s)));
    return { engine, routed };
  });
}

async function withVethNetns(fn: (ns: string) => Promise<void>): Promise<void> {
  const ns = await createTestNetns();
  try {
    await ip(ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1");
    await ip(ns, "link", "set", "veth1", "up");
    await ip(ns, "addr", "add", "192.168.7.1/24", "dev", "veth0");
    await ip(ns, "link", "set", "veth0", "up");
    await ip(ns, "route", "add", "10.5.9.0/24", "via", "192.168.7.9", "dev", "veth0");
    await fn(ns);
  } finally {
    await run("ip", ["netns", "delete", ns]);
  }
}

Deno.test({
  name: "reconcile: cleanup after the snapshot, periodic repair, removal",
  ignore: !isRoot,
}, async () => {
  await withVethNetns(async (ns) => {
    const { engine, routed } = engineIn(ns);
    try {
      assertEquals(
        engine.reconcile("manual"),
        0,
        "nothing wanted, nothing stale before a snapshot",
      );
      assert(routed("10.5.9.0/24"), "stale route kept until the first snapshot");

      engine.handle([{ type: "added", lease: lease("10.5.2.0/24", "192.168.7.2") }]);
      assert(routed("10.5.2.0/24"));
      engine.reconcile("manual");
      assert(!routed("10.5.9.0/24"), "stale route removed after the snapshot");
      assertEquals(engine.stats().stale_removed, 1);

      await sleep(300); // past the reconcile that handle() schedules: the periodic check repairs
      await ip(ns, "route", "del", "10.5.2.0/24");
      const ms = await timeUntil("periodic repair", () => routed("10.5.2.0/24"), 3000);
      console.log(`  periodic check (1 s) restored the route after ${ms} ms`);
      assertEquals(engine.stats().repairs_route, 1);

      engine.handle([{ type: "added", lease: lease("10.5.3.0/24", "192.168.7.3", "vxlan") }]);
      engine.handle([{ type: "added", lease: lease("10.5.3.0/24", "192.168.7.3", "vxlan") }]);
      assert(!routed("10.5.3.0/24"), "foreign lease type not routed");
      assertEquals(engine.stats().ignored_leases, 2);

      engine.handle([{ type: "removed", lease: lease("10.5.2.0/24", "192.168.7.2") }]);
      assert(!routed("10.5.2.0/24"));
      assertEquals(engine.stats().peers, 0);
    } finally {
      engine.stop();
    }
  });
});

Deno.test(
  { name: "reconcile: without any snapshot, cleanup waits one period", ignore: !isRoot },
  async () => {
    await withVethNetns(async (ns) => {
      const { engine, routed } = engineIn(ns);
      try {
        engine.reconcile("manual");
        assert(routed("10.5.9.0/24"));
        await until("fallback cleanup", () => !routed("10.5.9.0/24"), 3000);
      } finally {
        engine.stop();
      }
    });
  },
);
