/**
 * IPv6 through our daemon in a namespace cluster with a dual-stack underlay (root only;
 * 192.168.100.0/24 + 2001:db8::/64, network 10.5.0.0/16 + fd42::/56, containers with an
 * address of each family):
 * - vxlan and host-gw, 3 hosts × 2 containers: every pair answers ping and ping6, 50 MB
 *   cross over IPv6 intact, the kernel holds the lines upstream v0.20.2 programs (measured
 *   with its binary: `ip -6 route`, `ip -6 neigh`, `bridge fdb`, `ip -d link`), the lease
 *   is upstream's byte for byte, deleted IPv6 entries and the IPv6 device come back;
 *   `--ip-masq` masquerades IPv6 leaving the overlay and nothing inside it; `--public-ipv6`,
 *   `--iface=<IPv4>`, `--iface-can-reach=<IPv6>` and `--iface-regex` choose the IPv6 side;
 *   `/metrics` counts peers per family;
 * - an IPv6-only network (`EnableIPv4: false`) on vxlan and host-gw (there in nftables mode,
 *   masquerading IPv6 by table `flannel-ipv6`);
 * - refusals: IPv6 enabled on a host without an IPv6 address, and the udp backend with
 *   IPv6, each one line and exit 1 with nothing programmed.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import {
  formatIP,
  formatIP6,
  formatNet,
  formatNet6,
  type IP6Net,
  parseIP6,
} from "../lib/core/ip.ts";
import { formatMAC } from "../lib/core/mac.ts";
import { NTF_SELF, NUD_PERMANENT } from "../ffi/netlink/mod.ts";
import { allSettled, Cluster, CONFIG_KEY, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { ip, isRoot } from "./helpers/netns.ts";
import {
  assertAllAnswered,
  execOk,
  type HostKernel,
  hostKernel,
  hostSubnet6,
  logCount,
  rawLease,
  reaches,
  restartUnderPing,
  tcpTransfer,
} from "./helpers/peer_datapath.ts";
import { echoSource } from "./helpers/tcpdump.ts";
import { scrapeMetrics } from "./helpers/health_http.ts";
import { metricValue } from "./helpers/prometheus.ts";
import { timeUntil, until } from "./helpers/wait.ts";

const opts = { ignore: !isRoot, sanitizeOps: false, sanitizeResources: false };
const DEV = "flannel.1", DEV6 = "flannel-v6.1";
const HEALTH_PORT = 10256;

/** The VTEP MACs a host advertises, from its lease. */
async function vtepMACs(c: Cluster, h: Host): Promise<{ v4?: string; v6?: string }> {
  const l = JSON.parse(await rawLease(c, h));
  return { v4: l.BackendData?.VtepMAC, v6: l.BackendV6Data?.VtepMAC };
}

/** The public IPv6 of `h`: `--public-ipv6` when it has one, else its underlay address. */
const public6 = (h: Host, publicIPv6: Map<string, string>) => publicIPv6.get(h.name) ?? h.ip6!;

/** Whether `k` (read in IPv6) holds the IPv6 vxlan entries for subnet `sn` at `peer` with `mac`. */
function hasPeer6(k: HostKernel, sn: IP6Net, peer: string, mac: string): boolean {
  const idx = k.link?.index;
  return k.routes.some((r) =>
    r.dst.ip === sn.ip && r.dst.prefix === sn.prefix && r.gw === sn.ip && r.dev === idx &&
    r.onlink
  ) &&
    k.neighs.some((n) =>
      n.ip === sn.ip && n.mac !== null && formatMAC(n.mac) === mac &&
      (n.state & NUD_PERMANENT) !== 0
    ) &&
    k.fdbs.some((f) =>
      formatMAC(f.mac) === mac && f.dst === parseIP6(peer) && (f.flags & NTF_SELF) !== 0
    );
}

/**
 * Checks host `h` against what upstream v0.20.2 programs for a dual-stack vxlan peer (its
 * lines, measured with its binary): device, address, lease, subnet.env, and per peer the
 * IPv6 route, neighbour and FDB entry, through our netlink layer and through iproute2.
 */
async function checkVxlan6(c: Cluster, h: Host, publicIPv6: Map<string, string>): Promise<void> {
  const k = hostKernel(h.ns, DEV6, 6);
  const own6 = hostSubnet6(c, h);
  assert(k.link, `${h.name}: no ${DEV6}`);
  assertEquals([k.link.kind, k.link.mtu, k.link.up], ["vxlan", 1430, true]);
  assertEquals(k.link.vxlan?.local, parseIP6(public6(h, publicIPv6)));
  assertEquals(k.addrs, [{ ip: own6.ip, prefix: 128 }]);
  const macs = await vtepMACs(c, h);
  assertEquals(macs.v6, formatMAC(k.link.mac!));
  assertEquals(macs.v4, formatMAC(hostKernel(h.ns, DEV).link!.mac!));
  assertEquals(
    await rawLease(c, h),
    `{"PublicIP":"${h.ip}","PublicIPv6":"${public6(h, publicIPv6)}","BackendType":"vxlan",` +
      `"BackendData":{"VNI":1,"VtepMAC":"${macs.v4}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${macs.v6}"}}`,
  );
  assertEquals(
    await Deno.readTextFile(h.daemon.subnetFile),
    `FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=${c.hostSubnetEnv(h)!.FLANNEL_SUBNET}\n` +
      `FLANNEL_IPV6_NETWORK=fd42::/56\nFLANNEL_IPV6_SUBNET=${formatIP6(own6.ip + 1n)}/64\n` +
      "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  const run = (...argv: string[]) => execOk(c, h.ns, argv);
  assertEquals((await run("cat", `/proc/sys/net/ipv6/conf/${DEV6}/accept_ra`)).trim(), "0");
  assertMatch(
    await run("ip", "-d", "link", "show", DEV6),
    new RegExp(
      `mtu 1430 .*vxlan id 1 local ${public6(h, publicIPv6)} dev eth0 .*dstport 8472 nolearning`,
      "s",
    ),
  );
  assertMatch(
    await run("ip", "-6", "addr", "show", "dev", DEV6),
    new RegExp(`inet6 ${formatIP6(own6.ip)}/128 scope global`),
  );
  const routes = await run("ip", "-6", "route");
  const neighs = await run("ip", "-6", "neigh", "show", "dev", DEV6);
  const fdb = await run("bridge", "fdb", "show", "dev", DEV6);
  const peers = c.hosts.filter((p) => p !== h);
  for (const p of peers) {
    const sn = hostSubnet6(c, p), gw = formatIP6(sn.ip);
    const pmac = (await vtepMACs(c, p)).v6!;
    const at = public6(p, publicIPv6);
    assert(hasPeer6(k, sn, at, pmac), `${h.name}: netlink lacks IPv6 entries for ${p.name}`);
    // Upstream's lines, as `ip` prints them on a host of upstream's.
    assertMatch(
      routes,
      new RegExp(`^${formatNet6(sn)} via ${gw} dev ${DEV6} metric 1024 onlink pref medium *$`, "m"),
    );
    assertMatch(neighs, new RegExp(`^${gw} lladdr ${pmac} PERMANENT *$`, "m"));
    assertMatch(fdb, new RegExp(`^${pmac} dst ${at} self permanent *$`, "m"));
  }
  assertEquals(k.fdbs.filter((f) => f.dst !== undefined).length, peers.length, "one per peer");
  assertEquals(k.neighs.filter((n) => n.state & NUD_PERMANENT).length, peers.length);
}

/** Pings every pair over IPv4 and IPv6; prints and asserts both. */
async function pingBoth(c: Cluster): Promise<void> {
  for (const family of [4, 6] as const) {
    const pairs = await c.pingAll({ count: 1 }, family);
    console.log(
      `  ping${family === 6 ? "6" : ""}: ${
        pairs.filter((p) => p.result.ok).length
      }/${pairs.length} pairs answered`,
    );
    assertAllAnswered(pairs);
  }
}

/** 50 MB from `a` to `b` over IPv6, intact; prints the time. */
async function transfer6(a: Host["containers"][0], b: Host["containers"][0]): Promise<void> {
  const r = await tcpTransfer(a, b, 50 << 20, 5201, 6);
  assert(r.received === r.sent, `received ${r.received}, sent ${r.sent}`);
  console.log(
    `  50 MB ${a.name}→${b.name} over IPv6: ${r.ms} ms (${
      (400 / (r.ms / 1000)).toFixed(0)
    } Mbit/s)`,
  );
}

Deno.test({ name: "IPv6 vxlan: dual stack, 3 hosts × 2 containers", ...opts }, async (t) => {
  // h2 advertises a second address of its eth0 as its public IPv6.
  const publicIPv6 = new Map([["h2", "2001:db8::112"]]);
  await using c = await Cluster.create({
    hosts: 3,
    containersPerHost: 2,
    backend: "vxlan",
    ipv6: true,
    startDaemons: false,
    daemonArgs: (h) => [
      "--ip-masq",
      `--healthz-port=${HEALTH_PORT}`,
      ...(publicIPv6.has(h) ? [`--public-ipv6=${publicIPv6.get(h)}`] : []),
    ],
  });
  const [h0, h1, h2] = c.hosts;
  await ip(h2.ns, "addr", "add", "2001:db8::112/64", "dev", "eth0", "nodad");
  await allSettled(c.hosts.map((h) => c.startDaemon(h)));
  const [a, b] = [h0.containers[0], h1.containers[1]];

  await t.step("every pair answers ping and ping6", () => pingBoth(c));

  await t.step("kernel state and lease: upstream's lines (netlink and iproute2)", async () => {
    for (const h of c.hosts) await checkVxlan6(c, h, publicIPv6);
  });

  await t.step("50 MB over IPv6 arrive intact", () => transfer6(a, b));

  await t.step("--ip-masq: IPv6 leaving the overlay is masqueraded, inside it is not", async () => {
    // The switch's gateway stands for "outside": it has no route back to fd42::/56.
    let answered = false;
    const src = await echoSource(c.switchNs, "br0", async () => {
      answered = (await c.ping(a.ns, UNDERLAY.gateway6, { count: 1, timeout: 2 })).ok;
    }, 6);
    assertEquals(src, h0.ip6);
    assert(answered, "masqueraded ping6 to the outside answered");
    const inner = await echoSource(h1.ns, "cni0", () => c.ping(a.ns, b.ip6!, { count: 1 }), 6);
    assertEquals(inner, a.ip6);
    const nat = await execOk(c, h0.ns, ["ip6tables-save", "-t", "nat"]);
    assertMatch(nat, /-A FLANNEL-POSTRTG -s fd42::\/56 ! -d ff00::\/8 .*-j MASQUERADE/);
  });

  await t.step("/metrics counts the peers per family", async () => {
    const m = await scrapeMetrics(h0, HEALTH_PORT);
    for (const family of ["ipv4", "ipv6"]) {
      assertEquals(metricValue(m, "flannel_backend_peers_by_family", { family }), 2);
    }
    const info = m.get("flannel_lease_info")!.samples[0].labels;
    assertEquals(info.public_ipv6, h0.ip6);
  });

  await t.step("deleted IPv6 route, neighbour, FDB entry and device come back", async () => {
    const sn = hostSubnet6(c, h1), gw = formatIP6(sn.ip);
    const mac = (await vtepMACs(c, h1)).v6!;
    const ownMAC = formatMAC(hostKernel(h0.ns, DEV6).link!.mac!);
    const before = logCount(c, h0, "repaired:");
    const breakages: [string, string[]][] = [
      ["IPv6 route", ["ip", "-6", "route", "del", formatNet6(sn)]],
      ["IPv6 neighbour", ["ip", "-6", "neigh", "del", gw, "dev", DEV6]],
      ["IPv6 FDB entry", ["bridge", "fdb", "del", mac, "dev", DEV6, "dst", h1.ip6!]],
      ["IPv6 device", ["ip", "link", "del", DEV6]],
    ];
    for (const [what, cmd] of breakages) {
      await execOk(c, h0.ns, cmd);
      const ms = await timeUntil(`${what} repaired`, () => {
        const k = hostKernel(h0.ns, DEV6, 6);
        return k.link !== null && formatMAC(k.link.mac!) === ownMAC &&
          hasPeer6(k, sn, h1.ip6!, mac);
      }, 15_000);
      const pingMs = await timeUntil(`ping6 after ${what}`, () => reaches(a, b, 6), 15_000);
      console.log(
        `  ${what} broken: kernel repaired in ${ms} ms, ping6 ok after ${ms + pingMs} ms`,
      );
    }
    await checkVxlan6(c, h0, publicIPv6);
    assert(logCount(c, h0, "repaired:") >= before + breakages.length, "one log line per repair");
    assert(await reaches(a, b, 4), "IPv4 unaffected");
  });

  await t.step("restart under ping6: stale IPv6 entries cleaned, no loss beyond 1 s", async () => {
    const [stale, staleMAC] = ["fd42:0:0:fb::", "02:11:22:33:44:66"];
    for (
      const cmd of [
        ["ip", "-6", "neigh", "add", stale, "lladdr", staleMAC, "dev", DEV6, "nud", "permanent"],
        ["bridge", "fdb", "add", staleMAC, "dev", DEV6, "dst", "2001:db8::fb", "self", "permanent"],
        ["ip", "-6", "route", "add", `${stale}/64`, "via", stale, "dev", DEV6, "onlink"],
      ]
    ) await execOk(c, h0.ns, cmd);
    await restartUnderPing(c, [h0], a, b, 6);
    await until("stale IPv6 entries removed", () => {
      const k = hostKernel(h0.ns, DEV6, 6);
      return !k.routes.some((r) => formatIP(r.dst.ip) === stale) &&
        !k.neighs.some((n) => formatIP(n.ip) === stale) &&
        !k.fdbs.some((f) => formatMAC(f.mac) === staleMAC);
    }, 15_000);
    assertEquals(logCount(c, h0, `removed stale: route ${stale}/64`), 1);
    await checkVxlan6(c, h0, publicIPv6);
  });
});

Deno.test({ name: "IPv6 host-gw: dual stack, 3 hosts × 2 containers", ...opts }, async (t) => {
  // Each host chooses its interface another way; the IPv6 side must come out the same.
  const selectors: Record<string, string[]> = {
    h0: [`--iface=${UNDERLAY.host(0)}`],
    h1: [`--iface-can-reach=${UNDERLAY.gateway6}`],
    h2: ["--iface-regex=^eth0$"],
  };
  await using c = await Cluster.create({
    hosts: 3,
    containersPerHost: 2,
    backend: "host-gw",
    ipv6: true,
    daemonArgs: (h) => selectors[h],
  });
  const [h0, h1] = c.hosts;
  const [a, b] = [h0.containers[0], h1.containers[1]];

  await t.step("every pair answers ping and ping6", () => pingBoth(c));

  await t.step("lease and IPv6 routes: upstream's lines", async () => {
    for (const h of c.hosts) {
      assertEquals(
        await rawLease(c, h),
        `{"PublicIP":"${h.ip}","PublicIPv6":"${h.ip6}","BackendType":"host-gw"}`,
      );
      assertEquals(c.hostSubnetEnv(h)!.FLANNEL_MTU, "1500");
      const routes = await execOk(c, h.ns, ["ip", "-6", "route"]);
      const k = hostKernel(h.ns, "eth0", 6);
      for (const p of c.hosts.filter((x) => x !== h)) {
        const sn = hostSubnet6(c, p);
        assertMatch(
          routes,
          new RegExp(`^${formatNet6(sn)} via ${p.ip6} dev eth0 metric 1024 pref medium *$`, "m"),
        );
        assert(
          k.routes.some((r) => formatNet(r.dst) === formatNet6(sn) && r.gw === parseIP6(p.ip6!)),
          `${h.name}: netlink lacks the IPv6 route to ${p.name}`,
        );
      }
    }
  });

  await t.step("50 MB over IPv6 arrive intact", () => transfer6(a, b));

  await t.step("a deleted IPv6 route comes back", async () => {
    const sn = hostSubnet6(c, h1);
    await execOk(c, h0.ns, ["ip", "-6", "route", "del", formatNet6(sn)]);
    const ms = await timeUntil("IPv6 route repaired", async () => {
      const routes = await execOk(c, h0.ns, ["ip", "-6", "route", "show", formatNet6(sn)]);
      return routes.includes(`via ${h1.ip6}`);
    }, 15_000);
    const pingMs = await timeUntil("ping6 after the repair", () => reaches(a, b, 6), 15_000);
    console.log(`  IPv6 route deleted: repaired in ${ms} ms, ping6 ok after ${ms + pingMs} ms`);
    assertEquals(logCount(c, h0, `repaired: route ${formatNet6(sn)} via ${h1.ip6}`), 1);
  });
});

Deno.test(
  { name: "IPv6-only network (EnableIPv4 false) on vxlan and host-gw", ...opts },
  async (t) => {
    for (const backend of ["vxlan", "host-gw"] as const) {
      await t.step(backend, async () => {
        // host-gw also runs nftables mode with --ip-masq: IPv6 masquerade by table flannel-ipv6.
        const nft = backend === "host-gw";
        await using c = await Cluster.create({
          hosts: 2,
          containersPerHost: 2,
          backend,
          ipv6: true,
          config: {
            EnableIPv4: false,
            Network: undefined,
            ...(nft ? { EnableNFTables: true } : {}),
          },
          daemonArgs: nft ? ["--ip-masq"] : [],
        });
        const pairs = await c.pingAll({ count: 1 }, 6);
        console.log(
          `  ${backend} IPv6-only ping6: ${
            pairs.filter((p) => p.result.ok).length
          }/${pairs.length}`,
        );
        assertAllAnswered(pairs);
        assertEquals(
          c.containers().map((x) => x.ip),
          c.containers().map(() => null),
          "no IPv4",
        );
        for (const h of c.hosts) {
          const env = await Deno.readTextFile(h.daemon.subnetFile);
          const sn = hostSubnet6(c, h);
          const mtu = backend === "vxlan" ? 1430 : 1500;
          assertEquals(
            env,
            `FLANNEL_IPV6_NETWORK=fd42::/56\nFLANNEL_IPV6_SUBNET=${formatIP6(sn.ip + 1n)}/64\n` +
              `FLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=${nft}\n`,
          );
          const lease = JSON.parse(await rawLease(c, h));
          assertEquals([lease.PublicIP, lease.PublicIPv6], ["0.0.0.0", h.ip6]);
          assertEquals(lease.BackendData, undefined);
          assertEquals(hostKernel(h.ns, DEV).link, null, "no IPv4 device");
          const keys =
            (await c.etcd.ctl("get", "--prefix", "--keys-only", "/coreos.com/network/subnets"))
              .split("\n").filter((l) => l);
          assert(keys.some((k) => k.endsWith(`/0.0.0.0-0&${formatIP6(sn.ip)}-64`)), keys.join(" "));
          assertEquals(keys.length, 2, "one lease per host, told apart by the IPv6 part");
        }
        await tcpTransfer(c.hosts[0].containers[0], c.hosts[1].containers[0], 8 << 20, 5202, 6)
          .then((r) => assertEquals(r.received, r.sent));
        if (nft) {
          const [h0, x] = [c.hosts[0], c.hosts[0].containers[0]];
          let answered = false;
          const src = await echoSource(c.switchNs, "br0", async () => {
            answered = (await c.ping(x.ns, UNDERLAY.gateway6, { count: 1, timeout: 2 })).ok;
          }, 6);
          assertEquals(src, h0.ip6, "masqueraded by nftables");
          assert(answered, "masqueraded ping6 to the outside answered");
          const table = await execOk(c, h0.ns, ["nft", "list", "table", "ip6", "flannel-ipv6"]);
          assertMatch(table, /ip6 saddr fd42::\/56 ip6 daddr != ff00::\/8 masquerade/);
        }
        // A restart keeps the lease (found by PublicIPv6: every PublicIP is 0.0.0.0).
        const before = await rawLease(c, c.hosts[0]);
        const sn = formatNet6(hostSubnet6(c, c.hosts[0]));
        await c.restartDaemon(c.hosts[0]);
        assertEquals(formatNet6(hostSubnet6(c, c.hosts[0])), sn);
        assertEquals(await rawLease(c, c.hosts[0]), before);
      });
    }
  },
);

Deno.test(
  { name: "IPv6 refusals: no IPv6 address on the host, udp with IPv6", ...opts },
  async (t) => {
    await using c = await Cluster.create({
      hosts: 1,
      backend: "vxlan",
      config: { EnableIPv6: true, IPv6Network: "fd42::/56" },
      startDaemons: false,
    });
    const [h] = c.hosts;
    const leases = async () =>
      (await c.etcd.ctl("get", "--prefix", "--keys-only", "/coreos.com/network/subnets")).trim();
    const refusal = async () => {
      const from = c.daemonLog(h).length;
      h.daemon.start();
      const status = await h.daemon.waitExit(30_000);
      await h.daemon.stop(); // reaps it, so that it can start again
      const errors = c.daemonLog(h).slice(from).split("\n").filter((l) => l.startsWith("E"));
      return { code: status.code, errors };
    };

    await t.step(
      "dual stack on a host without an IPv6 address: one line, exit 1, nothing made",
      async () => {
        const r = await refusal();
        console.log(`  ${r.errors.join("\n  ")}`);
        assertEquals(r.code, 1);
        assertEquals(r.errors.length, 1, c.daemonLog(h));
        assertMatch(
          r.errors[0],
          /failed to find IPv6 address for interface eth0.*EnableIPv6 is set/,
        );
        const links = await execOk(c, h.ns, ["ip", "link"]);
        assert(!links.includes("flannel"), links);
        assertEquals(await leases(), "");
      },
    );

    await t.step("udp with EnableIPv6: one line, exit 1", async () => {
      await c.etcd.ctl(
        "put",
        CONFIG_KEY,
        JSON.stringify({ Network: "10.5.0.0/16", EnableIPv6: true, IPv6Network: "fd42::/56" }),
      );
      const r = await refusal();
      assertEquals(r.code, 1);
      assertEquals(r.errors.length, 1, c.daemonLog(h));
      assertMatch(r.errors[0], /the udp backend carries IPv4 only, and EnableIPv6 is set/);
      assertEquals(await leases(), "");
    });

    await t.step("with an IPv6 address the same vxlan config runs", async () => {
      await c.etcd.ctl("put", CONFIG_KEY, JSON.stringify(c.networkConfig));
      await ip(h.ns, "addr", "add", "2001:db8::10/64", "dev", "eth0", "nodad");
      h.daemon.start();
      const env = await h.daemon.waitSubnetEnv();
      assert(env.FLANNEL_IPV6_SUBNET, "dual-stack subnet.env");
      await until("flannel-v6.1 up", () => hostKernel(h.ns, DEV6).link?.up === true);
      assertEquals(formatIP(hostKernel(h.ns, DEV6).link!.vxlan!.local), "2001:db8::10");
    });
  },
);
