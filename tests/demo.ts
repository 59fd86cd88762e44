/**
 * Demo (`deno task demo [--backend=udp|vxlan|host-gw] [--hosts=3] [--containers=2] [--ipv6]`):
 * brings up hosts in network namespaces with a real etcd and our daemon on each, shows
 * the leases and every subnet.env, pings every container from every other one, prints
 * what it saw and cleans up. `--ipv6` makes the underlay and the network dual-stack and
 * pings over IPv6 too (vxlan and host-gw; udp carries IPv4 only). Exits 1 if any ping got
 * no reply. Needs root.
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
  const ipv6 = Deno.args.includes("--ipv6");
  if (ipv6 && backend === "udp") {
    console.error("--ipv6 needs --backend=vxlan or --backend=host-gw: udp carries IPv4 only");
    return 2;
  }
  console.log(
    `bringing up ${hosts} hosts × ${containersPerHost} containers, backend ${backend}${
      ipv6 ? ", dual stack" : ""
    }, etcd in its own namespace…`,
  );
  const started = Date.now();
  await using c = await Cluster.create({ hosts, containersPerHost, backend, ipv6 });
  console.log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s (namespaces ${c.prefix}-*)`);

  section(`leases (etcdctl get --prefix ${SUBNETS_PREFIX})`);
  console.log((await c.etcd.ctl("get", "--prefix", SUBNETS_PREFIX)).trimEnd());
  for (const h of c.hosts) {
    section(`${h.name}: underlay ${h.ip}, subnet.env`);
    console.log((await Deno.readTextFile(h.daemon.subnetFile)).trimEnd());
    const addrs = (x: { ip: string | null; ip6: string | null }) =>
      [x.ip, x.ip6].filter((a) => a).join(",");
    console.log(`containers: ${h.containers.map((x) => `${x.name}=${addrs(x)}`).join(" ")}`);
  }

  const pairs = [];
  for (const family of ipv6 ? [4, 6] as const : [4] as const) {
    const v = family === 6 ? "IPv6 (ping6)" : "IPv4";
    section(`${v}: ping every container from every other (3 echoes each; avg RTT in ms)`);
    const got = await c.pingAll({ count: 3 }, family);
    console.log(formatPingMatrix(got));
    pairs.push(...got);
  }
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
