/**
 * The udp backend's data path between two network namespaces joined by a veth (root only):
 * ping and a bulk TCP transfer through flannel0, garbage datagrams dropped and counted by
 * reason, ICMP net-unreachable for unknown overlay destinations, the wire format seen by
 * tcpdump on the underlay, and an informational iperf3 figure.
 */

import {
  deepStrictEqual as assertEquals,
  match as assertMatch,
  ok as assert,
} from "node:assert/strict";
import { internetChecksum } from "../lib/backend/udp/packet.ts";
import { contains4, formatIP4, parseCIDR4 } from "../lib/ip.ts";
import { LineProcess } from "./helpers/line_process.ts";
import {
  addBridge,
  addNetns,
  addVeth,
  deleteNetnsSync,
  ip,
  nsExec,
  setAddr,
} from "./helpers/netns.ts";
import { injectUdp, ipv4Packet } from "./helpers/packets.ts";
import { udpDatagrams } from "./helpers/pcap.ts";
import { ping } from "./helpers/ping.ts";

const isRoot = Deno.uid() === 0;
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

function startNode(ns: string, under: string, subnet: string, peer: string): LineProcess {
  return new LineProcess(`udp node ${ns}`, "ip", [
    "netns",
    "exec",
    ns,
    Deno.execPath(),
    "run",
    "-A",
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
  ]);
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

Deno.test({
  name: "udp data path between two namespaces",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const prefix = `flud-${crypto.randomUUID().slice(0, 6)}`;
  const nsA = `${prefix}-a`, nsB = `${prefix}-b`;
  const procs: LineProcess[] = [];
  try {
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
    const a = startNode(nsA, UNDER_A, SUBNET_A, `${SUBNET_B}=${UNDER_B}`);
    const b = startNode(nsB, UNDER_B, SUBNET_B, `${SUBNET_A}=${UNDER_A}`);
    procs.push(a, b);
    assertEquals(await a.waitLine("READY"), "READY mtu=1472");
    await b.waitLine("READY");
    const link = await ip(nsA, "-d", "link", "show", "flannel0");
    assertMatch(link, /POINTOPOINT.*UP.* mtu 1472 .*qlen 1000/s);
    assertMatch(link, /tun type tun pi off vnet_hdr off/);
    assertMatch(await ip(nsA, "addr", "show", "flannel0"), /inet 10\.99\.1\.0\/32/);
    assertMatch(await ip(nsA, "route", "show", NETWORK), /dev flannel0/);

    await t.step("ping crosses the tunnel, TTL decremented on both sides", async () => {
      const r = await nsExec(nsA, "ping", [
        "-n",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        "-w",
        "5",
        HOST_B,
      ]);
      assert(r.code === 0, r.stdout + r.stderr);
      // 64, −1 by our sender, −1 by the peer's receiver (as upstream): the reply shows 62.
      assertMatch(r.stdout, /from 10\.99\.2\.1: icmp_seq=1 ttl=62/);
    });

    await t.step("a multi-MB TCP transfer arrives intact", async () => {
      const server = new LineProcess("tcp sink", "ip", [
        "netns",
        "exec",
        nsB,
        Deno.execPath(),
        "run",
        "-A",
        helper("tcp_blob.ts"),
        "serve",
        HOST_B,
        "5001",
      ]);
      procs.push(server);
      await server.waitLine("LISTENING");
      const bytes = 8 << 20;
      const r = await nsExec(nsA, Deno.execPath(), [
        "run",
        "-A",
        helper("tcp_blob.ts"),
        "send",
        HOST_B,
        "5001",
        String(bytes),
      ], { timeoutMs: 30_000 });
      assert(r.code === 0, r.stderr);
      const [, sentN, sentSha] = r.stdout.trim().split(" ");
      const [, gotN, gotSha] = (await server.waitLine("RECEIVED", 30_000)).split(" ");
      assertEquals([Number(gotN), gotSha], [Number(sentN), sentSha]);
      assertEquals(Number(gotN), bytes);
    });

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
        let d: Record<string, number> = {};
        for (let i = 0; i < 50; i++) { // counters are updated per batch: poll briefly
          d = delta(await stats(b), before);
          if (d.rx_drop_unknown_source >= 1 && d.rx_drop_ttl >= 1) break;
          await new Promise((r) => setTimeout(r, 50));
        }
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
      const pcap = await Deno.makeTempFile({ prefix: `${prefix}-`, suffix: ".pcap" });
      try {
        const dump = new LineProcess("tcpdump", "ip", [
          "netns",
          "exec",
          nsA,
          "sh",
          "-c",
          `exec tcpdump -i veth0 -n --immediate-mode -U -w ${pcap} udp port ${PORT} 2>&1`,
        ]);
        procs.push(dump);
        await dump.waitLine("tcpdump: listening", 10_000);
        const p = await ping(nsA, HOST_B, { count: 3 });
        assert(p.ok, p.output);
        await new Promise((r) => setTimeout(r, 200));
        await dump.kill("SIGINT");
        const grams = udpDatagrams(await Deno.readFile(pcap)).filter((g) => g.dstPort === PORT);
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
      } finally {
        await Deno.remove(pcap).catch(() => {});
      }
    });

    await t.step("throughput (informational)", async () => {
      const server = new LineProcess("iperf3 server", "ip", [
        "netns",
        "exec",
        nsB,
        "iperf3",
        "-s",
        "-1",
        "--forceflush",
        "-B",
        HOST_B,
      ]);
      procs.push(server);
      await server.waitLine("Server listening", 10_000);
      const before = await stats(a);
      const r = await nsExec(nsA, "iperf3", ["-c", HOST_B, "-t", "3", "-J"], { timeoutMs: 20_000 });
      const d = delta(await stats(a), before);
      if (r.code !== 0) {
        console.log(`iperf3 failed: ${r.stderr || r.stdout.slice(0, 500)}`);
        return;
      }
      const end = JSON.parse(r.stdout).end;
      const gbps = end.sum_received.bits_per_second / 1e9;
      console.log(
        `udp backend TCP throughput: ${
          gbps.toFixed(2)
        } Gbit/s, retransmits ${end.sum_sent.retransmits}, ` +
          `${
            (d.tx_packets / Math.max(1, d.tx_batches)).toFixed(1)
          } datagrams per sendmmsg; sender side ` +
          JSON.stringify(d),
      );
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
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
    deleteNetnsSync(nsA);
    deleteNetnsSync(nsB);
  }
});
