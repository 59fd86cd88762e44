// Unit tests for the benchmark's pure pieces: option parsing, log/monitor line parsers,
// percentiles, fake peers, table layout, kernel counters, smaps and the upstream ratios.
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { formatLine } from "../../lib/core/log.ts";
import { makePeers } from "../../bench/control_plane.ts";
import { parseOptions } from "../../bench/options.ts";
import { percentile } from "../../bench/proc.ts";
import {
  delta,
  isLoss,
  lossSummary,
  parseBackendMetrics,
  parseSnmp,
} from "../../bench/counters.ts";
import { parseSmaps } from "../../bench/memory.ts";
import { controlPlaneRatioTable } from "../../bench/report.ts";
import { formatTable } from "../../bench/report.ts";
import { parseKlogLine, parseMonitorLine } from "../../bench/watch.ts";
import { parsePing } from "../helpers/ping.ts";

Deno.test("parseKlogLine reads back what formatLine writes", () => {
  const at = new Date(Date.UTC(2026, 10, 22, 6, 10, 7, 376));
  const ev = parseKlogLine(
    formatLine("I", "udp", "subnet added", { subnet: "10.200.0.0/24" }, at),
    2026,
  );
  assertEquals(ev, { t: at.getTime(), text: "subnet added subnet=10.200.0.0/24" });
  assertEquals(parseKlogLine("not a log line"), null);
});

Deno.test("parseMonitorLine: local time with microseconds", () => {
  const ev = parseMonitorLine(
    "[2026-11-22T06:10:07.376809] 10.9.2.0/24 via 10.9.2.0 dev vx onlink ",
  );
  assertEquals(ev?.text, "10.9.2.0/24 via 10.9.2.0 dev vx onlink ");
  assert(Math.abs(ev!.t - (new Date(2026, 10, 22, 6, 10, 7).getTime() + 376.809)) < 1e-6);
  assertEquals(parseMonitorLine("Deleted 10.9.2.0/24"), null);
});

Deno.test("percentile: nearest rank", () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  assertEquals(percentile(xs, 50), 50);
  assertEquals(percentile(xs, 99), 99);
  assertEquals(percentile([7], 99), 7);
  assert(Number.isNaN(percentile([], 50)));
});

Deno.test("parsePing keeps per-reply RTTs", () => {
  const out = "64 bytes from 10.5.2.2: icmp_seq=1 ttl=62 time=0.061 ms\n" +
    "64 bytes from 10.5.2.2: icmp_seq=2 ttl=62 time=0.137 ms\n" +
    "2 packets transmitted, 2 received, 0% packet loss, time 10ms\n" +
    "rtt min/avg/max/mdev = 0.061/0.099/0.137/0.038 ms\n";
  assertEquals(parsePing(out).samples, [0.061, 0.137]);
});

Deno.test("parsePing reads BusyBox's summary (ping inside a container)", () => {
  const out = "PING 10.5.52.1 (10.5.52.1): 56 data bytes\n" +
    "64 bytes from 10.5.52.1: seq=0 ttl=64 time=0.147 ms\n" +
    "64 bytes from 10.5.52.1: seq=1 ttl=64 time=0.101 ms\n\n" +
    "--- 10.5.52.1 ping statistics ---\n" +
    "3 packets transmitted, 2 packets received, 33% packet loss\n" +
    "round-trip min/avg/max = 0.101/0.124/0.147 ms\n";
  const r = parsePing(out);
  assertEquals([r.sent, r.received, r.ok], [3, 2, true]);
  assertEquals(r.rtt, { min: 0.101, avg: 0.124, max: 0.147 });
  assertEquals(r.samples, [0.147, 0.101]);
  const none = parsePing("2 packets transmitted, 0 packets received, 100% packet loss\n");
  assertEquals([none.ok, none.loss, none.rtt], [false, 1, null]);
});

Deno.test("makePeers: distinct subnets and public IPs, skipping our own subnet", () => {
  const peers = makePeers(3, "vxlan", "10.200.1.0/24");
  assertEquals(peers.map((p) => p.subnet), ["10.200.0.0/24", "10.200.2.0/24", "10.200.3.0/24"]);
  assertEquals(peers.map((p) => p.publicIP), ["172.16.0.1", "172.16.0.3", "172.16.0.4"]);
  assertEquals(peers[1].key, "/coreos.com/network/subnets/10.200.2.0-24");
  assertEquals(
    peers[1].value,
    '{"PublicIP":"172.16.0.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:02"}}',
  );
  assertEquals(
    makePeers(1, "udp", "10.0.0.0/24")[0].value,
    '{"PublicIP":"172.16.0.1","PublicIPv6":null}',
  );
});

Deno.test("parseOptions: defaults, --quick and lists", () => {
  const d = parseOptions([]);
  assertEquals(d.seconds, 5);
  assertEquals(d.pings, 200);
  assertEquals(d.only, null);
  assertEquals(d.peerCounts, [10, 100, 1000]);
  const q = parseOptions(["--quick", "--only=udp,kernel-vxlan", "--seconds=2"]);
  assertEquals(q.seconds, 2);
  assertEquals(q.pings, 50);
  assertEquals([...q.only!], ["udp", "kernel-vxlan"]);
  assertThrows(() => parseOptions(["--seconds=0"]), Error, "--seconds must be a positive number");
  assertThrows(() => parseOptions(["--bogus"]), Error, "--bogus");
});

Deno.test("formatTable aligns columns and prints one-cell rows as they are", () => {
  assertEquals(
    formatTable(["path", "TCP"], [["raw", "9 Gb/s"], ["udp: n/a"], ["vxlan", "10 Gb/s"]]),
    "path       TCP\n" +
      "-----  -------\n" +
      "raw     9 Gb/s\n" +
      "udp: n/a\n" +
      "vxlan  10 Gb/s",
  );
});

Deno.test("parseSnmp: header and value lines pair up per protocol", () => {
  const text = "Ip: Forwarding DefaultTTL InDiscards\nIp: 1 64 3\n" +
    "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 100 2 7 50 5\n";
  assertEquals(parseSnmp(text), {
    "Ip.Forwarding": 1,
    "Ip.DefaultTTL": 64,
    "Ip.InDiscards": 3,
    "Udp.InDatagrams": 100,
    "Udp.NoPorts": 2,
    "Udp.InErrors": 7,
    "Udp.OutDatagrams": 50,
    "Udp.RcvbufErrors": 5,
  });
});

Deno.test("delta and lossSummary: only what changed, only what counts a loss", () => {
  const d = delta(
    { "Udp.RcvbufErrors": 5, "Udp.InDatagrams": 10, "link.flannel0.tx_dropped": 0, x: 1 },
    { "Udp.RcvbufErrors": 9, "Udp.InDatagrams": 30, "link.flannel0.tx_dropped": 2, x: 1 },
  );
  assertEquals(d, { "Udp.RcvbufErrors": 4, "Udp.InDatagrams": 20, "link.flannel0.tx_dropped": 2 });
  assertEquals(lossSummary(d), "Udp.RcvbufErrors 4, link.flannel0.tx_dropped 2");
  assert(!isLoss("Udp.InErrors"), "InErrors repeats RcvbufErrors");
  assertEquals(lossSummary({ "Udp.InDatagrams": 3 }), "-");
});

Deno.test("parseBackendMetrics: the daemon's backend families with their labels", () => {
  const text = [
    "# TYPE flannel_backend_packets_total counter",
    'flannel_backend_packets_total{backend="udp",direction="rx"} 42',
    'flannel_backend_dropped_packets_total{backend="udp",direction="tx",reason="no_route"} 3',
    'flannel_backend_rx_tun_writes_total{backend="udp"} 7',
    "flannel_ready 1",
  ].join("\n");
  assertEquals(parseBackendMetrics(text), {
    "daemon.packets.rx": 42,
    "daemon.dropped_packets.tx.no_route": 3,
    "daemon.rx_tun_writes": 7,
  });
});

Deno.test("parseSmaps: executable, files, heap, 64 MiB-aligned arenas and other anonymous memory", () => {
  const map = (range: string, perm: string, path = "") =>
    `${range} ${perm} 00000000 00:00 0          ${path}`;
  const text = [
    map("55d3b1610000-55d3b319e000", "r--p", "/usr/bin/deno"),
    "Rss:                1000 kB",
    map("55d3b3414000-55d3b7108000", "r-xp", "/usr/bin/deno"),
    "Rss:                2000 kB",
    map("55d3b7200000-55d3b7300000", "rw-p", "[heap]"),
    "Rss:                 300 kB",
    map("7f0000000000-7f0000100000", "rw-p"), // starts on a 64 MiB boundary: an arena
    "Rss:                 400 kB",
    map("7f0000100000-7f0004000000", "---p"), // the rest of that arena
    "Rss:                   0 kB",
    map("7f0008001000-7f0008002000", "rw-p"), // past the arena, not on a boundary: not one
    "Rss:                  50 kB",
    map("7f1000001000-7f1000002000", "rw-p"),
    "Rss:                  60 kB",
    map("7f2000000000-7f2000001000", "r-xp", "/usr/lib/libc.so.6"),
    "Rss:                  70 kB",
  ].join("\n");
  assertEquals(parseSmaps(text, "/usr/bin/deno"), {
    exeCodeKiB: 2000,
    exeDataKiB: 1000,
    otherFilesKiB: 70,
    mainHeapKiB: 300,
    threadArenasKiB: 400,
    otherAnonKiB: 110,
  });
});

Deno.test("controlPlaneRatioTable: ratios where both programmed all, the misses named otherwise", () => {
  const round = (peers: number, ms: number | null, missing = 0) => ({
    peers,
    parallel: 1,
    allProgrammedMs: ms,
    p50Ms: 2,
    p99Ms: 4,
    writeMs: 10,
    lagMs: 1,
    missing,
  });
  const cp = (daemon: "ours" | "upstream", rounds: ReturnType<typeof round>[]) => ({
    backend: "vxlan",
    daemon,
    method: "m",
    rounds,
    rssIdleKiB: daemon === "ours" ? 2048 : 1024,
    rssPeakPeersKiB: 4096,
    peakPeers: 100,
  });
  const table = controlPlaneRatioTable([
    cp("ours", [round(10, 50), round(100, 400)]),
    cp("upstream", [round(10, 100), round(100, null, 5)]),
  ]);
  assert(/vxlan\s+10\s+one by one\s+0\.50×\s+1\.00×\s+1\.00×/.test(table), table);
  assert(table.includes("upstream missed 5"), table);
  assert(table.includes("RSS idle 2.00×, with 100 peers 1.00×"), table);
});
