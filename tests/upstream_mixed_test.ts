/**
 * Upstream's flanneld v0.20.2 beside ours in one cluster (root; skipped with one line when
 * `../shared/upstream/flanneld-v0.20.2` is absent). For each backend, with upstream on
 * the first host and on the second, started in the same instant and staggered by 2 s:
 * the leases in etcd are byte-identical but for each host's own address and VTEP MAC,
 * with the same TTL, and so is subnet.env; each side programs the other's lease; every
 * pair pings; 10 MB cross intact both ways; after one side restarts, all of it again.
 *
 * Started in the same instant, upstream may miss our lease for good (its watch race, see
 * `helpers/mixed.ts`). That is upstream's defect, so the test asserts what must hold for
 * our side (our daemon programs upstream's lease: our container's echoes reach upstream's
 * container) and that the miss has the race's signature (our lease created after
 * upstream's own), says so in one line, and expects the restart to repair it. Our daemon
 * starts ~1 s later than the Go binary, so the race rarely hits a mixed pair.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { type BackendType, Cluster, type Host } from "./helpers/cluster.ts";
import {
  type LeaseRecord,
  leaseRecord,
  leaseShape,
  putInOneTxn,
  subnetEnvShape,
} from "./helpers/mixed.ts";
import { assertAllAnswered, reaches, tcpTransfer } from "./helpers/peer_datapath.ts";
import { ping } from "./helpers/ping.ts";
import { echoSource } from "./helpers/tcpdump.ts";
import { UPSTREAM_PRESENT, UPSTREAM_SKIP } from "./helpers/upstream.ts";
import { sleep, until } from "./helpers/wait.ts";
import { isRoot, ROOT_TEST, run } from "./helpers/netns.ts";

if (isRoot && !UPSTREAM_PRESENT) console.log(UPSTREAM_SKIP);

/** MAC of `dev` inside namespace `ns`. */
async function mac(ns: string, dev: string): Promise<string> {
  const out = (await run("ip", ["-n", ns, "-o", "link", "show", "dev", dev])).stdout;
  const m = /link\/ether (\S+)/.exec(out);
  if (!m) throw new Error(`no ${dev} in ${ns}: ${out}`);
  return m[1];
}

/** Checks each lease's own values, then that both are alike byte for byte. */
async function checkLeases(c: Cluster, backend: BackendType): Promise<LeaseRecord[]> {
  const recs = await Promise.all(c.hosts.map((h) => leaseRecord(c, h)));
  for (const r of recs) {
    console.log(`  ${r.host.name} (${r.host.flavour}): ${r.key} = ${r.value} ttl ${r.grantedTtl}`);
    assert(/^\/coreos\.com\/network\/subnets\/10\.5\.\d+\.0-24$/.test(r.key), r.key);
    assert(r.value.includes(`"PublicIP":"${r.host.ip}"`), `${r.host.name}'s PublicIP`);
    if (backend === "vxlan") {
      const vtep = await mac(r.host.ns, "flannel.1");
      assert(r.value.includes(`"VtepMAC":"${vtep}"`), `${r.host.name}'s VtepMAC is ${vtep}`);
    }
  }
  const [a, b] = recs;
  assertEquals(leaseShape(a.value), leaseShape(b.value), "lease values alike byte for byte");
  assertEquals(a.grantedTtl, 86400);
  assertEquals(b.grantedTtl, a.grantedTtl, "same lease TTL");
  const envs = await Promise.all(c.hosts.map((h) => Deno.readTextFile(h.daemon.subnetFile)));
  assertEquals(subnetEnvShape(envs[0]), subnetEnvShape(envs[1]), "subnet.env alike byte for byte");
  return recs;
}

/** Whether each host's container reaches the other's, within `ms`. */
function bothWays(c: Cluster, ms: number): Promise<boolean> {
  const [x, y] = c.containers();
  return until(
    "each side programs the other",
    async () => await reaches(x, y) && await reaches(y, x),
    ms,
  )
    .then(() => true, () => false);
}

/** Every pair pings; unless `pingOnly`, 10 MB cross intact both ways. */
async function traffic(t: Deno.TestContext, c: Cluster, pingOnly = false): Promise<void> {
  await t.step("all pairs ping", async () => assertAllAnswered(await c.pingAll({ count: 3 })));
  if (pingOnly) return;
  await t.step("10 MB intact both ways", async () => {
    const [x, y] = c.containers();
    for (const [from, to] of [[x, y], [y, x]]) {
      const r = await tcpTransfer(from, to, 10 << 20);
      assertEquals(r.received, r.sent, `${from.name}→${to.name}`);
      console.log(`  10 MB ${from.name}→${to.name}: ${r.ms} ms, sha256 equal`);
    }
  });
}

const PLACEMENTS = [{ up: 1, label: "ours on h0, upstream on h1" }, {
  up: 0,
  label: "upstream on h0, ours on h1",
}];
const STARTS = [{ staggerMs: undefined, label: "started in the same instant" }, {
  staggerMs: 2000,
  label: "staggered by 2 s",
}];

for (const backend of ["udp", "vxlan", "host-gw"] as BackendType[]) {
  for (const place of PLACEMENTS) {
    for (const start of STARTS) {
      Deno.test({
        name: `mixed ${backend}: ${place.label}, ${start.label}`,
        ...ROOT_TEST,
        ignore: !isRoot || !UPSTREAM_PRESENT,
      }, async (t) => {
        await using c = await Cluster.create({
          hosts: 2,
          containersPerHost: 1,
          backend,
          upstreamHosts: [place.up],
          staggerMs: start.staggerMs,
        });
        const ours = c.hosts.find((h) => h.flavour === "ours")!;
        const up = c.hosts.find((h) => h.flavour === "upstream")!;
        const [oc, uc] = [ours.containers[0], up.containers[0]];
        let recs: LeaseRecord[] = [];

        await t.step("leases and subnet.env byte-identical but for per-host values", async () => {
          recs = await checkLeases(c, backend);
        });

        let missed = false;
        await t.step("each side programs the other's lease", async () => {
          if (await bothWays(c, 10_000)) return;
          // Our side: our container's echoes arrive in upstream's container.
          const src = await echoSource(
            uc.ns,
            "eth0",
            () => ping(oc.ns, uc.ip!, { count: 2, timeout: 1 }),
          );
          assertEquals(src, oc.ip, "our daemon forwards to upstream's subnet");
          assert(start.staggerMs === undefined, "upstream missed our lease although started apart");
          const [o, u] = [recs.find((r) => r.host === ours)!, recs.find((r) => r.host === up)!];
          assert(
            o.createRevision > u.createRevision,
            `upstream missed a lease older than its own (${o.createRevision} < ${u.createRevision})`,
          );
          missed = true;
          console.log(
            `  upstream (${up.name}) never programmed our lease ${o.key} (revision ${o.createRevision}, ` +
              `after its own at ${u.createRevision}): upstream's watch race; the restart below repairs it`,
          );
        });
        if (!missed) await traffic(t, c);

        const h1: Host = c.host(1);
        await t.step(
          `restart ${h1.name} (${h1.flavour}): same subnet, leases alike, traffic`,
          async () => {
            const before = c.hostSubnetEnv(h1)!.FLANNEL_SUBNET;
            assertEquals((await c.restartDaemon(h1)).FLANNEL_SUBNET, before, c.daemonLog(h1));
            await checkLeases(c, backend);
            assert(await bothWays(c, 15_000), `no traffic after ${h1.name}'s restart`);
          },
        );
        // The transfers ran before unless upstream had missed our lease.
        await traffic(t, c, !missed);
      });
    }
  }
}

Deno.test({
  name:
    "mixed host-gw: upstream takes only the first lease of a watch response (its race); ours all",
  ...ROOT_TEST,
  ignore: !isRoot || !UPSTREAM_PRESENT,
}, async () => {
  await using c = await Cluster.create({ hosts: 2, backend: "host-gw", upstreamHosts: [1] });
  const [ours, up] = c.hosts;
  await until("each side routes to the other", async () => {
    const [a, b] = await Promise.all([routes(ours), routes(up)]);
    return a.includes(`via ${up.ip}`) && b.includes(`via ${ours.ip}`);
  }, 10_000);
  // Two (made-up) hosts' leases in one revision: one watch response with two events.
  const peers = [["10.5.201.0/24", "192.168.100.98"], ["10.5.202.0/24", "192.168.100.99"]];
  const entries = peers.map(([sn, ip]): [string, string] => [
    `/coreos.com/network/subnets/${sn.replace("/", "-")}`,
    `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"host-gw"}`,
  ]);
  const [first, second] = peers.map(([sn, ip]) => `${sn} via ${ip} dev eth0`);
  await putInOneTxn(c, entries);
  await until("ours routes both", async () => {
    const r = await routes(ours);
    return r.includes(first) && r.includes(second);
  }, 10_000);
  await until("upstream routes the first", async () => (await routes(up)).includes(first));
  await sleep(2000); // time enough for a second event, were it ever handled
  assert(!(await routes(up)).includes(second), "upstream routed the second lease");
  console.log(`  one transaction, two leases: ours routes both, upstream only ${peers[0][0]}`);
  // Written again on its own, the missed lease reaches upstream's watch.
  await c.etcd.ctl("put", ...entries[1]);
  await until(
    "upstream routes the rewritten lease",
    async () => (await routes(up)).includes(second),
  );
});

/** The host's IPv4 routes, one per line. */
async function routes(h: Host): Promise<string> {
  return (await run("ip", ["-n", h.ns, "-4", "route"])).stdout;
}
