/**
 * The flow flannel's users follow with Docker, for real (root, Debian's docker.io): etcd
 * holds the config; flanneld `-iface=eth0 -ip-masq` on each of 3 hosts; mk-docker-opts.sh
 * turns subnet.env into `--bip`, `--ip-masq=false`, `--mtu`; one dockerd per host runs a
 * BusyBox container on docker0. Per backend (one cluster, shared by its checks):
 * containers on different hosts reach each other; a container's eth0 is in FLANNEL_SUBNET
 * with MTU FLANNEL_MTU; traffic between containers keeps their addresses while traffic
 * leaving the overlay takes the host's; restarting flanneld leaves running containers
 * alone. Teardown leaves nothing, also after the owning process was killed.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { cleanupStale } from "./helpers/cleanup.ts";
import { type BackendType, type Container, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { DOCKER_PRESENT, DOCKER_SKIP, DockerCluster } from "./helpers/docker.ts";
import { LineProcess } from "./helpers/line_process.ts";
import { isRoot, listNetns, run } from "./helpers/netns.ts";
import { formatPingMatrix, formatPingSummary } from "./helpers/ping.ts";
import { firstReplyAfter, longestGap, missingSeqs, pingTimes } from "./helpers/ping_times.ts";
import { echoSource } from "./helpers/tcpdump.ts";
import { sleep, until } from "./helpers/wait.ts";
import { formatNet4, parseCIDR4 } from "../lib/core/ip.ts";

if (isRoot && !DOCKER_PRESENT) console.log(DOCKER_SKIP);
const ignore = !isRoot || !DOCKER_PRESENT;

/** The network of a CIDR such as `10.5.52.1/24` → `10.5.52.0/24`. */
function network(cidr: string): string {
  const n = parseCIDR4(cidr);
  if (!n) throw new Error(`bad CIDR ${cidr}`);
  return formatNet4(n);
}

/** What must not change while flanneld restarts: containers, their NICs, dockerd, docker0. */
async function dockerState(d: DockerCluster): Promise<string[]> {
  const out: string[] = [];
  for (const dh of d.docker) {
    out.push(
      `${dh.host.name} dockerd pid ${(await Deno.readTextFile(`${dh.dir}/docker.pid`)).trim()}`,
    );
    out.push(`${dh.host.name} docker0 ${await dh.docker0()}`);
    for (const c of dh.containers) {
      const st = await dh.docker(
        "inspect",
        "--format",
        "{{.State.Pid}} {{.State.StartedAt}}",
        c.name,
      );
      const nic = await dh.nic(c);
      out.push(`${c.name} ${st.trim()} ${nic.cidr} mtu ${nic.mtu}`);
    }
  }
  return out;
}

/** Restarts (SIGTERM, start) the daemon on each of `hosts` under a 20/s ping `from` → `to`. */
async function restartsUnderPing(d: DockerCluster, hosts: Host[], from: Container, to: Container) {
  const c = d.cluster;
  const pinging = pingTimes(from.ns, to.ip!, Math.ceil(4 + 3.5 * hosts.length), 0.05);
  await sleep(1000);
  const marks: { host: Host; stopped: number; envAt: number }[] = [];
  for (const h of hosts) {
    const stopped = Date.now();
    await c.stopDaemon(h);
    await c.startDaemon(h);
    marks.push({ host: h, stopped, envAt: Date.now() });
    await sleep(1500);
  }
  const p = await pinging;
  assert(p.replies.length > 0, `no replies at all:\n${p.output.slice(-1500)}`);
  assert(p.replies.at(-1)! > marks.at(-1)!.envAt + 1000, "the ping outlasted the restarts");
  return { p, marks };
}

for (const backend of ["udp", "vxlan", "host-gw"] as BackendType[]) {
  Deno.test({
    name:
      `docker on ${backend}: 3 hosts, dockerd from mk-docker-opts.sh, containers reach each other`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
  }, async (t) => {
    const t0 = Date.now();
    const d = await DockerCluster.create({ hosts: 3, backend, daemonArgs: ["--ip-masq"] });
    const c = d.cluster;
    const { prefix, dir } = c;
    try {
      console.log(`  cluster with Docker up in ${Date.now() - t0} ms`);

      await t.step("dockerd runs with --bip, --ip-masq=false, --mtu from subnet.env", async () => {
        for (const dh of d.docker) {
          const env = c.hostSubnetEnv(dh.host)!;
          assertEquals(env.FLANNEL_IPMASQ, "true");
          // flanneld masquerades, so Docker must not masquerade a second time.
          assertEquals(await dh.options(), [
            `--bip=${env.FLANNEL_SUBNET}`,
            "--ip-masq=false",
            `--mtu=${env.FLANNEL_MTU}`,
          ]);
          assertEquals(await dh.docker0(), env.FLANNEL_SUBNET, dh.host.name);
          // dockerd's iptables chains are in the host's namespace.
          const filter = await run("ip", [
            "netns",
            "exec",
            dh.host.ns,
            "iptables-save",
            "-t",
            "filter",
          ]);
          assert(filter.stdout.includes(":DOCKER-USER"), `no DOCKER-USER chain in ${dh.host.name}`);
        }
      });

      await t.step(
        "each container's eth0: an address in FLANNEL_SUBNET, MTU FLANNEL_MTU",
        async () => {
          for (const dh of d.docker) {
            const env = c.hostSubnetEnv(dh.host)!;
            for (const ct of dh.containers) {
              const nic = await dh.nic(ct);
              console.log(
                `  ${ct.name}: eth0 ${nic.cidr} mtu ${nic.mtu} (FLANNEL_SUBNET=${env.FLANNEL_SUBNET} FLANNEL_MTU=${env.FLANNEL_MTU})`,
              );
              assertEquals(network(nic.cidr), network(env.FLANNEL_SUBNET), ct.name);
              assert(nic.cidr !== env.FLANNEL_SUBNET, "the container is not the gateway");
              assertEquals(nic.cidr.split("/")[0], ct.ip);
              assertEquals(nic.mtu, Number(env.FLANNEL_MTU), ct.name);
            }
          }
        },
      );

      await t.step(
        "containers on different hosts ping each other (docker exec … ping)",
        async () => {
          const pairs = await d.pingAll({ count: 3 });
          console.log(formatPingMatrix(pairs));
          console.log(`  ${formatPingSummary(pairs)}`);
          const failed = pairs.filter((p) => !p.result.ok).map((p) =>
            `${p.from.name}→${p.to.name}`
          );
          assertEquals(failed, []);
          assertEquals(pairs.length, 6);
        },
      );

      const [a, b] = [d.on(0).containers[0], d.on(1).containers[0]];
      await t.step(
        "between containers the source stays; leaving the overlay it is the host's",
        async () => {
          const inner = await echoSource(b.ns, "eth0", () => d.on(0).ping(a, b.ip!, { count: 2 }));
          assertEquals(inner, a.ip, "container-to-container traffic is not masqueraded");
          let out = null;
          const src = await echoSource(c.switchNs, "br0", async () => {
            out = await d.on(0).ping(a, UNDERLAY.gateway, { count: 2 });
          });
          assertEquals(src, c.host(0).ip, "leaving the overlay, the host's address");
          assert(out!.ok, `no reply from outside the overlay: ${out!.output}`);
        },
      );

      await t.step("restarting flanneld leaves running containers alone", async () => {
        const before = await dockerState(d);
        const subnets = c.hosts.map((h) => c.hostSubnetEnv(h)!.FLANNEL_SUBNET);
        // The host of the pinged container first, then the host of the pinging one.
        const { p, marks } = await restartsUnderPing(d, [c.host(1), c.host(0)], a, b);
        for (const m of marks) {
          const back = firstReplyAfter(p, m.envAt);
          const around = p.replies.filter((x) => x >= m.stopped - 500 && x <= m.envAt + 1500);
          const backMs = back === null ? null : back - m.envAt;
          console.log(
            `  restart ${m.host.name}: subnet.env after ${m.envAt - m.stopped} ms; ` +
              `longest reply gap around it ${longestGap({ ...p, replies: around })} ms; ` +
              `first reply ${backMs ?? "none"} ms after subnet.env`,
          );
          assert(
            backMs !== null && backMs <= 1000,
            `no reply within 1 s of ${m.host.name}'s restart`,
          );
        }
        const lost = missingSeqs(p);
        const sent = p.seqs.at(-1);
        console.log(
          `  ${a.name}→${b.name} at 20/s: ${lost.length} of ${sent} echoes lost in ${marks.length} restarts`,
        );
        if (backend !== "udp") {
          // The kernel forwards on its own: flanneld's restart must not drop a packet.
          assertEquals(lost, [], "echoes lost while flanneld restarted");
        }
        assertEquals(c.hosts.map((h) => c.hostSubnetEnv(h)!.FLANNEL_SUBNET), subnets);
        assertEquals(await dockerState(d), before, "containers, dockerd and docker0 untouched");
        const pairs = await d.pingAll({ count: 1 });
        assertEquals(pairs.filter((x) => !x.result.ok).length, 0, formatPingMatrix(pairs));
      });
    } finally {
      await d.destroy();
    }
    await t.step(
      "teardown leaves no dockerd, container, namespace, cgroup, mount or dir",
      async () => {
        await assertNothingLeft(prefix, dir);
      },
    );
  });
}

/** Processes, namespaces, cgroups, mounts and files of run `prefix` (with temp dir `dir`). */
async function leftovers(prefix: string, dir: string): Promise<string[]> {
  const procs = (await run("pgrep", ["-a", "-f", dir])).stdout.split("\n").filter((l) => l !== "");
  const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
    .filter((l) => l.includes(dir) || l.includes(prefix));
  const cgroups = (await run("sh", [
    "-c",
    `ls -d /sys/fs/cgroup/${prefix}-* /sys/fs/cgroup/*/${prefix}-* 2>/dev/null`,
  ]))
    .stdout.split("\n").filter((l) => l !== "");
  const files = await Deno.stat(dir).then(() => [dir], () => []);
  return [
    ...procs,
    ...listNetns().filter((n) => n.startsWith(prefix)),
    ...cgroups,
    ...mounts,
    ...files,
  ];
}

/** Whether process `pid` exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function assertNothingLeft(prefix: string, dir: string): Promise<void> {
  // Killed processes are gone once the kernel has reaped them.
  const left = await until("nothing left", async () => {
    const l = await leftovers(prefix, dir);
    return l.length === 0 ? [] : null;
  }, 5_000).catch(async () => await leftovers(prefix, dir));
  assertEquals(left, []);
}

Deno.test({
  name: "docker: a run killed with its dockerd and containers up is cleaned up by the next one",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const child = new LineProcess("docker holder", Deno.execPath(), [
    "run",
    "-A",
    new URL("./helpers/docker_hold.ts", import.meta.url).pathname,
  ]);
  let ready: string;
  try {
    ready = await child.waitLine("READY", 90_000);
  } catch (e) {
    await child.kill();
    throw e;
  }
  const [, prefix, dir, containerPid] = ready.split(" ");
  const before = await leftovers(prefix, dir);
  assert(before.some((l) => l.includes("dockerd")), `no dockerd:\n${before.join("\n")}`);
  assert(before.some((l) => l.includes(`${prefix}-h0c0`)), "no container namespace");
  assert(running(Number(containerPid)), "container not running");
  await child.kill("SIGKILL"); // no exit handler runs: all of it is left behind
  // Checked by what remains: a parallel run's cleanup may get there first.
  cleanupStale();
  await assertNothingLeft(prefix, dir);
  // Killed and reparented to init: gone, or a zombie until init reaps it.
  assert(!running(Number(containerPid)), "container killed");
});
