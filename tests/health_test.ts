/**
 * Health, metrics and sd_notify of the real daemon in a 2-host udp cluster (root only):
 * /healthz and /readyz answers, /readyz turning 503 when etcd stops answering and 200 when
 * it is back (seconds printed), /metrics parsing and moving with traffic and drops, and
 * READY=1 / WATCHDOG=1 / STOPPING=1 reaching a notify socket the test binds; and in a
 * host-gw cluster, a deleted route showing up as a reconcile repair in /metrics.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { Cluster, type Host } from "./helpers/cluster.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { healthGet, scrapeMetrics } from "./helpers/health_http.ts";
import { nsExec, ROOT_TEST } from "./helpers/netns.ts";
import { sleep, until } from "./helpers/wait.ts";
import { NotifySocket } from "./helpers/notify_socket.ts";
import { injectUdp } from "./helpers/packets.ts";
import { metricValue, type ParsedFamily } from "./helpers/prometheus.ts";
import { DEFAULT_UDP_PORT } from "../lib/backend/udp/backend.ts";

const HEALTH_PORT = 9180;

const get = (h: Host, path: string) => healthGet(h, HEALTH_PORT, path);
const metrics = (h: Host): Promise<Map<string, ParsedFamily>> => scrapeMetrics(h, HEALTH_PORT);

/** Polls /readyz every 250 ms until its status is `want`; returns seconds taken and the last body. */
async function readyzUntil(
  h: Host,
  want: number,
  limitS: number,
  also = (_b: string) => true,
): Promise<{ s: number; body: string }> {
  const t0 = Date.now();
  const body = await until(
    `/readyz on ${h.name} to answer ${want}`,
    async () => {
      const last = await get(h, "/readyz");
      if (last.status === want && also(last.body)) return last.body;
      throw new Error(`last ${last.status}: ${last.body}`);
    },
    limitS * 1000,
    250,
  );
  return { s: (Date.now() - t0) / 1000, body };
}

Deno.test({
  name: "health server, metrics and sd_notify of the running daemon",
  ...ROOT_TEST,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "flannel-health-" });
  const notify = new NotifySocket(`${dir}/notify.sock`);
  const t0 = Date.now();
  // h0 runs under a fake systemd: notify socket and a 1 s watchdog (pings every 0.5 s).
  const cmd = (host: string) =>
    host === "h0"
      ? ["env", `NOTIFY_SOCKET=${notify.path}`, "WATCHDOG_USEC=1000000", ...DEFAULT_DAEMON_COMMAND]
      : DEFAULT_DAEMON_COMMAND;
  await using c = await Cluster.create({
    hosts: 2,
    containersPerHost: 1,
    backend: "udp",
    daemonArgs: [`--healthz-port=${HEALTH_PORT}`],
    daemonCommand: cmd,
  });
  console.log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const [h0, h1] = c.hosts;
  try {
    await t.step("READY=1 after subnet.env was written", async () => {
      await notify.waitFor((m) => m === "READY=1", 10_000);
      const readyAt = notify.times[notify.messages.indexOf("READY=1")];
      const envAt = Deno.statSync(`${h0.dir}/subnet.env`).mtime!.getTime();
      assert(envAt <= readyAt, `subnet.env written (${envAt}) before READY=1 arrived (${readyAt})`);
      assertEquals(notify.messages.filter((m) => m === "READY=1").length, 1);
      await notify.waitFor((m) => m === "WATCHDOG=1", 5000);
    });

    await t.step("/healthz and /readyz answer 200", async () => {
      assertEquals(await get(h0, "/healthz"), { status: 200, body: "flanneld is running" });
      const r = await readyzUntil(h0, 200, 10);
      assertEquals(r.body, "flanneld is ready");
      assertEquals((await get(h0, "/nope")).status, 404);
    });

    await t.step("/metrics parses and moves with traffic and drops", async () => {
      const env1 = c.hostSubnetEnv(h1)!;
      const before = await metrics(h1);
      assertEquals(metricValue(before, "flannel_ready"), 1);
      assertEquals(metricValue(before, "flannel_watch_connected"), 1);
      assertEquals(metricValue(before, "flannel_peers_known"), 1);
      const info = before.get("flannel_lease_info")!.samples[0].labels;
      assertEquals(
        `${info.subnet.split("/")[0].replace(/\.0$/, ".1")}/${info.subnet.split("/")[1]}`,
        env1.FLANNEL_SUBNET,
      );
      assert(metricValue(before, "flannel_lease_expiry_timestamp_seconds")! > Date.now() / 1000);
      const rx0 = metricValue(before, "flannel_backend_packets_total", { direction: "rx" }) ?? 0;
      const bad0 = metricValue(before, "flannel_backend_dropped_packets_total", {
        direction: "rx",
        reason: "malformed",
      }) ?? 0;

      const p = await c.ping(h0.containers[0].ns, h1.containers[0].ip!, { count: 5 });
      assert(p.ok && p.loss === 0, p.output);
      await injectUdp(h0.ns, h0.ip, h1.ip, DEFAULT_UDP_PORT, [
        new Uint8Array([0x45, 1, 2]),
        new Uint8Array([0, 0, 0, 0, 0]),
      ]);
      await until(
        "both garbage datagrams counted",
        async () =>
          (metricValue(await metrics(h1), "flannel_backend_dropped_packets_total", {
            direction: "rx",
            reason: "malformed",
          }) ?? 0) >= bad0 + 2,
      );

      const after = await metrics(h1);
      const rx1 = metricValue(after, "flannel_backend_packets_total", { direction: "rx" })!;
      const bad1 = metricValue(after, "flannel_backend_dropped_packets_total", {
        direction: "rx",
        reason: "malformed",
      })!;
      const tx1 = metricValue(after, "flannel_backend_packets_total", { direction: "tx" })!;
      console.log(`h1 rx packets ${rx0} → ${rx1}, tx ${tx1}, rx malformed drops ${bad0} → ${bad1}`);
      assert(rx1 - rx0 >= 5, `rx packets rose by ${rx1 - rx0}`);
      assertEquals(bad1 - bad0, 2);
      assert(tx1 >= 5);
    });

    await t.step("etcd stops → /readyz 503 with a reason within 20 s; back → 200", async () => {
      const wd0 = notify.messages.length;
      const tStop = Date.now();
      await c.etcd.stop();
      const down = await readyzUntil(h0, 503, 20);
      console.log(`etcd stopped: /readyz 503 after ${down.s.toFixed(1)} s:\n${down.body}`);
      assertStringIncludes(down.body, "flanneld is not ready yet\n");
      const named = await readyzUntil(
        h0,
        503,
        20 - (Date.now() - tStop) / 1000,
        (b) => b.includes("etcd not answering for"),
      );
      console.log(
        `"etcd not answering" reported ${
          ((Date.now() - tStop) / 1000).toFixed(1)
        } s after the stop:\n${named.body}`,
      );
      assertEquals((await get(h0, "/healthz")).status, 200, "liveness is unaffected");
      const m = await metrics(h0);
      assertEquals(metricValue(m, "flannel_ready"), 0);
      assert(metricValue(m, "flannel_etcd_probe_failures_total")! > 0);
      // Watchdog pings stop while not ready (allow one already in flight at the flip).
      const wdDown = notify.messages.slice(wd0).filter((x) => x === "WATCHDOG=1").length;
      await sleep(1500); // 1.5 watchdog periods: no pings may come while not ready
      assert(
        notify.messages.slice(wd0).filter((x) => x === "WATCHDOG=1").length - wdDown <= 1,
        "no watchdog pings while not ready",
      );

      const tBack = Date.now();
      await c.etcd.resume();
      const up = await readyzUntil(h0, 200, 30);
      console.log(
        `etcd back: /readyz 200 ${((Date.now() - tBack) / 1000).toFixed(1)} s after restart (${
          up.s.toFixed(1)
        } s after etcd answered)`,
      );
      await readyzUntil(h1, 200, 15);
      await notify.waitFor((x) => x === "WATCHDOG=1", 5000, notify.messages.length);
    });

    await t.step(
      "etcd frozen (SIGSTOP: connections stay open) → 503 from the probe; SIGCONT → 200",
      async () => {
        const pids = (await nsExec(c.etcdNs, "ip", ["netns", "pids", c.etcdNs])).stdout.trim()
          .split(/\s+/).filter(Boolean);
        assert(pids.length > 0, "etcd pid");
        const signal = (sig: string) =>
          Promise.all(pids.map((p) => nsExec(c.etcdNs, "kill", [`-${sig}`, p])));
        await signal("STOP");
        try {
          const down = await readyzUntil(h0, 503, 20, (b) => b.includes("etcd not answering for"));
          console.log(`etcd frozen: /readyz 503 after ${down.s.toFixed(1)} s:\n${down.body}`);
        } finally {
          await signal("CONT");
        }
        const up = await readyzUntil(h0, 200, 30);
        console.log(`etcd thawed: /readyz 200 after ${up.s.toFixed(1)} s`);
      },
    );

    await t.step("SIGTERM → STOPPING=1", async () => {
      const st = await c.stopDaemon(h0);
      assertEquals(st?.code, 0);
      await notify.waitFor((m) => m === "STOPPING=1", 5000);
    });
  } finally {
    await notify.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "metrics: host-gw reconcile repairs are exported",
  ...ROOT_TEST,
}, async () => {
  await using c = await Cluster.create({
    hosts: 2,
    backend: "host-gw",
    daemonArgs: [`--healthz-port=${HEALTH_PORT}`],
  });
  const [h0, h1] = c.hosts;
  const sub0 = c.hostSubnetEnv(h0)!.FLANNEL_SUBNET.replace(/\.1\//, ".0/");
  await readyzUntil(h1, 200, 10);
  const before = await metrics(h1);
  assertEquals(metricValue(before, "flannel_backend_peers", { backend: "host-gw" }), 1);
  const r0 = metricValue(before, "flannel_backend_repairs_total") ?? 0;
  const del = await nsExec(h1.ns, "ip", ["route", "del", sub0]);
  assertEquals(del.code, 0, del.stderr);
  const t0 = Date.now();
  const after = await until(
    "route repair counted",
    async () => {
      const m = await metrics(h1);
      return (metricValue(m, "flannel_backend_repairs_total", { kind: "route" }) ?? 0) > 0 && m;
    },
    15_000,
    250,
  );
  const byKind = after.get("flannel_backend_repairs_total")?.samples.map((s) =>
    `${s.labels.kind}=${s.value}`
  ).join(" ");
  console.log(
    `route to ${sub0} deleted on h1: repairs ${r0} → ${
      metricValue(after, "flannel_backend_repairs_total")
    } (${byKind}) after ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  assert(
    (metricValue(after, "flannel_backend_repairs_total", { kind: "route" }) ?? 0) >= 1,
    "route repair counted",
  );
});
