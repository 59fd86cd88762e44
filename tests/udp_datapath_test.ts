/**
 * The udp backend's data path between two network namespaces joined by a veth (root only):
 * ping and a bulk TCP transfer through flannel0, garbage datagrams dropped and counted by
 * reason, ICMP net-unreachable for unknown overlay destinations, the wire format seen by
 * tcpdump on the underlay. All of it with offloads (TUN TSO, UDP GSO/GRO, coalescing) on;
 * then, shorter, offloads off on both sides and a mixed pair (offloads on one side only):
 * TCP data intact both ways. Throughput is measured by the benchmark (`deno task bench`,
 * rows `udp` and `udp-nooffload`), not here.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { internetChecksum } from "../lib/backend/udp/packet.ts";
import { contains4, formatIP4, parseCIDR4 } from "../lib/core/ip.ts";
import { type LineProcess, nsDeno } from "./helpers/line_process.ts";
import {
  addBridge,
  addNetns,
  addVeth,
  deleteNetnsSync,
  ip,
  nsExec,
  ROOT_TEST,
  setAddr,
} from "./helpers/netns.ts";
import { injectUdp, ipv4Packet } from "./helpers/packets.ts";
import { refTcpValid } from "./unit/udp_offload_fixtures.ts";
import type { CapturedUdp } from "./helpers/pcap.ts";
import { captureUdp } from "./helpers/tcpdump.ts";
import { until } from "./helpers/wait.ts";
import { ping } from "./helpers/ping.ts";

const helper = (f: string) => new URL(`./helpers/${f}`, import.meta.url).pathname;

const UNDER_A = "192.168.77.1";
const UNDER_B = "192.168.77.2";
/** A second address on A's veth that holds no lease: datagrams from it are spoofed. */
const SPOOFED = "192.168.77.99";
const NETWORK = "10.99.0.0/16";
const SUBNET_A = "10.99.1.0/24";
const SUBNET_B = "10.99.2.0/24";
/** "Container" addresses on a bridge in each namespace, as docker0/cni0 would hold. */
const HOST_A = "10.99.1.1";
const HOST_B = "10.99.2.1";
const PORT = 8285;

function startNode(
  ns: string,
  under: string,
  subnet: string,
  peer: string,
  offloads: boolean,
): LineProcess {
  return nsDeno(
    `udp node ${ns}`,
    ns,
    helper("udp_node.ts"),
    "--iface",
    "veth0",
    "--addr",
    under,
    "--network",
    NETWORK,
    "--subnet",
    subnet,
    "--peer",
    peer,
    "--offloads",
    String(offloads),
  );
}

async function stats(node: LineProcess): Promise<Record<string, number>> {
  await node.send("stats");
  return JSON.parse((await node.waitLine("STATS ")).slice(6));
}

function delta(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]));
}

/** Child processes of the running test, killed at its end. */
const procs: LineProcess[] = [];

/** The two nodes of a pair and their namespaces. */
interface Pair {
  nsA: string;
  nsB: string;
  a: LineProcess;
  b: LineProcess;
}

/** Two namespaces joined by a veth, a "container" bridge in each, a udp node in each. */
async function startPair(prefix: string, offA: boolean, offB: boolean): Promise<Pair> {
  const nsA = `${prefix}-a`, nsB = `${prefix}-b`;
  await addNetns(nsA);
  await addNetns(nsB);
  await addVeth(nsA, "veth0", nsB, "veth0");
  for (const [ns, under, host] of [[nsA, UNDER_A, HOST_A], [nsB, UNDER_B, HOST_B]]) {
    await setAddr(ns, "veth0", `${under}/24`);
    await ip(ns, "link", "set", "veth0", "up");
    await addBridge(ns, "cni0");
    await setAddr(ns, "cni0", `${host}/24`);
  }
  await ip(nsA, "addr", "add", `${SPOOFED}/24`, "dev", "veth0");
  const a = startNode(nsA, UNDER_A, SUBNET_A, `${SUBNET_B}=${UNDER_B}`, offA);
  const b = startNode(nsB, UNDER_B, SUBNET_B, `${SUBNET_A}=${UNDER_A}`, offB);
  procs.push(a, b);
  assertEquals(await a.waitLine("READY"), "READY mtu=1472");
  await b.waitLine("READY");
  return { nsA, nsB, a, b };
}

/** Runs `body` against a fresh pair, then tears everything down. */
async function withPair(offA: boolean, offB: boolean, body: (p: Pair) => Promise<void>) {
  const prefix = `flud-${crypto.randomUUID().slice(0, 6)}`;
  try {
    await body(await startPair(prefix, offA, offB));
  } finally {
    await Promise.all(procs.splice(0).map((p) => p.kill()));
    deleteNetnsSync(`${prefix}-a`);
    deleteNetnsSync(`${prefix}-b`);
  }
}

/** Pings `to` from `ns`; the reply's TTL shows one decrement per Worker on the way back. */
async function pingTTL(ns: string, to: string): Promise<void> {
  const r = await nsExec(ns, "ping", ["-n", "-c", "3", "-i", "0.2", "-W", "2", "-w", "5", to]);
  assert(r.code === 0, r.stdout + r.stderr);
  // 64, −1 by our sender, −1 by the peer's receiver (as upstream): the reply shows 62.
  assertMatch(r.stdout, new RegExp(`from ${to.replaceAll(".", "\\.")}: icmp_seq=1 ttl=62`));
}

/** Sends `bytes` pseudo-random bytes over TCP from `fromNs` to `toHost` in `toNs`: sha256 equal. */
async function transfer(fromNs: string, toNs: string, toHost: string, bytes: number) {
  const server = nsDeno("tcp sink", toNs, helper("tcp_blob.ts"), "serve", toHost, "5001");
  procs.push(server);
  await server.waitLine("LISTENING");
  const r = await nsExec(fromNs, Deno.execPath(), [
    "run",
    "-A",
    helper("tcp_blob.ts"),
    "send",
    toHost,
    "5001",
    String(bytes),
  ], { timeoutMs: 30_000 });
  assert(r.code === 0, r.stderr);
  const [, sentN, sentSha] = r.stdout.trim().split(" ");
  const [, gotN, gotSha] = (await server.waitLine("RECEIVED", 30_000)).split(" ");
  assertEquals([Number(gotN), gotSha], [Number(sentN), sentSha]);
  assertEquals(Number(gotN), bytes);
}

/**
 * Sends `count` datagrams of `size` bytes back to back (one sendmmsg) from `fromNs` to
 * `toHost` in `toNs`; returns how many arrived and how many of those were not as sent.
 */
async function udpBurst(
  fromNs: string,
  toNs: string,
  toHost: string,
  count: number,
  size: number,
): Promise<{ received: number; bad: number }> {
  const burst = (label: string, mode: string, last: number) =>
    nsDeno(
      label,
      mode === "recv" ? toNs : fromNs,
      helper("udp_burst.ts"),
      mode,
      toHost,
      "5002",
      String(count),
      String(last),
    );
  const server = burst("udp sink", "recv", 5000);
  procs.push(server);
  await server.waitLine("LISTENING");
  const sender = burst("udp burst", "send", size);
  procs.push(sender);
  await sender.waitLine("SENT", 15_000);
  const [, n, bad] = (await server.waitLine("RECEIVED", 15_000)).split(" ");
  return { received: Number(n), bad: Number(bad) };
}

/** Multi-MB transfers both ways, then no datagram was dropped as malformed on either side. */
async function transferBothWays(p: Pair, bytes = 8 << 20): Promise<void> {
  await transfer(p.nsA, p.nsB, HOST_B, bytes);
  await transfer(p.nsB, p.nsA, HOST_A, bytes);
  for (const node of [p.a, p.b]) {
    const s = await stats(node);
    assertEquals([s.rx_drop_malformed, s.tx_drop_malformed], [0, 0], JSON.stringify(s));
  }
}

/** The UDP datagrams to port 8285 that tcpdump sees on `ns`'s veth0 while `during` runs. */
async function capture(
  ns: string,
  filter: string,
  during: () => Promise<void>,
): Promise<CapturedUdp[]> {
  return (await captureUdp(ns, "veth0", filter, during)).filter((g) => g.dstPort === PORT);
}

/**
 * Checks that a captured UDP payload is what the wire carries: one IPv4/TCP packet, or (a
 * UDP GSO train seen before segmentation, as on a veth) equal-sized packets but the last,
 * each exactly its total length, TTL 64 − 1, IP and TCP checksums valid. Returns how many.
 */
function assertPlainIPv4Train(payload: Uint8Array): number {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const size = v.getUint16(2);
  let n = 0;
  for (let off = 0; off < payload.length; off += size, n++) {
    const len = Math.min(size, payload.length - off);
    const pkt = payload.subarray(off, off + len);
    assertEquals(pkt[0] >> 4, 4, "IPv4");
    assertEquals(v.getUint16(off + 2), len, "each datagram is exactly one IPv4 packet");
    assert(len <= 1472, `${len} bytes exceed the TUN MTU`);
    assertEquals(pkt[8], 63, "inner TTL 64 − 1 on every segment");
    assertEquals(internetChecksum(v, off, (pkt[0] & 15) * 4), 0, "inner header checksum");
    assert(refTcpValid(pkt), "inner TCP checksum");
  }
  return n;
}

Deno.test({
  name: "udp data path between two namespaces (offloads on)",
  ...ROOT_TEST,
}, (t) =>
  withPair(true, true, async ({ nsA, nsB, a, b }) => {
    const link = await ip(nsA, "-d", "link", "show", "flannel0");
    assertMatch(link, /POINTOPOINT.*UP.* mtu 1472 .*qlen 5000/s);
    assertMatch(link, /tun type tun pi off vnet_hdr on/);
    assertMatch(await ip(nsA, "addr", "show", "flannel0"), /inet 10\.99\.1\.0\/32/);
    assertMatch(await ip(nsA, "route", "show", NETWORK), /dev flannel0/);
    const features = await stats(a);
    assertEquals(
      [features.feature_tun_tso, features.feature_udp_gso, features.feature_udp_gro],
      [1, 1, 1],
    );

    await t.step("ping crosses the tunnel, TTL decremented on both sides", () =>
      pingTTL(nsA, HOST_B));

    await t.step("multi-MB TCP transfers arrive intact both ways, as super-packets", async () => {
      await transferBothWays({ nsA, nsB, a, b });
      const sa = await stats(a), sb = await stats(b);
      assert(sa.tx_tso_superpackets > 0 && sa.tx_gso_sends > 0, JSON.stringify(sa));
      assert(sb.rx_coalesced_superpackets > 0, JSON.stringify(sb));
    });
    await t.step(
      "a burst of small UDP datagrams arrives intact, in UDP super-packets",
      async () => {
        const before = await stats(b);
        // 150: the receiving socket's default buffer (~208 KiB) holds them all at once.
        const got = await udpBurst(nsA, nsB, HOST_B, 150, 64);
        assertEquals(got, { received: 150, bad: 0 });
        const d = delta(await stats(b), before);
        if (before.feature_udp_coalesce === 1) { // the kernel takes UDP super-packets (≥ 6.2)
          assert(d.rx_coalesced_superpackets > 0, JSON.stringify(d));
          assert(d.rx_tun_writes < 150, `${d.rx_tun_writes} TUN writes for 150 datagrams`);
        }
      },
    );

    await t.step(
      "garbage datagrams are dropped, counted by reason, forwarding goes on",
      async () => {
        const before = await stats(b);
        const junk = crypto.getRandomValues(new Uint8Array(100));
        junk[0] = 0xff; // never IPv4
        const badSum = ipv4Packet(HOST_A, HOST_B);
        badSum[10] ^= 0x5a;
        const fromPeer = [
          junk,
          ipv4Packet(HOST_A, HOST_B).slice(0, 12), // truncated header
          badSum,
          ipv4Packet(HOST_A, "10.99.3.5"), // not B's subnet
          ipv4Packet(HOST_A, HOST_B, 1), // TTL would reach 0
          ipv4Packet(HOST_A, HOST_B), // fine: forwarded
        ];
        const inject = (from: string, pkts: Uint8Array[]) =>
          injectUdp(nsA, from, UNDER_B, PORT, pkts);
        await inject(UNDER_A, fromPeer);
        await inject(SPOOFED, [ipv4Packet(HOST_A, HOST_B)]); // well-formed, but not from a peer
        // Counters are updated per batch: wait for the last two datagrams' drops to show.
        const d = await until("the drops counted", async () => {
          const d = delta(await stats(b), before);
          if (d.rx_drop_unknown_source >= 1 && d.rx_drop_ttl >= 1) {
            return d;
          }
          throw new Error(`counted so far: ${JSON.stringify(d)}`);
        }, 5000);
        assertEquals(
          [d.rx_drop_malformed, d.rx_drop_not_our_subnet, d.rx_drop_unknown_source, d.rx_drop_ttl],
          [3, 1, 1, 1],
        );
        assert(d.rx_packets >= 1, "the well-formed datagram from the peer was forwarded");
        const p = await ping(nsA, HOST_B, { count: 2 });
        assert(p.ok && p.loss === 0, p.output);
      },
    );

    await t.step(
      "unknown overlay destination: ICMP net-unreachable from the TUN address",
      async () => {
        const before = await stats(a);
        // TCP: the SYN gets ICMP type 3 code 0 back, which aborts connect() with ENETUNREACH.
        const r = await nsExec(nsA, Deno.execPath(), [
          "eval",
          "try { await Deno.connect({ hostname: '10.99.9.1', port: 80 }); console.log('CONNECTED') } catch (e) { console.log(e.message) }",
        ], { timeoutMs: 15_000 });
        assertMatch(r.stdout, /Network is unreachable/);
        // ping: no ICMP errors about ICMP (as upstream's proxy), the request is just dropped.
        const p = await ping(nsA, "10.99.9.1", { count: 1, timeout: 1 });
        assert(!p.ok);
        const d = delta(await stats(a), before);
        assert(d.tx_icmp_unreachable >= 1, JSON.stringify(d));
        assert(d.tx_drop_no_route >= d.tx_icmp_unreachable + 1, JSON.stringify(d));
        assertEquals(d.tx_packets, 0);
      },
    );

    await t.step("underlay carries raw IPv4 in UDP 8285, TTL one lower", async () => {
      const grams = await capture(nsA, `udp port ${PORT}`, async () => {
        const p = await ping(nsA, HOST_B, { count: 3 });
        assert(p.ok, p.output);
      });
      assert(grams.length >= 6, `captured ${grams.length} datagrams`);
      for (const g of grams) {
        assertEquals(g.payload[0], 0x45, "payload is a bare IPv4 header");
        assertEquals(g.payload[8], 63, "inner TTL 64 − 1");
        assertEquals(g.srcPort, PORT);
        const inner = new DataView(g.payload.buffer);
        assertEquals(internetChecksum(inner, 0, 20), 0, "inner header checksum still valid");
        // Host-originated: the inner source is the sender's flannel0 address (its subnet).
        const senderSubnet = formatIP4(g.src) === UNDER_A ? SUBNET_A : SUBNET_B;
        assert(
          contains4(parseCIDR4(senderSubnet)!, inner.getUint32(12)),
          `outer ${formatIP4(g.src)} carries inner source ${formatIP4(inner.getUint32(12))}`,
        );
      }
    });

    await t.step("TCP bulk on the underlay: plain IPv4 packets, one per datagram", async () => {
      const grams = await capture(
        nsB,
        `udp dst port ${PORT}`,
        () =>
          transfer(nsA, nsB, HOST_B, 1 << 20),
      );
      const packets = grams.reduce((n, g) => n + assertPlainIPv4Train(g.payload), 0);
      assert(packets >= 700, `captured ${packets} packets in ${grams.length} datagrams`);
    });

    await t.step("stop ends the Workers promptly and the TUN goes with its fd", async () => {
      const t0 = Date.now();
      await a.send("quit");
      await a.waitLine("STOPPED", 5000);
      const took = Date.now() - t0;
      assert(took < 1500, `stop took ${took} ms`);
      const gone = await nsExec(nsA, "ip", ["link", "show", "flannel0"]);
      assert(gone.code !== 0, "flannel0 still exists after stop");
      assertEquals((await a.status).code, 0);
      await b.send("quit");
      await b.waitLine("STOPPED", 5000);
    });
  }));

Deno.test({
  name: "udp data path with offloads off on both sides",
  ...ROOT_TEST,
}, (t) =>
  withPair(false, false, async (p) => {
    assertMatch(await ip(p.nsA, "-d", "link", "show", "flannel0"), /vnet_hdr off/);
    const s = await stats(p.a);
    assertEquals([s.feature_tun_tso, s.feature_udp_gso, s.feature_udp_gro], [0, 0, 0]);
    await t.step("ping, TTL decremented on both sides", () => pingTTL(p.nsA, HOST_B));
    await t.step("multi-MB TCP transfers arrive intact both ways", () => transferBothWays(p));
  }));

Deno.test({
  name: "udp data path, mixed pair: offloads on one side only",
  ...ROOT_TEST,
}, (t) =>
  withPair(true, false, async (p) => {
    await t.step("ping both ways", async () => {
      await pingTTL(p.nsA, HOST_B);
      await pingTTL(p.nsB, HOST_A);
    });
    await t.step("multi-MB TCP transfers arrive intact both ways", async () => {
      await transferBothWays(p);
      // B (no GRO) got every GSO train as separate datagrams, each one plain IPv4 packet.
      const sb = await stats(p.b);
      assertEquals(sb.rx_gro_buffers, 0);
      assert(sb.rx_packets > (8 << 20) / 1472, JSON.stringify(sb));
    });
    await t.step(
      "UDP GSO refused at run time: plain datagrams from then on, data intact",
      async () => {
        // Segments of 1472 + 28 bytes no longer fit the underlay: the kernel refuses the GSO
        // send (EINVAL) and the sender falls back (the datagrams get IP-fragmented).
        await ip(p.nsA, "link", "set", "veth0", "mtu", "1400");
        await transfer(p.nsA, p.nsB, HOST_B, 2 << 20);
        const sa = await stats(p.a);
        assertEquals([sa.feature_udp_gso, sa.tx_drop_send], [0, 0], JSON.stringify(sa));
      },
    );
  }));

Deno.test({
  name: "TUN offloads refused by the kernel: the device is reopened plain",
  ...ROOT_TEST,
}, async () => {
  const ns = `flud-${crypto.randomUUID().slice(0, 6)}-t`;
  try {
    await addNetns(ns);
    // 0x40000000 is no TUN_F_* bit: TUNSETOFFLOAD fails with EINVAL.
    const r = await nsExec(ns, Deno.execPath(), [
      "eval",
      `import { TunDevice } from "${new URL("../ffi/tun.ts", import.meta.url).href}";
       const d = TunDevice.open({ name: "tun%d", offloads: 0x40000000 });
       console.log(JSON.stringify({ offloads: d.offloads, vnet: d.vnetHdr, error: d.offloadError?.message }));`,
    ]);
    assert(r.code === 0, r.stderr);
    const got = JSON.parse(r.stdout);
    assertEquals([got.offloads, got.vnet], [0, false]);
    assertMatch(got.error, /TUNSETOFFLOAD.*EINVAL/);
  } finally {
    deleteNetnsSync(ns);
  }
});
