/**
 * The udp backend end to end through our daemon (root only): 3 hosts × 2 containers in the
 * namespace cluster; all-pairs ping, the wire format on the underlay, a 50 MB TCP transfer,
 * garbage datagrams to port 8285, a host joining later, and a host whose lease goes away.
 */

import { captureUdp, startTcpdump } from "./helpers/tcpdump.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { DEFAULT_UDP_PORT } from "../lib/backend/udp/backend.ts";
import { formatIP4 } from "../lib/core/ip.ts";
import { Cluster, type Container, SUBNETS_PREFIX, UNDERLAY } from "./helpers/cluster.ts";
import { until } from "./helpers/wait.ts";
import { type LineProcess, nsDeno } from "./helpers/line_process.ts";
import { assertAllAnswered } from "./helpers/peer_datapath.ts";
import { injectUdp, ipv4Packet } from "./helpers/packets.ts";
import { formatPingMatrix, formatPingSummary, type PingPair, pingPairs } from "./helpers/ping.ts";
import { ROOT_TEST } from "./helpers/netns.ts";

const PORT = DEFAULT_UDP_PORT;
const TRANSFER_BYTES = 50 << 20;
/** Child processes to kill at the end, whatever happened. */
const procs: LineProcess[] = [];
const blob = new URL("./helpers/tcp_blob.ts", import.meta.url).pathname;

/** Pings every pair of `containers` (1 echo each), prints the summary, returns the pairs. */
async function pingAmong(containers: Container[], label: string): Promise<PingPair[]> {
  const pairs = await pingPairs(
    containers.map((c) => ({ name: c.name, ns: c.ns, ip: c.ip! })),
    { count: 1, timeout: 2 },
  );
  console.log(`${label}: ${formatPingSummary(pairs)}`);
  return pairs;
}

/** tcpdump in `ns`, killed with the other processes at the end. */
async function tcpdump(ns: string, dev: string, args: string): Promise<LineProcess> {
  const p = await startTcpdump(ns, dev, args);
  procs.push(p);
  return p;
}

Deno.test({
  name: "udp backend end to end: 3 hosts × 2 containers through our daemon",
  ...ROOT_TEST,
}, async (t) => {
  const t0 = Date.now();
  await using c = await Cluster.create({ hosts: 3, containersPerHost: 2, backend: "udp" });
  console.log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s (${c.prefix}-*)`);
  const [h0, h1, h2] = c.hosts;
  try {
    await t.step("every container pings every other", async () => {
      const pairs = await c.pingAll({ count: 3, timeout: 2 });
      console.log(formatPingMatrix(pairs));
      console.log(formatPingSummary(pairs));
      assertAllAnswered(pairs);
    });

    await t.step("underlay eth0 carries the raw inner IPv4 packet in UDP 8285", async () => {
      const from = h0.containers[0], to = h1.containers[0];
      const grams = await captureUdp(h0.ns, "eth0", `udp port ${PORT}`, async () => {
        const p = await c.ping(from.ns, to.ip!, { count: 3 });
        assert(p.ok && p.loss === 0, p.output);
      });
      assert(grams.length >= 6, `captured ${grams.length} datagrams`);
      const ends = new Map([[h0.ip, from.ip], [h1.ip, to.ip]]);
      for (const g of grams) {
        const inner = new DataView(g.payload.buffer);
        const [src, dst] = [formatIP4(g.src), formatIP4(g.dst)];
        assertEquals([g.srcPort, g.dstPort], [PORT, PORT]);
        assertEquals(g.payload[0], 0x45, "payload starts with a bare IPv4 header");
        assertEquals(inner.getUint8(9), 1, "inner protocol ICMP");
        // Container → host: the kernel forwards (64 → 63), our sender decrements again (→ 62).
        assertEquals(inner.getUint8(8), 62, "inner TTL");
        assertEquals(
          [formatIP4(inner.getUint32(12)), formatIP4(inner.getUint32(16))],
          [ends.get(src), ends.get(dst)],
          `outer ${src} → ${dst}`,
        );
      }
      const out = grams.filter((g) => formatIP4(g.src) === h0.ip).length;
      console.log(
        `wire: ${grams.length} datagrams on ${h0.name} eth0, ${out} out / ${grams.length - out} in`,
      );
      assert(out >= 3 && grams.length - out >= 3, "requests and replies both captured");
    });

    await t.step(
      `a ${TRANSFER_BYTES >> 20} MB TCP transfer between hosts arrives intact`,
      async () => {
        const dst = h1.containers[1], src = h2.containers[0];
        const server = nsDeno("tcp sink", dst.ns, blob, "serve", dst.ip!, "5001");
        procs.push(server);
        await server.waitLine("LISTENING", 10_000);
        const started = Date.now();
        const r = await c.exec(
          src.ns,
          Deno.execPath(),
          "run",
          "-A",
          blob,
          "send",
          dst.ip!,
          "5001",
          String(TRANSFER_BYTES),
        );
        assertEquals(r.code, 0, r.stderr);
        const [, sentN, sentSha] = r.stdout.trim().split(" ");
        const [, gotN, gotSha, ms] = (await server.waitLine("RECEIVED", 30_000)).split(" ");
        assertEquals([Number(gotN), gotSha], [Number(sentN), sentSha], "sha256 of what arrived");
        assertEquals(Number(gotN), TRANSFER_BYTES);
        const mbps = (TRANSFER_BYTES * 8) / (Number(ms) / 1000) / 1e6;
        console.log(
          `transfer ${src.name} → ${dst.name}: ${TRANSFER_BYTES >> 20} MB in ${
            (Number(ms) / 1000).toFixed(2)
          } s ` +
            `(${mbps.toFixed(0)} Mbit/s; ${
              ((Date.now() - started) / 1000).toFixed(2)
            } s wall with process start), sha256 equal`,
        );
      },
    );

    await t.step("garbage datagrams to port 8285 are dropped, forwarding goes on", async () => {
      const target = h1.containers[0].ip!;
      const peerSrc = h0.containers[0].ip!;
      const random = Array.from({ length: 64 }, (_, i) => {
        const b = crypto.getRandomValues(new Uint8Array(1 + ((i * 97) % 1400)));
        if (i % 2) b[0] = 0x45; // half of them look like IPv4 at first glance
        return b;
      });
      const badSum = ipv4Packet(peerSrc, target);
      badSum[10] ^= 0x5a;
      const longer = ipv4Packet(peerSrc, target, 64, 3000); // bigger than a receive slot
      const fromPeer = [
        ...random,
        new Uint8Array(0),
        ipv4Packet(peerSrc, target).slice(0, 12), // truncated header
        ipv4Packet(peerSrc, target).slice(0, 30), // truncated packet
        badSum,
        longer,
        ipv4Packet(peerSrc, h2.containers[0].ip!), // inner destination not h1's subnet
        ipv4Packet(peerSrc, "10.5.255.7"), // not anyone's subnet
        ipv4Packet(peerSrc, target, 1), // TTL would reach 0
      ];
      // What h1's daemon writes to its TUN: only the well-formed markers (payload 77, 78) sent
      // from the peer after each batch of garbage; the socket queue keeps their order.
      const tun = await tcpdump(h1.ns, "flannel0", "-t udp port 9");
      const dots = (addr: string) => addr.replaceAll(".", "\\.");
      const marker = (len: number) => ipv4Packet(peerSrc, target, 64, len);
      await injectUdp(h0.ns, h0.ip, h1.ip, PORT, [...fromPeer, marker(77)]);
      assertMatch(
        await tun.waitLine("IP ", 5000),
        new RegExp(`^IP ${dots(peerSrc)}\\.\\d+ > ${dots(target)}\\.9: UDP, length 77$`),
      );
      // Spoofed outer source: the etcd host holds no lease.
      await injectUdp(c.etcdNs, UNDERLAY.etcd, h1.ip, PORT, [
        ipv4Packet(peerSrc, target),
        ...random.slice(0, 8),
      ]);
      await injectUdp(h0.ns, h0.ip, h1.ip, PORT, [marker(78)]);
      assertMatch(await tun.waitLine("IP ", 5000), /UDP, length 78$/);
      for (const h of c.hosts) {
        assert(await h.daemon.alive(), `${h.name} daemon exited:\n${c.daemonLog(h)}`);
      }
      assertAllAnswered(await pingAmong(c.containers(), "after garbage"));
      for (const h of c.hosts) {
        assert(await h.daemon.alive(), `${h.name} daemon exited`);
        const log = c.daemonLog(h);
        assert(
          !/worker (ended unexpectedly|failed)|^[EF]\d{4} /m.test(log),
          `${h.name} daemon log:\n${log}`,
        );
      }
    });

    await t.step("a host joining later reaches and is reached by everyone", async () => {
      const h3 = await c.addHost();
      const subnet = h3.daemon.subnetEnv()!.FLANNEL_SUBNET.replace(/\.1\//, ".0/");
      for (const h of [h0, h1, h2]) {
        await until(
          `${h.name} to learn ${subnet}`,
          () => c.daemonLog(h).includes(`lease added subnet=${subnet}`),
          10_000,
        );
      }
      const pairs = await pingAmong(c.containers(), `after ${h3.name} (${subnet}) joined`);
      console.log(formatPingMatrix(pairs));
      assertAllAnswered(pairs);
    });

    await t.step("a host whose lease goes away is dropped by the others", async () => {
      const lease = (await c.leases()).find((l) => l.value.PublicIP === h1.ip);
      assert(lease, `no lease with PublicIP ${h1.ip}`);
      const subnet = lease.key.slice(SUBNETS_PREFIX.length + 1).replace("-", "/");
      const status = await c.stopDaemon(h1);
      assertEquals(status?.code, 0, "SIGTERM is a clean exit");
      assert((await c.leases()).some((l) => l.key === lease.key), "the lease survives shutdown");
      assertEquals((await c.etcd.ctl("del", lease.key)).trim(), "1");
      const others = c.hosts.filter((h) => h !== h1);
      for (const h of others) {
        await until(
          `${h.name} to log the removal of ${subnet}`,
          () => c.daemonLog(h).includes(`lease removed subnet=${subnet}`),
          10_000,
        );
      }
      const probes = [h0.containers[0], c.hosts[3].containers[1]].flatMap((from) =>
        h1.containers.map(async (to) => {
          const p = await c.ping(from.ns, to.ip!, { count: 2, timeout: 1 });
          assert(!p.ok, `${from.name} → ${to.name} still answers:\n${p.output}`);
        })
      );
      await Promise.all(probes);
      // A TCP SYN to the gone subnet gets ICMP net-unreachable from the sending host.
      const r = await c.exec(
        h0.containers[0].ns,
        Deno.execPath(),
        "eval",
        `try { await Deno.connect({ hostname: "${
          h1.containers[0].ip
        }", port: 80 }); console.log("CONNECTED") } catch (e) { console.log(e.message) }`,
      );
      assertMatch(r.stdout, /Network is unreachable/);
      const rest = others.flatMap((h) => h.containers);
      assertAllAnswered(await pingAmong(rest, `without ${h1.name}`));
    });
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
  }
  console.log(`udp e2e took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
