/**
 * Demo (`deno task demo [--backend=udp|vxlan|host-gw] [--hosts=3] [--containers=2]`):
 * brings up hosts in network namespaces with a real etcd and our daemon on each, shows
 * the leases and every subnet.env, pings every container from every other one, prints
 * what it saw and cleans up. Exits 1 if any ping got no reply. Needs root.
 * @module
 */

import { type BackendType, Cluster, SUBNETS_PREFIX } from "./helpers/cluster.ts";
import { formatPingMatrix, formatPingSummary } from "./helpers/ping.ts";

/** Value of `--name=value` or `--name value`, else `def`. */
function flag(name: string, def: string): string {
  const args = Deno.args;
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
    if (args[i] === `--${name}` && i + 1 < args.length) return args[i + 1];
  }
  return def;
}

function section(title: string): void {
  console.log(`\n== ${title}`);
}

async function main(): Promise<number> {
  const backend = flag("backend", "udp") as BackendType;
  const hosts = Number(flag("hosts", "3"));
  const containersPerHost = Number(flag("containers", "2"));
  console.log(
    `bringing up ${hosts} hosts × ${containersPerHost} containers, backend ${backend}, etcd in its own namespace…`,
  );
  const started = Date.now();
  await using c = await Cluster.create({ hosts, containersPerHost, backend });
  console.log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s (namespaces ${c.prefix}-*)`);

  section(`leases (etcdctl get --prefix ${SUBNETS_PREFIX})`);
  console.log((await c.etcd.ctl("get", "--prefix", SUBNETS_PREFIX)).trimEnd());
  for (const h of c.hosts) {
    section(`${h.name}: underlay ${h.ip}, subnet.env`);
    console.log((await Deno.readTextFile(h.daemon.subnetFile)).trimEnd());
    console.log(`containers: ${h.containers.map((x) => `${x.name}=${x.ip}`).join(" ")}`);
  }

  section("ping every container from every other (3 echoes each; avg RTT in ms)");
  const pairs = await c.pingAll({ count: 3 });
  console.log(formatPingMatrix(pairs));
  const failed = pairs.filter((p) => !p.result.ok);
  section("summary");
  console.log(formatPingSummary(pairs));
  for (const p of failed) {
    console.log(`FAILED ${p.from.name} (${p.from.ip}) → ${p.to.name} (${p.to.ip})`);
  }
  if (failed.length) {
    for (const h of c.hosts) {
      section(`${h.name} daemon log (last 20 lines)`);
      console.log(c.daemonLog(h).trimEnd().split("\n").slice(-20).join("\n"));
    }
  }
  return failed.length ? 1 : 0;
}

try {
  Deno.exitCode = await main();
} catch (e) {
  console.error(`demo failed: ${e instanceof Error ? e.message : e}`);
  Deno.exitCode = 1;
}
