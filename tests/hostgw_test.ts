/**
 * The host-gw backend end to end in a namespace cluster (root only): connectivity, a bulk
 * transfer, kernel state (a lease without BackendData, MTU 1500, no device, one route per
 * peer subnet via the peer's public IP on eth0), route repair, restarts without loss, hosts
 * joining and leaving, foreign lease types, and the NAT refusal.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { equalNet, formatIP4, formatNet4, type IP4Net, parseIP4 } from "../lib/core/ip.ts";
import { Cluster, type Host } from "./helpers/cluster.ts";
import { Daemon, DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import {
  assertAllAnswered,
  basicSteps,
  checkForeignLeaseIgnored,
  execOk,
  hostKernel,
  hostSubnet,
  joinAndLeave,
  logCount,
  rawLease,
  reaches,
  restartUnderPing,
} from "./helpers/peer_datapath.ts";
import { timeUntil, until } from "./helpers/wait.ts";
import { ROOT_TEST } from "./helpers/netns.ts";

const opts = ROOT_TEST;

/** Whether host `h` routes `sn` via `peerIP` on eth0 (checked through our netlink layer). */
function routesVia(h: Host, sn: IP4Net, peerIP: string): boolean {
  const k = hostKernel(h.ns, "eth0");
  return k.routes.some((r) =>
    equalNet(r.dst, sn) && r.gw === parseIP4(peerIP) && r.dev === k.link!.index
  );
}

/** Checks host `h`'s lease, MTU and routes with our netlink layer and with iproute2. */
async function checkKernelState(c: Cluster, h: Host): Promise<void> {
  assertEquals(
    await rawLease(c, h),
    `{"PublicIP":"${h.ip}","PublicIPv6":null,"BackendType":"host-gw"}`,
  );
  assertEquals(c.hostSubnetEnv(h)!.FLANNEL_MTU, "1500");
  assertEquals(hostKernel(h.ns, "flannel.1").link, null, "no device");
  const routes = await execOk(c, h.ns, ["ip", "route"]);
  for (const p of c.hosts.filter((x) => x !== h)) {
    const sn = hostSubnet(c, p);
    assert(routesVia(h, sn, p.ip), `${h.name}: no route for ${p.name}`);
    assertMatch(routes, new RegExp(`^${formatNet4(sn)} via ${p.ip} dev eth0 *$`, "m"));
  }
}

Deno.test({ name: "host-gw: 3 hosts × 2 containers through our daemon", ...opts }, async (t) => {
  await using c = await Cluster.create({ hosts: 3, containersPerHost: 2, backend: "host-gw" });
  const [h0, h1, h2] = c.hosts;
  const [a, b] = [h0.containers[0], h1.containers[1]];

  await basicSteps(t, c, "lease, MTU, one route per peer", (h) => checkKernelState(c, h), a, b);

  await t.step("deleted or altered routes are repaired", async () => {
    const sn = hostSubnet(c, h1);
    const before = logCount(c, h0, "repaired:");
    for (
      const [what, cmd] of [
        ["deleted", ["ip", "route", "del", formatNet4(sn)]],
        ["altered", ["ip", "route", "replace", formatNet4(sn), "via", h2.ip, "dev", "eth0"]],
      ] as const
    ) {
      await execOk(c, h0.ns, [...cmd]);
      const ms = await timeUntil(`route ${what} repaired`, () => routesVia(h0, sn, h1.ip), 15_000);
      const pingMs = await timeUntil("ping after repair", () => reaches(a, b), 15_000);
      console.log(`  route ${what}: repaired in ${ms} ms, ping ok after ${ms + pingMs} ms`);
    }
    assert(logCount(c, h0, "repaired:") >= before + 2, "one log line per repair");
  });

  await t.step("restart under ping: stale routes cleaned, no loss beyond 1 s", async () => {
    const stale = { ip: parseIP4("10.5.251.0")!, prefix: 24 };
    await execOk(c, h0.ns, [
      "ip",
      "route",
      "add",
      formatNet4(stale),
      "via",
      "192.168.100.250",
      "dev",
      "eth0",
    ]);
    await restartUnderPing(c, [h0, h1], a, b);
    await until(
      "stale route removed",
      () => !hostKernel(h0.ns, "eth0").routes.some((r) => equalNet(r.dst, stale)),
      15_000,
    );
    await checkKernelState(c, h0);
  });

  await t.step("a host joining later becomes reachable; a leaving one is cleaned up", async () => {
    await joinAndLeave(
      c,
      a,
      (h, sn) => !hostKernel(h.ns, "eth0").routes.some((r) => equalNet(r.dst, sn)),
      (h) => checkKernelState(c, h),
    );
  });

  await t.step("leases of another BackendType are ignored and logged once", async () => {
    await checkForeignLeaseIgnored(c, "vxlan");
    assertAllAnswered(await c.pingAll({ count: 1 }));
  });

  await t.step("refuses to start behind NAT (public IP ≠ interface IP)", async () => {
    const dir = `${h2.dir}/nat`;
    await Deno.mkdir(dir, { recursive: true });
    const d = new Daemon(
      h2.ns,
      DEFAULT_DAEMON_COMMAND,
      [
        `--etcd-endpoints=${c.etcd.endpoint}`,
        `--subnet-file=${dir}/subnet.env`,
        "--iface=eth0",
        "--public-ip=203.0.113.7",
      ],
      `${dir}/subnet.env`,
      `${dir}/daemon.log`,
    );
    d.start();
    const status = await d.waitExit(20_000).finally(() => d.stop("SIGKILL"));
    assertEquals(status.code, 1, d.log());
    assertMatch(d.log(), /probably you're on a NAT/);
    assert(!(await c.leases()).some((l) => l.value.PublicIP === "203.0.113.7"), "no lease taken");
    assertEquals(formatIP4(hostSubnet(c, h2).ip).startsWith("10.5."), true);
  });
});
