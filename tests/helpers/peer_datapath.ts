/**
 * Helpers for the kernel data-path tests (vxlan, host-gw) on top of the cluster: subnets
 * per host, bounded waiting, TCP transfers with checksums, ping loss under a running
 * ping, and the kernel's peer entries read through our netlink layer inside a host.
 * @module
 */

import { sleep, timeUntil, until } from "./wait.ts";
import { assert } from "./assert.ts";
import {
  addrList,
  type FdbEntry,
  fdbList,
  type Link,
  linkByName,
  type Neigh,
  neighList,
  type Route,
  routeList,
  RT_SCOPE_LINK,
  withNetlinkSocket,
} from "../../ffi/netlink/mod.ts";
import {
  formatNet4,
  type IP4Net,
  type IP6Net,
  parseCIDR4,
  parseCIDR6,
  parseIP4,
} from "../../lib/core/ip.ts";
import { subnetKey } from "../../lib/values/lease.ts";
import {
  type Cluster,
  type Container,
  type Host,
  type HostRef,
  SUBNETS_PREFIX,
} from "./cluster.ts";
import { type LineProcess, nsDeno } from "./line_process.ts";
import { inNetns } from "./netlink_ns.ts";
import { ping, type PingPair, type PingResult } from "./ping.ts";

/** The host's leased subnet (network address), from its subnet.env. */
export function hostSubnet(c: Cluster, ref: HostRef): IP4Net {
  const env = c.hostSubnetEnv(ref);
  const net = env ? parseCIDR4(env.FLANNEL_SUBNET) : null;
  if (!net) throw new Error(`host ${c.host(ref).name} has no subnet.env`);
  return net;
}

/** The host's leased IPv6 subnet, from its subnet.env. */
export function hostSubnet6(c: Cluster, ref: HostRef): IP6Net {
  const env = c.hostSubnetEnv(ref);
  const net = env ? parseCIDR6(env.FLANNEL_IPV6_SUBNET ?? "") : null;
  if (!net) throw new Error(`host ${c.host(ref).name} has no IPv6 subnet in subnet.env`);
  return net;
}

/** Asserts that every pair answered, naming the ones that did not. */
export function assertAllAnswered(pairs: PingPair[]): void {
  const failed = pairs.filter((p) => !p.result.ok).map((p) => `${p.from.name}→${p.to.name}`);
  assert(failed.length === 0, `pairs without reply: ${failed.join(" ")}`);
}

/** One quick echo from `from` to `to` (over IPv6 with `family` 6) answered. */
export async function reaches(from: Container, to: Container, family: 4 | 6 = 4): Promise<boolean> {
  return (await ping(from.ns, family === 6 ? to.ip6! : to.ip!, { count: 1, timeout: 1 })).ok;
}

const blob = new URL("./tcp_blob.ts", import.meta.url).pathname;

/** A finished transfer: `<bytes> <sha256>` on both ends, and the receiver's time (ms). */
export interface Transfer {
  sent: string;
  received: string;
  ms: number;
}

/**
 * Sends `bytes` pseudo-random bytes over TCP from `from` to `to` (to its IPv6 address with
 * `family` 6); compares by sha256.
 */
export async function tcpTransfer(
  from: Container,
  to: Container,
  bytes: number,
  port = 5201,
  family: 4 | 6 = 4,
): Promise<Transfer> {
  const addr = family === 6 ? to.ip6! : to.ip!;
  const server = nsDeno("tcp sink", to.ns, blob, "serve", addr, String(port));
  let client: LineProcess | null = null;
  try {
    await server.waitLine("LISTENING", 20_000);
    client = nsDeno("tcp source", from.ns, blob, "send", addr, String(port), String(bytes));
    const sent = (await client.waitLine("SENT", 90_000)).split(" ");
    const received = (await server.waitLine("RECEIVED", 30_000)).split(" ");
    return {
      sent: sent.slice(1, 3).join(" "),
      received: received.slice(1, 3).join(" "),
      ms: Number(received[3]),
    };
  } finally {
    await client?.kill();
    await server.kill();
  }
}

/** Starts `ping -i 0.1` (over IPv6 with `family` 6) for `seconds`; the result tells how many echoes were lost. */
export function backgroundPing(
  from: Container,
  to: Container,
  seconds: number,
  family: 4 | 6 = 4,
): Promise<PingResult> {
  const addr = family === 6 ? to.ip6! : to.ip!;
  return ping(from.ns, addr, { count: seconds * 10, interval: 0.1, timeout: 1 });
}

/** The kernel's view inside a host, through our netlink layer. */
export interface HostKernel {
  link: Link | null;
  addrs: { ip: number | bigint; prefix: number }[];
  routes: Route[];
  neighs: Neigh[];
  fdbs: FdbEntry[];
}

/**
 * Reads device `dev` (may be absent), its addresses, the main routes and its neighbours
 * of one family (default IPv4; IPv6 addresses without the link-local one), and its FDB.
 */
export function hostKernel(ns: string, dev: string, family: 4 | 6 = 4): HostKernel {
  return inNetns(ns, () =>
    withNetlinkSocket((nl) => {
      const link = linkByName(nl, dev);
      const index = link?.index ?? -1;
      return {
        link,
        addrs: addrList(nl, { index, family })
          .filter((a) => a.scope !== RT_SCOPE_LINK)
          .map((a) => ({ ip: a.ip, prefix: a.prefix })),
        routes: routeList(nl, { family }),
        neighs: neighList(nl, { index, family }),
        fdbs: fdbList(nl, { index }),
      };
    }));
}

/** Count of daemon log lines containing `text`. */
export function logCount(c: Cluster, ref: HostRef, text: string): number {
  return c.daemonLog(ref).split("\n").filter((l) => l.includes(text)).length;
}

/** Runs `argv` in namespace `ns` and returns stdout; throws when it fails. */
export async function execOk(c: Cluster, ns: string, argv: string[]): Promise<string> {
  const r = await c.exec(ns, argv[0], ...argv.slice(1));
  if (r.code !== 0) {
    throw new Error(`${argv.join(" ")} in ${ns}: exit ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** etcd key of the lease for subnet `sn` (and IPv6 subnet `sn6`: dual stack or IPv6-only). */
export function leaseKey(sn: IP4Net, sn6?: IP6Net): string {
  return `${SUBNETS_PREFIX}/${subnetKey(sn, sn6)}`;
}

/** etcd key of host `ref`'s lease, from the subnets in its subnet.env. */
export function hostLeaseKey(c: Cluster, ref: HostRef): string {
  const env = c.hostSubnetEnv(ref) ?? {};
  const sn = env.FLANNEL_SUBNET ? hostSubnet(c, ref) : { ip: 0, prefix: 0 };
  return leaseKey(sn, env.FLANNEL_IPV6_SUBNET ? hostSubnet6(c, ref) : undefined);
}

/** The lease value of host `ref`, exactly as stored. */
export async function rawLease(c: Cluster, ref: HostRef): Promise<string> {
  return (await c.etcd.ctl("get", hostLeaseKey(c, ref))).split("\n")[1];
}

/**
 * Restarts each host's daemon (SIGTERM, start; cni0 and containers untouched) while `from`
 * pings `to` (over IPv6 with `family` 6) every 0.1 s; asserts at most 10 echoes (1 s) lost
 * per restart.
 */
export async function restartUnderPing(
  c: Cluster,
  hosts: Host[],
  from: Container,
  to: Container,
  family: 4 | 6 = 4,
): Promise<void> {
  for (const h of hosts) {
    const pinging = backgroundPing(from, to, 6, family);
    await sleep(1000); // echoes flow before the stop, so the loss counts the restart only
    await c.stopDaemon(h);
    h.daemon.start();
    await h.daemon.waitSubnetEnv();
    const r = await pinging;
    const lost = r.sent - r.received;
    console.log(
      `  restart ${h.name} under ping${
        family === 6 ? "6" : ""
      } ${from.name}→${to.name}: ${lost}/${r.sent} echoes lost`,
    );
    assert(lost <= 10, `lost ${lost} of ${r.sent}: ${r.output}`);
  }
}

/**
 * Adds a host, waits until it and `from` reach each other, then removes it and deletes its
 * lease; waits until `gone(host, subnet)` holds on every remaining host.
 */
export async function joinAndLeave(
  c: Cluster,
  from: Container,
  gone: (remaining: Host, sn: IP4Net) => boolean | Promise<boolean>,
  checkPresent: (h: Host) => Promise<void>,
): Promise<void> {
  const h = await c.addHost();
  const ms = await timeUntil(
    "new host reachable",
    async () => await reaches(from, h.containers[0]) && await reaches(h.containers[0], from),
    15_000,
  );
  console.log(`  ${h.name} joined: reachable ${ms} ms after its subnet.env`);
  for (const x of c.hosts) await checkPresent(x);
  const sn = hostSubnet(c, h);
  await c.removeHost(h);
  await c.etcd.ctl("del", leaseKey(sn));
  for (const x of c.hosts) {
    const gms = await timeUntil(`${x.name} drops ${formatNet4(sn)}`, () => gone(x, sn), 10_000);
    console.log(`  ${x.name} removed ${h.name}'s entries ${gms} ms after the lease was deleted`);
  }
}

/**
 * Writes a lease of another backend type (twice: a PUT is re-delivered) and checks that
 * every host logs it once and routes nothing to it; then deletes it.
 */
export async function checkForeignLeaseIgnored(c: Cluster, backendType: string): Promise<void> {
  const sn = { ip: parseIP4("10.5.250.0")!, prefix: 24 };
  const value = backendType === "vxlan"
    ? '{"PublicIP":"192.168.100.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:aa:bb:cc:dd:ee"}}'
    : `{"PublicIP":"192.168.100.99","PublicIPv6":null,"BackendType":"${backendType}"}`;
  await c.etcd.ctl("put", leaseKey(sn), value);
  await c.etcd.ctl("put", leaseKey(sn), value);
  const line = `ignoring lease of another backend type subnet=${formatNet4(sn)}`;
  await until(
    "ignored lease logged",
    () => c.hosts.every((h) => logCount(c, h, line) >= 1),
    10_000,
  );
  await sleep(500); // time for the second PUT to be (not) logged again
  for (const h of c.hosts) {
    assert(logCount(c, h, line) === 1, `${h.name} logs the ignored lease once`);
    const routes = await execOk(c, h.ns, ["ip", "route"]);
    assert(!routes.includes(formatNet4(sn)), `${h.name} routes the foreign lease:\n${routes}`);
  }
  await c.etcd.ctl("del", leaseKey(sn));
}

/**
 * The steps each data-path test starts with: every container pair pings, every host's
 * kernel state passes `check` (`state` says what it checks), and 50 MB go from `from` to
 * `to` intact.
 */
export async function basicSteps(
  t: Deno.TestContext,
  c: Cluster,
  state: string,
  check: (h: Host) => Promise<void>,
  from: Container,
  to: Container,
): Promise<void> {
  await t.step("all pairs ping", async () => {
    assertAllAnswered(await c.pingAll({ count: 1 }));
  });
  await t.step(`kernel state: ${state} (netlink and iproute2)`, async () => {
    for (const h of c.hosts) await check(h);
  });
  await t.step("50 MB TCP transfer arrives intact", async () => {
    const r = await tcpTransfer(from, to, 50 << 20);
    assert(r.received === r.sent, `received ${r.received}, sent ${r.sent}`);
    console.log(
      `  50 MB ${from.name}→${to.name}: ${r.ms} ms (${(400 / (r.ms / 1000)).toFixed(0)} Mbit/s)`,
    );
  });
}
