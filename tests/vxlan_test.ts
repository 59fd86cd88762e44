/**
 * The vxlan backend end to end in a namespace cluster (root only): connectivity, a bulk
 * transfer, kernel state (device flannel.1 with VNI 1, port 8472, MTU 1450, no learning and
 * its own /32; per peer an onlink route via the peer subnet's .0, a permanent neighbour and a
 * permanent FDB entry to the peer's public IP; through our netlink layer and iproute2),
 * repair of deleted or altered entries and of the device itself, restarts without loss,
 * hosts joining and leaving, foreign lease types, and DirectRouting.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { getTxChecksum } from "../ffi/ethtool.ts";
import { needsChecksumWorkaround } from "../lib/backend/vxlan/config.ts";
import { NTF_SELF, NUD_PERMANENT } from "../ffi/netlink/mod.ts";
import { equalNet, formatIP4, formatNet4, type IP4Net, parseIP4 } from "../lib/core/ip.ts";
import { formatMAC } from "../lib/core/mac.ts";
import { Cluster, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { ROOT_TEST, setSysctl } from "./helpers/netns.ts";
import { captureUdp } from "./helpers/tcpdump.ts";
import { inNetns } from "./helpers/netlink_ns.ts";
import {
  assertAllAnswered,
  basicSteps,
  checkForeignLeaseIgnored,
  execOk,
  type HostKernel,
  hostKernel,
  hostSubnet,
  joinAndLeave,
  logCount,
  rawLease,
  reaches,
  restartUnderPing,
} from "./helpers/peer_datapath.ts";
import { timeUntil, until } from "./helpers/wait.ts";

const DEV = "flannel.1";
const opts = ROOT_TEST;

/** The VTEP MAC `h` advertises. */
async function vtepMAC(c: Cluster, h: Host): Promise<string> {
  return JSON.parse(await rawLease(c, h)).BackendData.VtepMAC;
}

/** Whether `k` holds the complete vxlan entries for peer subnet `sn` at `peerIP` with `mac`. */
function hasPeer(k: HostKernel, sn: IP4Net, peerIP: string, mac: string): boolean {
  const idx = k.link?.index;
  return k.routes.some((r) => equalNet(r.dst, sn) && r.gw === sn.ip && r.dev === idx && r.onlink) &&
    k.neighs.some((n) =>
      n.ip === sn.ip && n.mac !== null && formatMAC(n.mac) === mac &&
      (n.state & NUD_PERMANENT) !== 0
    ) &&
    k.fdbs.some((f) => formatMAC(f.mac) === mac && f.dst === parseIP4(peerIP));
}

/** Whether `k` has nothing left for peer subnet `sn` / `mac`. */
function hasNoTrace(k: HostKernel, sn: IP4Net, mac: string): boolean {
  return !k.routes.some((r) => equalNet(r.dst, sn)) && !k.neighs.some((n) => n.ip === sn.ip) &&
    !k.fdbs.some((f) => formatMAC(f.mac) === mac);
}

/** Checks host `h`'s device, lease and peer entries with our netlink layer and with iproute2. */
async function checkKernelState(c: Cluster, h: Host): Promise<void> {
  const k = hostKernel(h.ns, DEV);
  const own = hostSubnet(c, h);
  const link = k.link!;
  assert(link, `${h.name}: no ${DEV}`);
  assertEquals(link.kind, "vxlan");
  assertEquals(link.mtu, 1450);
  assertEquals(link.up, true);
  assertEquals({ ...link.vxlan, underlayIndex: 0 }, {
    vni: 1,
    port: 8472,
    local: parseIP4(h.ip),
    underlayIndex: 0,
    learning: false,
    gbp: false,
    l2miss: false,
    l3miss: false,
  });
  const mac = formatMAC(link.mac!);
  assert((link.mac![0] & 0x03) === 0x02, "locally administered unicast MAC");
  assertEquals(
    await rawLease(c, h),
    `{"PublicIP":"${h.ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`,
  );
  assertEquals(k.addrs, [{ ip: own.ip, prefix: 32 }]);
  // The checksum workaround is on only where needed (kernel < 5.7 or behind NAT).
  const wantOffload = !needsChecksumWorkaround({
    kernelRelease: Deno.osRelease(),
    behindNAT: false,
  });
  assertEquals(
    inNetns(h.ns, () => getTxChecksum(DEV)),
    wantOffload,
    "TX checksum offload per kernel",
  );

  const ipOut = (...argv: string[]) => execOk(c, h.ns, argv);
  assertMatch(
    await ipOut("ip", "-d", "link", "show", DEV),
    new RegExp(`mtu 1450 .*vxlan id 1 local ${h.ip} dev eth0 .*dstport 8472 nolearning`, "s"),
  );
  assertMatch(
    await ipOut("ip", "-4", "addr", "show", "dev", DEV),
    new RegExp(`inet ${formatIP4(own.ip)}/32 `),
  );
  const routes = await ipOut("ip", "route");
  const neighs = await ipOut("ip", "neigh", "show", "dev", DEV);
  const fdb = await ipOut("bridge", "fdb", "show", "dev", DEV);
  const peers = c.hosts.filter((p) => p !== h);
  for (const p of peers) {
    const sn = hostSubnet(c, p);
    const pmac = await vtepMAC(c, p);
    assert(hasPeer(k, sn, p.ip, pmac), `${h.name}: netlink lacks entries for ${p.name}`);
    const f = k.fdbs.find((e) => formatMAC(e.mac) === pmac)!;
    assert((f.flags & NTF_SELF) !== 0 && (f.state & NUD_PERMANENT) !== 0, "fdb self permanent");
    const gw = formatIP4(sn.ip);
    assertMatch(routes, new RegExp(`^${formatNet4(sn)} via ${gw} dev ${DEV} onlink *$`, "m"));
    assertMatch(neighs, new RegExp(`^${gw} lladdr ${pmac} PERMANENT *$`, "m"));
    assertMatch(fdb, new RegExp(`^${pmac} dst ${p.ip} self permanent *$`, "m"));
  }
  assertEquals(k.fdbs.length, peers.length, "one FDB entry per peer");
  assertEquals(k.neighs.filter((n) => n.state & NUD_PERMANENT).length, peers.length);
}

Deno.test({ name: "vxlan: 3 hosts × 2 containers through our daemon", ...opts }, async (t) => {
  await using c = await Cluster.create({ hosts: 3, containersPerHost: 2, backend: "vxlan" });
  const [h0, h1] = c.hosts;
  const [a, b] = [h0.containers[0], h1.containers[1]];

  await basicSteps(
    t,
    c,
    "device, lease, route/neighbour/FDB per peer",
    (h) => checkKernelState(c, h),
    a,
    b,
  );

  await t.step("underlay: VXLAN on UDP 8472, VNI 1, inner MACs = VTEP MACs", async () => {
    const grams = await captureUdp(h0.ns, "eth0", "udp port 8472", async () => {
      const p = await c.ping(a.ns, b.ip!, { count: 2 });
      assert(p.ok, p.output);
    });
    const [mac0, mac1] = [await vtepMAC(c, h0), await vtepMAC(c, h1)];
    const out = grams.find((g) => g.src === parseIP4(h0.ip) && g.dst === parseIP4(h1.ip));
    assert(out, `no datagram ${h0.ip} → ${h1.ip} in ${grams.length} captured`);
    const p = out.payload;
    assertEquals(out.dstPort, 8472);
    assertEquals(p[0], 0x08, "VXLAN I flag");
    assertEquals((p[4] << 16) | (p[5] << 8) | p[6], 1, "VNI");
    assertEquals([formatMAC(p.subarray(14, 20)), formatMAC(p.subarray(8, 14))], [mac0, mac1]);
  });

  await t.step("deleted or altered entries and device are repaired", async () => {
    const sn = hostSubnet(c, h1);
    const gw = formatIP4(sn.ip);
    const mac = await vtepMAC(c, h1);
    const before = logCount(c, h0, "repaired:");
    const breakages: [string, string[]][] = [
      ["route", ["ip", "route", "del", formatNet4(sn)]],
      ["neighbour", ["ip", "neigh", "del", gw, "dev", DEV]],
      ["altered neighbour", [
        "ip",
        "neigh",
        "replace",
        gw,
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        DEV,
        "nud",
        "permanent",
      ]],
      ["fdb", ["bridge", "fdb", "del", mac, "dev", DEV, "dst", h1.ip]],
      ["device", ["ip", "link", "del", DEV]],
    ];
    const ownMAC = formatMAC(hostKernel(h0.ns, DEV).link!.mac!);
    for (const [what, cmd] of breakages) {
      await execOk(c, h0.ns, cmd);
      const ms = await timeUntil(`${what} repaired`, () => {
        const k = hostKernel(h0.ns, DEV);
        return k.link !== null && formatMAC(k.link.mac!) === ownMAC && hasPeer(k, sn, h1.ip, mac);
      }, 15_000);
      const pingMs = await timeUntil(`ping after ${what} repair`, () => reaches(a, b), 15_000);
      console.log(`  ${what} broken: kernel repaired in ${ms} ms, ping ok after ${ms + pingMs} ms`);
    }
    await checkKernelState(c, h0);
    assert(logCount(c, h0, "repaired:") >= before + breakages.length, "one log line per repair");
  });

  await t.step("restart under ping: stale entries cleaned, no loss beyond 1 s", async () => {
    const stale = ["10.5.251.0", "02:11:22:33:44:55"];
    for (
      const cmd of [
        ["ip", "neigh", "add", stale[0], "lladdr", stale[1], "dev", DEV, "nud", "permanent"],
        [
          "bridge",
          "fdb",
          "add",
          stale[1],
          "dev",
          DEV,
          "dst",
          "192.168.100.250",
          "self",
          "permanent",
        ],
        ["ip", "route", "add", "10.5.251.0/24", "via", stale[0], "dev", DEV, "onlink"],
      ]
    ) await execOk(c, h0.ns, cmd);
    await restartUnderPing(c, [h0, h1], a, b);
    const staleNet = { ip: parseIP4(stale[0])!, prefix: 24 };
    await until(
      "stale entries removed",
      () => hasNoTrace(hostKernel(h0.ns, DEV), staleNet, stale[1]),
      15_000,
    );
    await checkKernelState(c, h0);
  });

  await t.step("device lost while stopped: the new MAC replaces the old one on peers", async () => {
    const old = await vtepMAC(c, h1);
    await c.stopDaemon(h1);
    await execOk(c, h1.ns, ["ip", "link", "del", DEV]);
    h1.daemon.start();
    await h1.daemon.waitSubnetEnv();
    const now = await vtepMAC(c, h1);
    assert(now !== old, "a recreated device gets a new MAC");
    const sn = hostSubnet(c, h1);
    const ms = await timeUntil("peers use the new MAC", () => {
      const k = hostKernel(h0.ns, DEV);
      return hasPeer(k, sn, h1.ip, now) && !k.fdbs.some((f) => formatMAC(f.mac) === old);
    }, 15_000);
    console.log(`  h0 switched to h1's new VTEP MAC ${ms} ms after h1's subnet.env`);
    await until("ping over the new device", () => reaches(a, b), 15_000);
    await checkKernelState(c, h0);
  });

  await t.step("a host joining later becomes reachable; a leaving one is cleaned up", async () => {
    const macs = new Map<string, string>();
    await joinAndLeave(
      c,
      a,
      (h, sn) => hasNoTrace(hostKernel(h.ns, DEV), sn, macs.get(formatNet4(sn))!),
      async (h) => {
        macs.set(formatNet4(hostSubnet(c, h)), await vtepMAC(c, h));
        await checkKernelState(c, h);
      },
    );
  });

  await t.step("leases of another BackendType are ignored and logged once", async () => {
    await checkForeignLeaseIgnored(c, "host-gw");
    assertAllAnswered(await c.pingAll({ count: 1 }));
  });
});

Deno.test({
  name: "vxlan: DirectRouting: plain routes on one segment, vxlan via a router",
  ...opts,
}, async () => {
  await using c = await Cluster.create({
    hosts: 3,
    containersPerHost: 1,
    backend: "vxlan",
    config: { Backend: { Type: "vxlan", DirectRouting: true, DisableTxChecksumOffload: true } },
    startDaemons: false,
  });
  const [h0, h1, h2] = c.hosts;
  // h2 is "behind a router": h0/h1 and h2 reach each other's public IPs only through a
  // gateway (the switch namespace routing, without redirects), so a route lookup has a gw.
  for (const key of ["ip_forward", "conf.all.send_redirects", "conf.br0.send_redirects"]) {
    await setSysctl(c.switchNs, key, key === "ip_forward" ? "1" : "0");
  }
  for (const [from, to] of [[h0, h2], [h1, h2], [h2, h0], [h2, h1]]) {
    await execOk(c, from.ns, ["ip", "route", "add", `${to.ip}/32`, "via", UNDERLAY.gateway]);
  }
  await Promise.all(c.hosts.map((h) => c.startDaemon(h)));
  assertAllAnswered(await c.pingAll({ count: 1 }));

  assertEquals(
    inNetns(h0.ns, () => getTxChecksum(DEV)),
    false,
    "DisableTxChecksumOffload: true forces the workaround",
  );
  const k = hostKernel(h0.ns, DEV);
  const sn1 = hostSubnet(c, h1), sn2 = hostSubnet(c, h2);
  assertEquals(k.routes.find((x) => equalNet(x.dst, sn1))?.gw, parseIP4(h1.ip));
  const routes = await execOk(c, h0.ns, ["ip", "route"]);
  assertMatch(routes, new RegExp(`^${formatNet4(sn1)} via ${h1.ip} dev eth0 *$`, "m"));
  assert(hasPeer(k, sn2, h2.ip, await vtepMAC(c, h2)), "vxlan entries for the routed peer");
  assertEquals(k.fdbs.length, 1, "no FDB entry for the direct peer");
  const k2 = hostKernel(h2.ns, DEV);
  assert(
    hasPeer(k2, sn1, h1.ip, await vtepMAC(c, h1)) && k2.fdbs.length === 2,
    "h2 uses vxlan for both",
  );
});
