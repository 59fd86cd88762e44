// Unit tests for the benchmark's pure pieces: option parsing, log/monitor line parsers,
// percentiles, fake peers and table layout.
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { formatLine } from "../../lib/core/log.ts";
import { makePeers } from "../../bench/control_plane.ts";
import { parseOptions } from "../../bench/options.ts";
import { percentile } from "../../bench/proc.ts";
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
