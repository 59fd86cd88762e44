/**
 * Demo (root): hosts in network namespaces with a real etcd and our daemon on each.
 *
 *   deno task demo --docker [--backend=udp|vxlan|host-gw] [--hosts=3] [--containers=1]
 *
 * runs the flow flannel's documents describe, with Docker: the config in etcd, flanneld
 * `-iface=eth0 -ip-masq` on every host, its subnet.env, `mk-docker-opts.sh` turning it into
 * dockerd's options, one dockerd per host with BusyBox containers on docker0, and every
 * container pinging every other with `docker exec … ping`; all three backends in turn
 * unless one is named.
 *
 *   deno task demo [--backend=udp|vxlan|host-gw] [--hosts=3] [--containers=2] [--ipv6]
 *
 * does the same without Docker: containers are namespaces on a cni0 bridge configured from
 * subnet.env; `--ipv6` makes the underlay and the network dual-stack and pings over IPv6
 * too (vxlan and host-gw: udp carries IPv4 only). Either prints what it saw, exits 1 if any ping got no reply, and removes
 * everything.
 * @module
 */

import { type BackendType, Cluster, CONFIG_KEY, SUBNETS_PREFIX } from "./helpers/cluster.ts";
import { DockerCluster, IMAGE } from "./helpers/docker.ts";
import { formatPingMatrix, formatPingSummary, type PingPair } from "./helpers/ping.ts";

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

const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** Prints the matrix and a summary; names the failed pairs; returns how many failed. */
function reportPings(pairs: PingPair[], how: string): number {
  section(`${how} (3 echoes each; avg RTT in ms)`);
  console.log(formatPingMatrix(pairs));
  const failed = pairs.filter((p) => !p.result.ok);
  console.log(formatPingSummary(pairs));
  for (const p of failed) {
    console.log(`FAILED ${p.from.name} (${p.from.ip}) → ${p.to.name} (${p.to.ip})`);
  }
  return failed.length;
}

/** Prints each host's daemon log tail (after a failure). */
function daemonLogs(c: Cluster): void {
  for (const h of c.hosts) {
    section(`${h.name} flanneld log (last 20 lines)`);
    console.log(c.daemonLog(h).trimEnd().split("\n").slice(-20).join("\n"));
  }
}

/** The seeds' flow with Docker on one backend; returns the number of failed pairs. */
async function dockerDemo(
  backend: BackendType,
  hosts: number,
  containers: number,
): Promise<number> {
  const started = Date.now();
  console.log(
    `\n######## backend ${backend}: ${hosts} hosts, Docker, ${containers} container(s) each`,
  );
  await using d = await DockerCluster.create({
    hosts,
    backend,
    containersPerHost: containers,
    daemonArgs: ["-ip-masq"],
  });
  const c = d.cluster;
  console.log(`up in ${seconds(started)} (namespaces ${c.prefix}-*, etcd at ${c.etcd.endpoint})`);

  section("the network config in etcd");
  console.log(`$ etcdctl put ${CONFIG_KEY} '${JSON.stringify(c.networkConfig)}'`);
  section("on every host");
  console.log(`$ flanneld -iface=eth0 -etcd-endpoints=${c.etcd.endpoint} -ip-masq`);
  console.log("$ mk-docker-opts.sh     # /run/flannel/subnet.env → /run/docker_opts.env");
  console.log("$ . /run/docker_opts.env && dockerd $DOCKER_OPTS");
  console.log(`$ docker run -d ${IMAGE} sleep 86400`);
  console.log("(here each host keeps these files in its own dir instead of /run)");
  section(`leases (etcdctl get --prefix ${SUBNETS_PREFIX})`);
  console.log((await c.etcd.ctl("get", "--prefix", SUBNETS_PREFIX)).trimEnd());
  for (const dh of d.docker) {
    const h = dh.host;
    section(`${h.name}: underlay ${h.ip}, files in ${h.dir}`);
    console.log("$ cat subnet.env");
    console.log((await Deno.readTextFile(h.daemon.subnetFile)).trimEnd());
    console.log("$ mk-docker-opts.sh -f subnet.env -d docker_opts.env && cat docker_opts.env");
    console.log((await Deno.readTextFile(dh.optsFile)).trimEnd());
    console.log(`$ dockerd ${(await dh.options()).join(" ")}   # + its own root, socket, cgroup`);
    for (const ct of dh.containers) {
      const nic = await dh.nic(ct);
      console.log(`container ${ct.name}: eth0 ${nic.cidr}, mtu ${nic.mtu}`);
    }
  }
  const failed = reportPings(
    await d.pingAll({ count: 3 }),
    "docker exec <from> ping <to>: every container from every other",
  );
  if (failed) daemonLogs(c);
  console.log(`\nbackend ${backend}: ${failed ? "FAILED" : "ok"} in ${seconds(started)}`);
  return failed;
}

/** The same without Docker: namespace containers on cni0; returns the failed pairs. */
async function plainDemo(
  backend: BackendType,
  hosts: number,
  containers: number,
  ipv6: boolean,
): Promise<number> {
  console.log(
    `bringing up ${hosts} hosts × ${containers} containers, backend ${backend}${
      ipv6 ? ", dual stack" : ""
    }, etcd in its own namespace…`,
  );
  const started = Date.now();
  await using c = await Cluster.create({ hosts, containersPerHost: containers, backend, ipv6 });
  console.log(`up in ${seconds(started)} (namespaces ${c.prefix}-*)`);

  section(`leases (etcdctl get --prefix ${SUBNETS_PREFIX})`);
  console.log((await c.etcd.ctl("get", "--prefix", SUBNETS_PREFIX)).trimEnd());
  for (const h of c.hosts) {
    section(`${h.name}: underlay ${h.ip}, subnet.env`);
    console.log((await Deno.readTextFile(h.daemon.subnetFile)).trimEnd());
    const addrs = (x: { ip: string | null; ip6: string | null }) =>
      [x.ip, x.ip6].filter((a) => a).join(",");
    console.log(`containers: ${h.containers.map((x) => `${x.name}=${addrs(x)}`).join(" ")}`);
  }
  let failed = reportPings(await c.pingAll({ count: 3 }), "ping every container from every other");
  if (ipv6) {
    failed += reportPings(
      await c.pingAll({ count: 3 }, 6),
      "IPv6: ping6 every container from every other",
    );
  }
  if (failed) daemonLogs(c);
  return failed;
}

async function main(): Promise<number> {
  const docker = Deno.args.includes("--docker");
  const named = flag("backend", "");
  const hosts = Number(flag("hosts", "3"));
  const containers = Number(flag("containers", docker ? "1" : "2"));
  const ipv6 = Deno.args.includes("--ipv6");
  if (ipv6 && (docker || !["vxlan", "host-gw"].includes(named))) {
    console.error(
      "--ipv6 needs --backend=vxlan or --backend=host-gw (udp carries IPv4 only), without --docker",
    );
    return 2;
  }
  if (!docker) return await plainDemo((named || "udp") as BackendType, hosts, containers, ipv6);
  const backends = (named ? [named] : ["udp", "vxlan", "host-gw"]) as BackendType[];
  const started = Date.now();
  const results: string[] = [];
  let failed = 0;
  for (const b of backends) {
    const f = await dockerDemo(b, hosts, containers);
    failed += f;
    results.push(`${b}: ${f ? `${f} pairs FAILED` : "every container reached every other"}`);
  }
  section(`summary (${seconds(started)})`);
  console.log(results.join("\n"));
  return failed ? 1 : 0;
}

try {
  Deno.exitCode = await main();
} catch (e) {
  console.error(`demo failed: ${e instanceof Error ? e.message : e}`);
  Deno.exitCode = 1;
}
