/**
 * `--ip-blackhole-route` in the namespace cluster (vxlan, 2 hosts; h1 with the flag, h0
 * without): the route for h1's own subnet is in the kernel as iproute2 shows it, the bridge's
 * route keeps precedence while it exists, traffic to the subnet without a bridge is dropped
 * on h1 where h0 sends it to the underlay's gateway, a deleted route is put back within the
 * resync period, and when h1's subnet changes the old route goes and the new one comes.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { Cluster, UNDERLAY } from "./helpers/cluster.ts";
import { ip, nsExec, ROOT_TEST } from "./helpers/netns.ts";
import { hostSubnet, leaseKey } from "./helpers/peer_datapath.ts";
import { until } from "./helpers/wait.ts";
import { formatIP4, formatNet4 } from "../lib/core/ip.ts";
import { BLACKHOLE_METRIC } from "../lib/backend/blackhole.ts";

const blackholes = async (ns: string) =>
  (await ip(ns, "route", "show", "type", "blackhole")).trim();

/**
 * `ip route get` of an address, as one line. For a blackhole route the kernel answers the
 * lookup with EINVAL, which iproute2 prints as "RTNETLINK answers: Invalid argument".
 */
const routeGet = async (ns: string, addr: string) => {
  const r = await nsExec(ns, "ip", ["route", "get", addr]);
  return (r.code === 0 ? r.stdout : r.stderr).split("\n")[0].trim();
};

Deno.test({
  name: "ip-blackhole-route: in place, behind the bridge's route, repaired, moved with the subnet",
  ...ROOT_TEST,
}, async () => {
  await using c = await Cluster.create({
    hosts: 2,
    containersPerHost: 1,
    backend: "vxlan",
    daemonArgs: (h) => h === "h1" ? ["--ip-blackhole-route", "--iptables-resync=1"] : [],
  });
  const [h0, h1] = c.hosts;
  const sn1 = hostSubnet(c, h1);
  const sn0 = hostSubnet(c, h0);
  const addr = (sn: typeof sn1, n: number) => formatIP4(sn.ip + n);

  // As iproute2 shows it; RTPROT_BOOT prints no "proto", as upstream's routes.
  assertEquals(await blackholes(h1.ns), `blackhole ${formatNet4(sn1)} metric ${BLACKHOLE_METRIC}`);
  assertEquals(await blackholes(h0.ns), "", "h0 runs without the flag");

  // The bridge's route (metric 0) wins: containers and unassigned addresses stay on cni0.
  assertMatch(await routeGet(h1.ns, addr(sn1, 2)), /dev cni0/);
  assertMatch(await routeGet(h1.ns, addr(sn1, 77)), /dev cni0/);
  assert(
    (await c.ping(h0.containers[0].ns, h1.containers[0].ip!, { count: 2 })).ok,
    "containers reach each other across the blackholed subnet",
  );

  // Without the bridge's address, traffic to the subnet leaks to the gateway on h0 and is
  // dropped on h1.
  for (const h of [h0, h1]) {
    const sn = h === h0 ? sn0 : sn1;
    assertEquals((await nsExec(h.ns, "ip", ["addr", "flush", "dev", "cni0"])).code, 0);
    const got = await routeGet(h.ns, addr(sn, 77));
    if (h === h1) assertEquals(got, "RTNETLINK answers: Invalid argument");
    else assertMatch(got, new RegExp(`via ${UNDERLAY.gateway.replaceAll(".", "\\.")} dev eth0`));
  }

  // Deleted: back within the resync period (1 s here).
  const del = await nsExec(h1.ns, "ip", [
    "route",
    "del",
    "blackhole",
    formatNet4(sn1),
    "metric",
    String(BLACKHOLE_METRIC),
  ]);
  assertEquals(del.code, 0, del.stderr);
  const t0 = Date.now();
  await until("the blackhole route back", async () => (await blackholes(h1.ns)) !== "", 5000, 100);
  console.log(`blackhole route deleted on h1: back after ${Date.now() - t0} ms`);
  assert(c.daemonLog(h1).includes("repaired: blackhole route was missing"), c.daemonLog(h1));

  // Another host takes h1's key: h1 moves to a new subnet, and its blackhole route with it.
  await c.etcd.ctl("put", leaseKey(sn1), `{"PublicIP":"${UNDERLAY.host(7)}","PublicIPv6":null}`);
  const moved = await until(
    "h1's new subnet.env",
    () => {
      const env = c.hostSubnetEnv(h1);
      return env && !env.FLANNEL_SUBNET.startsWith(formatIP4(sn1.ip + 1)) && env;
    },
    20_000,
    100,
  );
  const sn1b = hostSubnet(c, h1);
  await until(
    "the blackhole route on the new subnet only",
    async () =>
      (await blackholes(h1.ns)) === `blackhole ${formatNet4(sn1b)} metric ${BLACKHOLE_METRIC}`,
    5000,
    100,
  );
  console.log(`h1 moved ${formatNet4(sn1)} → ${moved.FLANNEL_SUBNET}: blackhole route moved`);
});
