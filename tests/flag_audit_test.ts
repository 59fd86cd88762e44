/**
 * Flags whose effect no other test shows through the daemon's command line: interface
 * selection by regex and by reachability (each host has a second interface, `dummy0`, that
 * only the flag can pick), `--reconcile-interval`, `--ip-masq-fully-random-disable` and
 * `--iptables-forward-rules=false`; and the vxlan and udp options a config can set. (TLS flags and `--etcd-prefix`: etcd_security_test;
 * `--subnet-lease-renew-margin`: the unit test of when renewal is due.)
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { Cluster, type Host } from "./helpers/cluster.ts";
import { scrapeMetrics } from "./helpers/health_http.ts";
import { must, nsExec, ROOT_TEST } from "./helpers/netns.ts";
import { metricValue } from "./helpers/prometheus.ts";
import { assertAllAnswered, rawLease } from "./helpers/peer_datapath.ts";
import { sleep } from "./helpers/wait.ts";

const HEALTH_PORT = 9182;
const DUMMY = (h: Host) => `172.31.${h.index}.${10 + h.index}`;

Deno.test({
  name: "flags through the daemon: iface-regex, iface-can-reach, reconcile-interval, rule flags",
  ...ROOT_TEST,
}, async () => {
  await using c = await Cluster.create({
    hosts: 2,
    backend: "vxlan",
    startDaemons: false,
    daemonArgs: (h) =>
      h === "h0"
        ? [
          "--iface-regex=^172\\.31\\.0\\.",
          `--healthz-port=${HEALTH_PORT}`,
          "--reconcile-interval=1",
        ]
        : [
          "--iface-can-reach=172.31.1.99",
          "--ip-masq",
          "--ip-masq-fully-random-disable",
          "--iptables-forward-rules=false",
        ],
  });
  for (const h of c.hosts) {
    for (
      const argv of [
        // A veth pair inside the host: an interface leading nowhere (no dummy module here).
        ["link", "add", "dummy0", "type", "veth", "peer", "name", "dummy0p"],
        ["addr", "add", `${DUMMY(h)}/24`, "dev", "dummy0"],
        ["link", "set", "dummy0p", "up"],
        ["link", "set", "dummy0", "up"],
      ]
    ) must(await nsExec(h.ns, "ip", argv), `ip ${argv.join(" ")}`);
    await c.startDaemon(h);
  }
  const [h0, h1] = c.hosts;

  // Interface selection: without the flags each host would pick eth0 (its default route).
  for (const h of c.hosts) {
    assertEquals(JSON.parse(await rawLease(c, h)).PublicIP, DUMMY(h), `${h.name}'s lease`);
    const dev = must(await nsExec(h.ns, "ip", ["-d", "link", "show", "flannel.1"]), "ip link");
    assert(dev.includes(`local ${DUMMY(h)} dev dummy0`), dev);
  }

  // --reconcile-interval=1: the full comparison runs every second, with nothing to trigger it.
  const reconciles = async () =>
    metricValue(await scrapeMetrics(h0, HEALTH_PORT), "flannel_backend_reconciles_total") ?? 0;
  const r0 = await reconciles();
  await sleep(3500); // three and a half intervals of quiet
  const r1 = await reconciles();
  assert(r1 - r0 >= 3 && r1 - r0 <= 5, `reconciles in 3.5 s at 1 s: ${r1 - r0}`);

  // Rule flags: MASQUERADE without --random-fully, no FORWARD rules of ours.
  const nat = must(await nsExec(h1.ns, "iptables-save", ["-t", "nat"]), "iptables-save nat");
  const masq = nat.split("\n").filter((l) => l.includes("-j MASQUERADE"));
  assertEquals(masq.length, 2, nat);
  assert(masq.every((l) => !l.includes("--random-fully")), masq.join("\n"));
  const filter = must(await nsExec(h1.ns, "iptables-save", ["-t", "filter"]), "iptables-save");
  assert(!filter.includes("FLANNEL-FWD"), filter);
  const filter0 = must(await nsExec(h0.ns, "iptables-save", ["-t", "filter"]), "iptables-save");
  assert(
    filter0.includes('-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD'),
    filter0,
  );
});

Deno.test({
  name: "backend options through the daemon: vxlan VNI, Port, MTU, Learning, GBP; udp Port",
  ...ROOT_TEST,
}, async (t) => {
  await t.step("vxlan", async () => {
    await using c = await Cluster.create({
      hosts: 2,
      containersPerHost: 1,
      backend: "vxlan",
      config: {
        Backend: { Type: "vxlan", VNI: 42, Port: 4789, MTU: 1400, Learning: true, GBP: true },
      },
    });
    for (const h of c.hosts) {
      const dev = must(await nsExec(h.ns, "ip", ["-d", "link", "show", "flannel.42"]), "ip link");
      for (const want of ["mtu 1350", "vxlan id 42", "dstport 4789", " gbp "]) {
        assert(dev.includes(want), `${h.name}: "${want}" in\n${dev}`);
      }
      // iproute2 says "nolearning" when it is off (our default), nothing when it is on.
      assert(!dev.includes("nolearning"), `${h.name}: learning on\n${dev}`);
      assertEquals(c.hostSubnetEnv(h)!.FLANNEL_MTU, "1350", "MTU − 50");
      assertEquals(JSON.parse(await rawLease(c, h)).BackendData.VNI, 42);
    }
    assertAllAnswered(await c.pingAll({ count: 1 }));
  });
  await t.step("udp", async () => {
    await using c = await Cluster.create({
      hosts: 2,
      containersPerHost: 1,
      backend: "udp",
      config: { Backend: { Type: "udp", Port: 9999 } },
    });
    for (const h of c.hosts) {
      const ss = must(await nsExec(h.ns, "ss", ["-ulnH"]), "ss");
      assert(ss.includes(`${h.ip}:9999`), `${h.name} listens on 9999:\n${ss}`);
    }
    assertAllAnswered(await c.pingAll({ count: 1 }));
  });
});
