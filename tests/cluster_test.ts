/**
 * The namespace cluster harness itself: topology, underlay reachability, etcd from the
 * hosts, cni0 and containers from a subnet, and complete teardown (root only).
 */

import { until } from "./helpers/wait.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { Cluster, CONFIG_KEY, UNDERLAY } from "./helpers/cluster.ts";
import { cleanupStale } from "./helpers/cleanup.ts";
import { addNetns, isRoot, listNetns, run } from "./helpers/netns.ts";
import { MARKER_DIR } from "./helpers/owner.ts";

/** Namespaces and marker files of run `prefix` that still exist. */
function runLeftovers(prefix: string): string[] {
  return [
    ...listNetns().filter((n) => n.startsWith(prefix)),
    ...[...Deno.readDirSync(MARKER_DIR)].map((e) => e.name).filter((n) => n.startsWith(prefix)),
  ];
}

Deno.test(
  { name: "cluster: topology without daemons, then complete teardown", ignore: !isRoot },
  async () => {
    const c = await Cluster.create({
      hosts: 2,
      containersPerHost: 2,
      backend: "alloc",
      startDaemons: false,
    });
    const { prefix, dir } = c;
    try {
      const want = ["sw", "etcd", "h0", "h1", "h0c0", "h0c1", "h1c0", "h1c1"].map((s) =>
        `${prefix}-${s}`
      );
      assertEquals(listNetns().filter((n) => n.startsWith(prefix)).sort(), want.sort());
      assert(prefix.length <= 15, "prefix fits an interface name");

      // Underlay: hosts reach each other, etcd and the gateway; the switch routes nowhere.
      for (
        const [from, to] of [["h0", UNDERLAY.host(1)], ["h1", UNDERLAY.etcd], [
          "h0",
          UNDERLAY.gateway,
        ]]
      ) {
        const r = await c.ping(c.host(from).ns, to, { count: 1 });
        assert(r.ok, `${from} → ${to}: ${r.output}`);
      }
      assertEquals(
        (await c.exec(c.switchNs, "cat", "/proc/sys/net/ipv4/ip_forward")).stdout.trim(),
        "0",
      );
      assertEquals(
        (await c.exec(c.host(0).ns, "cat", "/proc/sys/net/ipv4/ip_forward")).stdout.trim(),
        "1",
      );

      // etcd answers from a host namespace and holds the config.
      const got = await c.exec(
        c.host(1).ns,
        "etcdctl",
        `--endpoints=${c.etcd.endpoint}`,
        "get",
        CONFIG_KEY,
      );
      assertEquals(got.code, 0, got.stderr);
      assertEquals(JSON.parse(got.stdout.split("\n")[1]), {
        Network: "10.5.0.0/16",
        Backend: { Type: "alloc" },
      });

      // cni0 and containers from a (fake) subnet.env.
      await c.configureHostSubnet("h0", "10.5.1.1/24", 1472);
      await c.configureHostSubnet(1, "10.5.2.1/24", 1472);
      assertEquals(c.containers().map((x) => x.ip), [
        "10.5.1.2",
        "10.5.1.3",
        "10.5.2.2",
        "10.5.2.3",
      ]);
      const cni = (await c.exec(c.host(0).ns, "ip", "-o", "addr", "show", "dev", "cni0")).stdout;
      assertMatch(cni, /inet 10\.5\.1\.1\/24/);
      const eth0 =
        (await c.exec(c.containers()[0].ns, "ip", "-o", "link", "show", "dev", "eth0")).stdout;
      assertMatch(eth0, /mtu 1472/);
      for (const ct of c.containers()) {
        const gw = ct.ip!.replace(/\d+$/, "1");
        const r = await c.ping(ct.ns, gw, { count: 1 });
        assert(r.ok, `${ct.name} → ${gw}: ${r.output}`);
      }
      const sibling = await c.ping(c.containers()[0].ns, "10.5.1.3", { count: 1 });
      assert(sibling.ok, sibling.output);
      // Without a data path, cross-host container traffic must not get through.
      const cross = await c.ping(c.containers()[0].ns, "10.5.2.2", { count: 1, timeout: 1 });
      assert(!cross.ok, "cross-host ping succeeded without any daemon");

      // A renumbered host moves its containers.
      await c.configureHostSubnet("h1", "10.5.7.1/24");
      assertEquals(c.host("h1").containers.map((x) => x.ip), ["10.5.7.2", "10.5.7.3"]);
    } finally {
      await c.destroy();
    }
    assertEquals(runLeftovers(prefix), []);
    assert(!(await Deno.stat(dir).then(() => true, () => false)), "temp dir removed");
    assertEquals((await run("ip", ["-o", "link"])).stdout.includes(prefix), false);
  },
);

Deno.test(
  { name: "cleanup: removes namespaces of dead owners only", ignore: !isRoot },
  async () => {
    // A pid that is certainly unused (above the kernel's pid_max), distinct per parallel run.
    const dead = `flbeef-${4194304 + Deno.pid}-sw`;
    const live = `flbeef-${Deno.pid}-sw`;
    await addNetns(dead);
    await addNetns(live);
    try {
      // Checked by what remains: a parallel run's cleanup may get there first.
      cleanupStale();
      assertEquals(listNetns().includes(dead), false);
      assert(listNetns().includes(live));
    } finally {
      await run("ip", ["netns", "delete", dead]);
      await run("ip", ["netns", "delete", live]);
    }
  },
);

Deno.test({
  name: "cluster: alloc daemons lease distinct subnets and write subnet.env",
  ignore: !isRoot,
}, async () => {
  await using c = await Cluster.create({ hosts: 2, containersPerHost: 1, backend: "alloc" });
  await c.addHost();
  const leases = await c.leases();
  assertEquals(leases.length, 3);
  assertEquals(new Set(leases.map((l) => l.key)).size, 3);
  for (const h of c.hosts) {
    const env = c.hostSubnetEnv(h)!;
    assertEquals(env.FLANNEL_NETWORK, "10.5.0.0/16");
    assertMatch(env.FLANNEL_SUBNET, /^10\.5\.\d+\.1\/24$/);
    const key = `/coreos.com/network/subnets/${env.FLANNEL_SUBNET.replace(".1/", ".0-")}`;
    const lease = leases.find((l) => l.key === key);
    assert(lease, `no lease ${key} for ${h.name}; leases: ${leases.map((l) => l.key)}`);
    assertEquals(lease.value.PublicIP, h.ip);
    const ct = h.containers[0];
    const r = await c.ping(ct.ns, env.FLANNEL_SUBNET.split("/")[0], { count: 1 });
    assert(r.ok, `${ct.name} → its cni0: ${r.output}`);
  }
  // Each daemon follows the others: the first host saw the late joiner's lease arrive.
  const joiner = c.hostSubnetEnv(2)!.FLANNEL_SUBNET.replace(".1/", ".0/");
  await until(
    "h0 follows the joiner",
    () => c.daemonLog(0).includes(`lease added subnet=${joiner} peer=${c.host(2).ip}`),
  );
  // A restarted daemon rewrites subnet.env with the same subnet.
  const before = c.hostSubnetEnv(0)!.FLANNEL_SUBNET;
  assertEquals((await c.restartDaemon(0)).FLANNEL_SUBNET, before, c.daemonLog(0));
});
