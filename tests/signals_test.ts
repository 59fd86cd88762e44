/**
 * Signals to the real daemon in a namespace cluster (root only), with the figures printed:
 * SIGTERM stops it cleanly (exit 0) in under 2 s and keeps its lease; SIGKILL and a restart
 * give the same subnet with the data path back within 2 s (udp: the TUN dies with the
 * process) or without traffic ever stopping (vxlan: kernel state outlives the process);
 * SIGHUP re-reads FLANNELD_V from the environment file.
 */

import { sleep, timeUntil } from "./helpers/wait.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { Cluster, type Host } from "./helpers/cluster.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { hostSubnet, leaseKey, logCount } from "./helpers/peer_datapath.ts";
import { firstReplyAfter, longestGap, pingTimes } from "./helpers/ping_times.ts";
import { formatNet4 } from "../lib/core/ip.ts";
import { ROOT_TEST } from "./helpers/netns.ts";

/** A 2-host cluster whose daemons read `$FLANNELD_ENV_FILE` = `<envDir>/<host>.env`. */
function cluster(backend: "udp" | "vxlan", envDir: string): Promise<Cluster> {
  return Cluster.create({
    hosts: 2,
    containersPerHost: 1,
    backend,
    daemonCommand: (
      host,
    ) => ["env", `FLANNELD_ENV_FILE=${envDir}/${host}.env`, ...DEFAULT_DAEMON_COMMAND],
  });
}

/**
 * SIGKILLs `h`'s daemon under a 50 ms ping from the other host's container and starts it
 * again; returns ms from the restart to the first reply, the longest gap, and the losses.
 */
async function killAndRestart(
  c: Cluster,
  h: Host,
): Promise<{ backMs: number; gapMs: number; lost: number }> {
  const from = c.hosts.find((x) => x !== h)!.containers[0];
  const before = c.hostSubnetEnv(h)!.FLANNEL_SUBNET;
  const pinging = pingTimes(from.ns, h.containers[0].ip!, 8);
  await sleep(1000); // replies flowing before the kill
  const kill = await c.stopDaemon(h, "SIGKILL");
  assertEquals(kill?.signal, "SIGKILL");
  await sleep(500); // the host stays down a while, as after a crash
  const tStart = Date.now();
  h.daemon.start();
  const env = await h.daemon.waitSubnetEnv();
  const envMs = Date.now() - tStart;
  const p = await pinging;
  assertEquals(env.FLANNEL_SUBNET, before, "same subnet after SIGKILL and restart");
  const first = firstReplyAfter(p, tStart);
  assert(first !== null, `no reply after the restart:\n${p.output.slice(-2000)}`);
  const r = { backMs: first - tStart, gapMs: longestGap(p), lost: p.sent - p.replies.length };
  console.log(
    `  SIGKILL ${h.name} + restart: subnet.env after ${envMs} ms, first reply ${r.backMs} ms after the start; ` +
      `longest gap ${r.gapMs} ms, ${r.lost}/${p.sent} echoes lost`,
  );
  return r;
}

Deno.test({
  name: "signals on udp: SIGTERM quick and clean, SIGKILL + restart, SIGHUP reloads the log level",
  ...ROOT_TEST,
}, async (t) => {
  const envDir = await Deno.makeTempDir({ prefix: "flannel-signals-" });
  try {
    await using c = await cluster("udp", envDir);
    const [, h1] = c.hosts;

    await t.step("SIGTERM: exit 0 in under 2 s, lease kept in etcd", async () => {
      const sn = hostSubnet(c, h1);
      const t0 = performance.now();
      const status = await c.stopDaemon(h1, "SIGTERM");
      const ms = performance.now() - t0;
      console.log(`  SIGTERM → exit ${status?.code} in ${ms.toFixed(0)} ms`);
      assertEquals(status?.code, 0, c.daemonLog(h1));
      assert(ms < 2000, `took ${ms.toFixed(0)} ms`);
      const kept = (await c.etcd.ctl("get", leaseKey(sn))).split("\n")[1];
      assert(kept?.includes(`"PublicIP":"${h1.ip}"`), `lease of ${formatNet4(sn)} gone: ${kept}`);
      assertEquals(logCount(c, h1, "shutting down; lease and kernel state are kept"), 1);
      assertEquals((await c.startDaemon(h1)).FLANNEL_SUBNET, c.hostSubnetEnv(h1)!.FLANNEL_SUBNET);
    });

    await t.step("SIGKILL + restart: same subnet, data path back within 2 s", async () => {
      const r = await killAndRestart(c, h1);
      assert(r.backMs <= 2000, `data path back after ${r.backMs} ms`);
    });

    await t.step("SIGHUP re-reads FLANNELD_V from $FLANNELD_ENV_FILE", async () => {
      const file = `${envDir}/${h1.name}.env`;
      const hup = async (content: string | null, expect: string) => {
        if (content === null) await Deno.remove(file).catch(() => {});
        else await Deno.writeTextFile(file, content);
        const n0 = logCount(c, h1, expect);
        Deno.kill(h1.daemon.pid!, "SIGHUP");
        const ms = await timeUntil(
          `"${expect}" in ${h1.name}'s log`,
          () => logCount(c, h1, expect) > n0,
          5000,
        );
        await sleep(200); // room for a duplicate line, which must not come
        assertEquals(logCount(c, h1, expect), n0 + 1, `exactly one line "${expect}"`);
        console.log(
          `  SIGHUP with ${
            content === null ? "no file" : JSON.stringify(content)
          }: "${expect}" after ${ms} ms`,
        );
      };
      await hup(
        "# flanneld\nFLANNELD_ETCD_PREFIX=/coreos.com/network\nFLANNELD_V=3\n",
        "log level now 3 (was 0)",
      );
      await hup(null, "cannot read");
      await hup("FLANNELD_V=lots\n", 'invalid value "lots" for FLANNELD_V');
      await hup("export FLANNELD_V='5'\n", "log level now 5 (was 3)");
      await hup("# FLANNELD_V commented out\n", "log level now 0 (was 5)");
      assert(
        await h1.daemon.alive(),
        `daemon exited after SIGHUP:\n${c.daemonLog(h1).slice(-2000)}`,
      );
    });
  } finally {
    await Deno.remove(envDir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "signals on vxlan: SIGKILL + restart does not stop traffic",
  ...ROOT_TEST,
}, async () => {
  const envDir = await Deno.makeTempDir({ prefix: "flannel-signals-" });
  try {
    await using c = await cluster("vxlan", envDir);
    const r = await killAndRestart(c, c.hosts[1]);
    assert(r.gapMs < 500, `traffic stopped for ${r.gapMs} ms`);
    assert(r.lost <= 2, `${r.lost} echoes lost`);
  } finally {
    await Deno.remove(envDir, { recursive: true }).catch(() => {});
  }
});
