/**
 * Host churn (root only): 20 lightweight hosts (tests/helpers/churn_hosts.ts: lease
 * manager + watcher each, own etcd client) join and leave at random, one change every
 * 0.5 s, next to 3 full hosts running our daemon with the vxlan backend. Checked: no two
 * leases in etcd ever overlap (listed every 200 ms); at the end every full host's routes,
 * neighbours and FDB entries on flannel.1 are exactly those the live leases need (minus
 * its own); no daemon leaks file descriptors or memory (figures printed). The daemons run
 * with V8's `--gc-global --trace-gc`: every collection is a full one, so RSS is not inflated
 * by garbage V8 has not got round to, and the live JS heap after each is in the log.
 *
 * 60 s of churn in the suite; a soak runs on demand:
 * `FLANNEL_SOAK_SECONDS=600 deno test -A tests/churn_test.ts` (`FLANNEL_CHURN_SEED=<n>`
 * replays a run's sequence of joins and leaves).
 */

import { sleep, timeUntil } from "./helpers/wait.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import type { ChurnResult } from "./helpers/churn_hosts.ts";
import { Cluster, type Host } from "./helpers/cluster.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { nsDeno } from "./helpers/line_process.ts";
import { hostKernel, hostSubnet } from "./helpers/peer_datapath.ts";
import { formatIP, formatIP4, formatNet, formatNet4, parseCIDR4 } from "../lib/core/ip.ts";
import { formatMAC } from "../lib/core/mac.ts";
import { ROOT_TEST } from "./helpers/netns.ts";

const SECONDS = Number(Deno.env.get("FLANNEL_SOAK_SECONDS") ?? 60);
const SEED = Number(Deno.env.get("FLANNEL_CHURN_SEED") ?? (Date.now() % 2 ** 31));
const LIGHT_HOSTS = 20;
const DEVICE = "flannel.1";

/** The kernel entries a host needs for the leases in etcd, and those it has, as sorted lines. */
async function wantAndHave(c: Cluster, h: Host): Promise<{ want: string[]; have: string[] }> {
  const own = formatNet4(hostSubnet(c, h));
  const want: string[] = [];
  for (const l of await c.leases()) {
    const net = parseCIDR4(l.key.slice(l.key.lastIndexOf("/") + 1).replace("-", "/"))!;
    if (formatNet4(net) === own) continue;
    const mac = (l.value.BackendData as { VtepMAC: string }).VtepMAC;
    want.push(
      `route ${formatNet4(net)} via ${formatIP4(net.ip)} onlink`,
      `neigh ${formatIP4(net.ip)} ${mac}`,
      `fdb ${mac} dst ${l.value.PublicIP}`,
    );
  }
  const k = hostKernel(h.ns, DEVICE);
  const have = [
    ...k.routes.filter((r) => r.dev === k.link?.index).map((r) =>
      `route ${formatNet(r.dst)} via ${formatIP(r.gw ?? 0)}${r.onlink ? " onlink" : ""}`
    ),
    ...k.neighs.map((n) => `neigh ${formatIP(n.ip)} ${n.mac ? formatMAC(n.mac) : "-"}`),
    ...k.fdbs.map((f) => `fdb ${formatMAC(f.mac)} dst ${formatIP(f.dst ?? 0)}`),
  ];
  return { want: want.sort(), have: have.sort() };
}

/** Open descriptors, resident memory (kB) and live JS heap after the last full GC (MB) of the host's daemon. */
function usage(h: Host): { fds: number; rssKB: number; heapMB: number } {
  const pid = h.daemon.pid!;
  const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  const rssKB = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]);
  const gcs = [...h.daemon.log().matchAll(/Mark-Compact[^\d]*[\d.]+ \([\d.]+\) -> ([\d.]+) \(/g)];
  return { fds, rssKB, heapMB: Number(gcs.at(-1)?.[1] ?? NaN) };
}

/** Waits until every full host's kernel matches the leases; returns ms taken. */
function converged(c: Cluster, what: string, timeoutMs = 20_000): Promise<number> {
  return timeUntil(
    what,
    async () => {
      for (const h of c.hosts) {
        const { want, have } = await wantAndHave(c, h);
        if (JSON.stringify(want) !== JSON.stringify(have)) return false;
      }
      return true;
    },
    timeoutMs,
    250,
  );
}

Deno.test({
  name:
    `host churn: ${LIGHT_HOSTS} lightweight hosts join and leave for ${SECONDS} s next to 3 vxlan daemons`,
  ...ROOT_TEST,
}, async () => {
  const [deno, run, ...flags] = DEFAULT_DAEMON_COMMAND; // flags end with main.ts
  await using c = await Cluster.create({
    hosts: 3,
    backend: "vxlan",
    // stdbuf: V8 prints GC traces through stdio, block-buffered into the log file otherwise.
    daemonCommand: ["stdbuf", "-oL", deno, run, "--v8-flags=--gc-global,--trace-gc", ...flags],
  });
  console.log(`seed ${SEED} (FLANNEL_CHURN_SEED=${SEED} replays it), ${SECONDS} s of churn`);
  // In etcd's namespace: the lightweight hosts reach the cluster's etcd there.
  const light = nsDeno(
    "churn hosts",
    c.etcdNs,
    new URL("./helpers/churn_hosts.ts", import.meta.url).pathname,
    c.etcd.endpoint,
    String(LIGHT_HOSTS),
    String(SECONDS),
    String(SEED),
  );
  try {
    await light.waitLine("JOINED", 30_000);
    const joinMs = await converged(c, "kernel state for the first leases");
    await sleep(3000); // start-up garbage collected and caches warm before the baseline
    const warm = c.hosts.map(usage);
    console.log(
      `  ${LIGHT_HOSTS} joined; full hosts programmed ${joinMs} ms later; after warm-up: ` +
        warm.map((u, i) => `h${i} ${u.fds} fds, ${u.rssKB} kB RSS, ${u.heapMB} MB heap`).join("; "),
    );

    const r: ChurnResult = JSON.parse(
      (await light.waitLine("RESULT ", (SECONDS + 60) * 1000)).slice(7),
    );
    await light.status;
    console.log(
      `  churn: ${r.joins} joins, ${r.leaves} leaves, ${r.checks} overlap checks, ${r.overlaps.length} overlaps; ${r.live.length} lightweight hosts left`,
    );
    assertEquals(r.overlaps, [], "leases never overlap");
    assert(r.leaves >= SECONDS / 4, `churned: ${r.leaves} leaves`);
    assert(
      !light.stderr.includes("SUBNET CHANGED"),
      `a lightweight host lost its subnet:\n${light.stderr}`,
    );
    assertEquals(
      (await c.leases()).length,
      r.live.length + c.hosts.length,
      "etcd holds exactly the live hosts",
    );

    const ms = await converged(c, "kernel state equal to the live leases");
    for (const h of c.hosts) {
      const { want, have } = await wantAndHave(c, h);
      assertEquals(have, want, `${h.name}'s ${DEVICE} entries`);
      console.log(
        `  ${h.name}: ${have.length} entries = ${
          want.length / 3
        } peers × route/neigh/fdb (converged ${ms} ms after the churn)`,
      );
    }
    await sleep(5000); // the churn's garbage collected (each GC is a full one) before measuring
    const end = c.hosts.map(usage);
    c.hosts.forEach((h, i) => {
      const [w, e] = [warm[i], end[i]];
      const grew = (e.rssKB - w.rssKB) / w.rssKB;
      const heapGrew = (e.heapMB - w.heapMB) / w.heapMB;
      console.log(
        `  ${h.name}: fds ${w.fds} → ${e.fds}, RSS ${w.rssKB} → ${e.rssKB} kB (${
          (grew * 100).toFixed(1)
        } %), ` +
          `live heap ${w.heapMB} → ${e.heapMB} MB (${(heapGrew * 100).toFixed(1)} %)`,
      );
      assert(e.fds <= w.fds + 4, `${h.name} leaks descriptors: ${w.fds} → ${e.fds}`);
      assert(grew <= 0.10, `${h.name} RSS grew ${(grew * 100).toFixed(1)} %`);
      assert(heapGrew <= 0.10, `${h.name} live heap grew ${(heapGrew * 100).toFixed(1)} %`);
    });
  } finally {
    await light.kill();
  }
});
