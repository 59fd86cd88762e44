/**
 * Hostile input to a running 3-host udp cluster (root only): oversized and garbage
 * datagrams on the udp port, unusable lease values in etcd, a config changed to something
 * invalid, a corrupt or unreadable subnet.env at start, and flannel0's address or route
 * deleted under the daemon. Every daemon must keep running, count and log what it rejects
 * (once per bad value, however often it is re-put), and the other hosts' leases and
 * traffic must stay as they were.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { Cluster, type Host, SUBNETS_PREFIX, UNDERLAY } from "./helpers/cluster.ts";
import { sleep, timeUntil, until } from "./helpers/wait.ts";
import { scrapeMetrics } from "./helpers/health_http.ts";
import { ip, ROOT_TEST } from "./helpers/netns.ts";
import { injectUdp, ipv4Packet } from "./helpers/packets.ts";
import { hostSubnet, logCount, reaches } from "./helpers/peer_datapath.ts";
import { metricValue } from "./helpers/prometheus.ts";
import { DEFAULT_UDP_PORT } from "../lib/backend/udp/backend.ts";
import { formatIP4 } from "../lib/core/ip.ts";

const HEALTH_PORT = 9181;

/** `metric{labels}` on host `h`, 0 when absent. */
async function metric(h: Host, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await scrapeMetrics(h, HEALTH_PORT), name, labels) ?? 0;
}

const alive = (h: Host) => h.daemon.alive();

/** Every container reaches every other (one echo each way). */
async function allReach(c: Cluster): Promise<boolean> {
  const cs = c.containers();
  for (const a of cs) for (const b of cs) if (a !== b && !await reaches(a, b)) return false;
  return true;
}

/** The leases as `key value` lines, for comparing before and after. */
async function leaseLines(c: Cluster): Promise<string[]> {
  return (await c.leases()).map((l) => `${l.key} ${l.value.PublicIP}`).sort();
}

Deno.test({
  name:
    "hostile input: garbage datagrams, bad leases and config, broken subnet.env, deleted flannel0 state",
  ...ROOT_TEST,
}, async (t) => {
  await using c = await Cluster.create({
    hosts: 3,
    containersPerHost: 1,
    backend: "udp",
    daemonArgs: [`--healthz-port=${HEALTH_PORT}`],
  });
  const [h0, h1, h2] = c.hosts;
  const leases0 = await leaseLines(c);
  assert(await allReach(c), "all containers reach each other at the start");

  await t.step("oversized and garbage datagrams are counted; forwarding continues", async () => {
    const drops = () => metric(h1, "flannel_backend_dropped_packets_total", { direction: "rx" });
    const malformed = () =>
      metric(h1, "flannel_backend_dropped_packets_total", { direction: "rx", reason: "malformed" });
    const [d0, m0] = [await drops(), await malformed()];
    const big = [0, 1, 2].map(() => crypto.getRandomValues(new Uint8Array(65507)));
    const garbage = Array.from(
      { length: 20 },
      (_, i) => crypto.getRandomValues(new Uint8Array(i * 5)),
    );
    const sn1 = hostSubnet(c, h1);
    const bigValid = ipv4Packet("10.5.99.2", formatIP4(sn1.ip + 2), 64, 65507 - 28); // a real 64 KB packet
    await injectUdp(h0.ns, h0.ip, h1.ip, DEFAULT_UDP_PORT, [...big, bigValid, ...garbage]);
    // A well-formed packet for h1's subnet from an address that holds no lease.
    await injectUdp(c.etcdNs, UNDERLAY.etcd, h1.ip, DEFAULT_UDP_PORT, [
      ipv4Packet("10.5.99.2", formatIP4(sn1.ip + 2)),
    ]);
    await until(
      "drops counted",
      async () => await drops() - d0 >= big.length + garbage.length + 1,
      5000,
    );
    const [d1, m1] = [await drops(), await malformed()];
    const unknown = await metric(h1, "flannel_backend_dropped_packets_total", {
      direction: "rx",
      reason: "unknown_source",
    });
    console.log(
      `  h1 rx drops +${d1 - d0} (malformed +${
        m1 - m0
      }, unknown_source ${unknown}) for ${big.length} random 65507-byte, ` +
        `1 valid 65507-byte, ${garbage.length} garbage (0–95 bytes) and 1 non-peer datagram`,
    );
    assert(m1 - m0 >= big.length + garbage.length, "random datagrams counted as malformed");
    assert(unknown >= 1, "datagram from a non-peer counted");
    assert(await alive(h1), "h1 still running");
    assert(
      await reaches(h0.containers[0], h1.containers[0]) &&
        await reaches(h1.containers[0], h2.containers[0]),
      "forwarding continues",
    );
  });

  await t.step("unusable lease values: logged once each, counted, never routed", async () => {
    const bad: [string, string][] = [
      ["10.5.200.0-24", "{not json"],
      ["10.5.201.0-24", '{"PublicIP":"not an address"}'],
      ["10.5.202.0-24", '{"PublicIP":null}'],
      ["0.0.0.0-0", `{"PublicIP":"${UNDERLAY.host(50)}","PublicIPv6":null}`],
      ["10.6.1.0-24", `{"PublicIP":"${UNDERLAY.host(51)}","PublicIPv6":null}`],
      ["10.5.203.0-26", `{"PublicIP":"${UNDERLAY.host(52)}","PublicIPv6":null}`],
      ["10.5.204.7-24", `{"PublicIP":"${UNDERLAY.host(53)}","PublicIPv6":null}`], // host bits set: not a subnet key
    ];
    const bad0 = await metric(h0, "flannel_watch_bad_leases_total");
    const logged0 = logCount(c, h0, "ignoring unusable lease");
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [k, v] of bad) await c.etcd.ctl("put", `${SUBNETS_PREFIX}/${k}`, v);
    }
    await until(
      "bad leases counted",
      async () => await metric(h0, "flannel_watch_bad_leases_total") - bad0 >= ROUNDS * bad.length,
      10_000,
    );
    await sleep(500); // room for late duplicates: each value must stay logged once
    const counted = await metric(h0, "flannel_watch_bad_leases_total") - bad0;
    for (const h of c.hosts) {
      const lines = c.daemonLog(h).split("\n").filter((l) => l.includes("ignoring unusable lease"));
      for (const [k] of bad) {
        assertEquals(
          lines.filter((l) => l.endsWith(`/${k}`) || l.includes(`/${k} `)).length,
          1,
          `${h.name}: one line for ${k}:\n${lines.join("\n")}`,
        );
      }
      assertEquals(
        await metric(h, "flannel_peers_known"),
        2,
        `${h.name} routes only the 2 real peers`,
      );
    }
    console.log(
      `  ${bad.length} bad values × ${ROUNDS} puts: h0 counted ${counted}, logged ${
        logCount(c, h0, "ignoring unusable lease") - logged0
      } lines`,
    );
    assert(await alive(h0) && await alive(h1) && await alive(h2));
    assert(await allReach(c), "other hosts unaffected");
    for (const [k] of bad) await c.etcd.ctl("del", `${SUBNETS_PREFIX}/${k}`);
  });

  await t.step(
    "config changed to something invalid: one line, daemons keep their config",
    async () => {
      const configKey = "/coreos.com/network/config";
      const original = JSON.stringify(c.networkConfig);
      const line = "network config in etcd changed and invalid";
      try {
        for (let i = 0; i < 3; i++) {
          await c.etcd.ctl("put", configKey, '{"Network":"10.5.0.0/16","Backend":');
        }
        const ms = await timeUntil(
          "config drift logged",
          () => c.hosts.every((h) => logCount(c, h, line) >= 1),
          15_000,
          200,
        );
        await sleep(500); // room for a second line, which must not come
        for (const h of c.hosts) {
          assertEquals(logCount(c, h, line), 1, `${h.name}: one line for the invalid config`);
        }
        console.log(`  invalid config (put 3 times) logged once by every host within ${ms} ms`);
        assert(await allReach(c), "traffic unaffected");
      } finally {
        await c.etcd.ctl("put", configKey, original);
      }
    },
  );

  await t.step("corrupt subnet.env at start: one warning, same lease, file rewritten", async () => {
    const sn = hostSubnet(c, h2);
    assertEquals((await c.stopDaemon(h2))?.code, 0);
    await Deno.writeFile(h2.daemon.subnetFile, crypto.getRandomValues(new Uint8Array(4096)));
    const n0 = logCount(c, h2, "holds no usable FLANNEL_SUBNET");
    const env = await c.startDaemon(h2);
    assertEquals(logCount(c, h2, "holds no usable FLANNEL_SUBNET") - n0, 1);
    assertEquals(
      hostSubnet(c, h2),
      sn,
      `same subnet; subnet.env rewritten: ${JSON.stringify(env)}`,
    );
    console.log(`  garbage subnet.env: one warning, ${env.FLANNEL_SUBNET} kept and rewritten`);
  });

  await t.step(
    "subnet.env path is a directory: warnings, the daemon still leases and runs",
    async () => {
      assertEquals((await c.stopDaemon(h2))?.code, 0);
      await Deno.remove(h2.daemon.subnetFile);
      await Deno.mkdir(h2.daemon.subnetFile);
      const running0 = logCount(c, h2, "] running ");
      const [read0, write0] = [
        logCount(c, h2, "cannot read"),
        logCount(c, h2, "cannot write subnet file"),
      ];
      try {
        h2.daemon.start();
        await until("h2 running", () => logCount(c, h2, "] running ") > running0, 15_000);
        assertEquals(logCount(c, h2, "cannot read") - read0, 1);
        assertEquals(logCount(c, h2, "cannot write subnet file") - write0, 1);
        assert(await alive(h2), "h2 still running");
        assert(await reaches(h0.containers[0], h2.containers[0]), "h2 forwards");
        console.log(
          "  subnet.env is a directory: one read and one write warning; leased and forwarding",
        );
      } finally {
        await c.stopDaemon(h2);
        await Deno.remove(h2.daemon.subnetFile, { recursive: true });
      }
      await c.startDaemon(h2);
    },
  );

  await t.step(
    "flannel0's address or route deleted: repaired within the reconcile interval",
    async () => {
      const probe = async (h: Host, what: string, ...args: string[]) => {
        const lines0 = c.daemonLog(h).split("\n").length;
        const t0 = Date.now();
        await ip(h.ns, ...args);
        await until(
          `${what} on ${h.name} repaired`,
          async () =>
            (await ip(h.ns, "-4", "-o", "addr", "show", "dev", "flannel0")).includes(" 10.5.") &&
            (await ip(h.ns, "route", "show", "dev", "flannel0")).includes("10.5.0.0/16"),
          15_000,
          200,
        );
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        const newLines = c.daemonLog(h).split("\n").slice(lines0 - 1);
        assert(newLines.some((l) => l.includes("repaired flannel0")), `${h.name} logs the repair`);
        assert(await reaches(h.containers[0], h0.containers[0]), `${h.name} reaches h0 again`);
        console.log(
          `  ${what} on ${h.name}: repaired after ${secs} s, ${newLines.length} new log lines`,
        );
        assert(await alive(h), `${h.name} still running`);
        assert(newLines.length < 10, `no log flood (${newLines.length} lines)`);
      };
      const [c0, c2] = [h0.containers[0], h2.containers[0]];
      await probe(h1, "address flushed", "addr", "flush", "dev", "flannel0");
      assert(await reaches(c0, c2) && await reaches(c2, c0), "h0 ↔ h2 unaffected");
      await probe(h2, "route deleted", "route", "del", "10.5.0.0/16", "dev", "flannel0");
      assert(
        (await ip(h0.ns, "route", "show", "dev", "flannel0")).includes("10.5.0.0/16"),
        "h0's route unaffected",
      );
      assert(await allReach(c), "every pair reaches again");
    },
  );

  await t.step("nothing crashed; leases as at the start", async () => {
    for (const h of c.hosts) {
      assert(await alive(h), `${h.name} running`);
    }
    assertEquals(await leaseLines(c), leases0);
  });
});
