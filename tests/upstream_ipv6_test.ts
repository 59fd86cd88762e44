/**
 * Upstream's flanneld v0.20.2 beside ours on a dual-stack underlay (root; skipped with one
 * line when `../shared/upstream/flanneld-v0.20.2` is absent), vxlan and host-gw, upstream on
 * the first host and on the second, started 2 s apart (upstream's watch race, see
 * `helpers/mixed.ts`, is not what this test is about): the leases in etcd are byte for byte
 * alike but for each host's own addresses and VTEP MACs (our lease carries BackendV6Data,
 * without which upstream skips the whole lease and even IPv4 fails), so is subnet.env; each
 * side programs the other in both families, with the same `ip -6 route`, `ip -6 neigh`,
 * `bridge fdb` and `ip -d link` lines; ping and ping6 answer both ways and 10 MB cross intact
 * over IPv6 both ways.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { type BackendType, Cluster, type Host } from "./helpers/cluster.ts";
import { leaseRecord, leaseShape, subnetEnvShape } from "./helpers/mixed.ts";
import { hostSubnet6, reaches, tcpTransfer } from "./helpers/peer_datapath.ts";
import { UPSTREAM_PRESENT, UPSTREAM_SKIP } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";
import { isRoot, ROOT_TEST, run } from "./helpers/netns.ts";
import { formatIP6, formatNet6 } from "../lib/core/ip.ts";

if (isRoot && !UPSTREAM_PRESENT) console.log(UPSTREAM_SKIP);

const DEV6 = "flannel-v6.1";

/** `ip …` in host `h`, stdout. */
async function ipIn(h: Host, ...args: string[]): Promise<string> {
  return (await run("ip", ["-n", h.ns, ...args])).stdout;
}

/** The line of `text` that starts with `prefix`, or "" when none does. */
function lineOf(text: string, prefix: string): string {
  return text.split("\n").find((l) => l.startsWith(prefix))?.trimEnd() ?? "";
}

/**
 * What `h` programs for its peer `p` in IPv6, with the per-host values (addresses, MACs)
 * replaced by names: the text must be the same on our host and on upstream's.
 */
async function v6Lines(backend: BackendType, h: Host, p: Host, c: Cluster): Promise<string[]> {
  const sn = hostSubnet6(c, p);
  const peer = JSON.parse((await leaseRecord(c, p)).value);
  const name = (s: string) =>
    s.replaceAll(formatNet6(sn), "PEER_SUBNET").replaceAll(formatIP6(sn.ip), "PEER_SUBNET_IP")
      .replaceAll(p.ip6!, "PEER_IP6").replaceAll(h.ip6!, "OWN_IP6")
      .replaceAll(peer.BackendV6Data?.VtepMAC ?? "-", "PEER_MAC");
  const route = lineOf(await ipIn(h, "-6", "route"), formatNet6(sn));
  if (backend === "host-gw") return [name(route)];
  const neigh = lineOf(await ipIn(h, "-6", "neigh", "show", "dev", DEV6), formatIP6(sn.ip));
  const fdb = lineOf(
    (await run("bridge", ["-n", h.ns, "fdb", "show", "dev", DEV6])).stdout,
    peer.BackendV6Data.VtepMAC,
  );
  // The device: `mtu … state`, and its vxlan details up to the port and learning.
  const link = await ipIn(h, "-d", "link", "show", DEV6);
  const mtu = /mtu \d+/.exec(link)?.[0] ?? "";
  const vxlan = /vxlan id .* nolearning/.exec(link)?.[0] ?? "";
  const addr = lineOf(
    (await ipIn(h, "-6", "addr", "show", "dev", DEV6)).replace(/^ +/gm, ""),
    "inet6 fd42",
  );
  return [
    route,
    neigh,
    fdb,
    mtu,
    vxlan,
    addr.replace(formatIP6(hostSubnet6(c, h).ip), "OWN_SUBNET_IP"),
  ]
    .map(name);
}

for (const backend of ["vxlan", "host-gw"] as BackendType[]) {
  for (const up of [1, 0]) {
    const label = up === 1 ? "ours on h0, upstream on h1" : "upstream on h0, ours on h1";
    Deno.test({
      name: `mixed dual stack ${backend}: ${label}`,
      ...ROOT_TEST,
      ignore: !isRoot || !UPSTREAM_PRESENT,
    }, async (t) => {
      await using c = await Cluster.create({
        hosts: 2,
        containersPerHost: 1,
        backend,
        ipv6: true,
        upstreamHosts: [up],
        staggerMs: 2000,
      });
      const ours = c.hosts.find((h) => h.flavour === "ours")!;
      const theirs = c.hosts.find((h) => h.flavour === "upstream")!;
      const [x, y] = c.containers();

      await t.step("ping and ping6 answer both ways", async () => {
        for (const family of [4, 6] as const) {
          await until(
            `IPv${family} both ways`,
            async () => await reaches(x, y, family) && await reaches(y, x, family),
            15_000,
          );
        }
        for (const family of [4, 6] as const) {
          const pairs = await c.pingAll({ count: 3 }, family);
          const ok = pairs.filter((p) => p.result.ok && p.result.loss === 0).length;
          console.log(`  ping${family === 6 ? "6" : ""}: ${ok}/${pairs.length} pairs, no loss`);
          assertEquals(ok, pairs.length);
        }
      });

      await t.step("our lease and subnet.env are upstream's byte for byte", async () => {
        const [a, b] = await Promise.all(c.hosts.map((h) => leaseRecord(c, h)));
        for (const r of [a, b]) {
          console.log(`  ${r.host.name} (${r.host.flavour}): ${r.key} = ${r.value}`);
          assert(r.key.includes("&fd42:"), `dual-stack key ${r.key}`);
          assert(r.value.includes(`"PublicIPv6":"${r.host.ip6}"`), r.value);
        }
        assertEquals(leaseShape(a.value), leaseShape(b.value));
        if (backend === "vxlan") assert(a.value.includes('"BackendV6Data":{"VNI":1,"VtepMAC":'));
        // What upstream logged for our lease before it carried BackendV6Data.
        assert(!c.daemonLog(theirs).includes("error decoding"), c.daemonLog(theirs));
        const envs = await Promise.all(c.hosts.map((h) => Deno.readTextFile(h.daemon.subnetFile)));
        assertEquals(subnetEnvShape(envs[0]), subnetEnvShape(envs[1]));
      });

      await t.step("both program the other in IPv6 with the same lines", async () => {
        const mine = await v6Lines(backend, ours, theirs, c);
        const upstream = await v6Lines(backend, theirs, ours, c);
        console.log(`  upstream's lines:\n    ${upstream.join("\n    ")}`);
        assert(upstream.every((l) => l !== ""), `upstream programs all: ${upstream}`);
        assertEquals(mine, upstream);
      });

      await t.step("10 MB over IPv6 intact both ways", async () => {
        for (const [from, to] of [[x, y], [y, x]]) {
          const r = await tcpTransfer(from, to, 10 << 20, 5201, 6);
          assertEquals(r.received, r.sent, `${from.name}→${to.name}`);
          console.log(`  10 MB ${from.name}→${to.name} over IPv6: ${r.ms} ms, sha256 equal`);
        }
      });
    });
  }
}
