/**
 * etcd broken on purpose under a running udp cluster (root only; namespaces only):
 * - etcd stopped for 12 s (past the 5 s maximum watch backoff) while containers ping across
 *   hosts: the data path keeps forwarding, the daemons log a bounded number of lines, the
 *   watch resumes, a lease written afterwards reaches everyone and no subnet changes;
 * - one host (TTL 15 s) cut off from etcd past its TTL: its key expires and the others drop
 *   it; healed, it regains the same subnet; if another host took the subnet meanwhile, it
 *   takes a new one, says `SUBNET CHANGED`, rewrites subnet.env and never overlaps.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { Cluster, type Host, SUBNETS_PREFIX, UNDERLAY } from "./helpers/cluster.ts";
import { sleep, until } from "./helpers/wait.ts";
import { ROOT_TEST } from "./helpers/netns.ts";
import { formatIP4, overlaps4, parseCIDR4 } from "../lib/core/ip.ts";

const secs = (ms: number) => (ms / 1000).toFixed(1);

/** `10.5.3.0/24` from a lease key `…/subnets/10.5.3.0-24`. */
const subnetOfKey = (key: string) => key.slice(SUBNETS_PREFIX.length + 1).replace("-", "/");

/** The host's lease key and value as etcd has it now, or undefined. */
async function leaseOf(c: Cluster, h: Host) {
  return (await c.leases()).find((l) => l.value.PublicIP === h.ip);
}

/** Log lines the host's daemon wrote after `mark` (a length of its log). */
function linesSince(c: Cluster, h: Host, mark: number): string[] {
  return c.daemonLog(h).slice(mark).split("\n").filter((l) => l !== "");
}

/** Current log lengths, to look only at what comes next. */
function marks(c: Cluster): Map<Host, number> {
  return new Map(c.hosts.map((h) => [h, c.daemonLog(h).length]));
}

/** Waits until every host in `hosts` logged a line containing `text` after its mark. */
async function allLogged(
  c: Cluster,
  hosts: Host[],
  mark: Map<Host, number>,
  text: string,
  timeoutMs: number,
): Promise<void> {
  for (const h of hosts) {
    await until(
      `${h.name}: "${text}"`,
      () => linesSince(c, h, mark.get(h)!).some((l) => l.includes(text)),
      timeoutMs,
      100,
    );
  }
}

/** Asserts that no two leases in etcd overlap. */
async function assertNoOverlap(c: Cluster): Promise<void> {
  const nets = (await c.leases()).map((l) => ({
    key: l.key,
    net: parseCIDR4(subnetOfKey(l.key))!,
  }));
  for (const [i, a] of nets.entries()) {
    for (const b of nets.slice(i + 1)) {
      assert(!overlaps4(a.net, b.net), `${a.key} overlaps ${b.key}`);
    }
  }
}

Deno.test({
  name: "etcd down for 12 s: data path forwards, bounded logs, watch resumes, no subnet changes",
  ...ROOT_TEST,
}, async () => {
  await using c = await Cluster.create({ hosts: 3, containersPerHost: 1, backend: "udp" });
  const [h0, h1, h2] = c.hosts;
  const before = (await c.leases()).map((l) => `${l.key}=${l.value.PublicIP}`).sort();
  const envBefore = c.hosts.map((h) => c.hostSubnetEnv(h)?.FLANNEL_SUBNET);
  const warm = await c.ping(h0.containers[0].ns, h1.containers[0].ip!, { count: 2 });
  assert(warm.ok, `no path before the outage: ${warm.output}`);

  const OUTAGE_MS = 12_000;
  // 18 s of echoes at 5/s, spanning the whole outage and the return.
  const pinging = c.ping(h0.containers[0].ns, h1.containers[0].ip!, {
    count: 90,
    interval: 0.2,
    timeout: 1,
  });
  const pingBack = c.ping(h2.containers[0].ns, h0.containers[0].ip!, {
    count: 90,
    interval: 0.2,
    timeout: 1,
  });
  await sleep(2000); // pings flowing before the outage
  const mark = marks(c);
  const t0 = Date.now();
  await c.etcd.stop(); // SIGTERM
  await sleep(OUTAGE_MS); // the outage
  const during = c.hosts.map((h) => linesSince(c, h, mark.get(h)!));
  await c.etcd.resume();
  const t1 = Date.now();
  await allLogged(c, c.hosts, mark, "watch resumed", 15_000);
  const resumedAfter = Date.now() - t1;

  // A lease written after the return reaches every daemon.
  const newcomer = "10.5.250.0/24";
  const sample = (await leaseOf(c, h2))!.value;
  await c.etcd.ctl(
    "put",
    `${SUBNETS_PREFIX}/10.5.250.0-24`,
    JSON.stringify({ ...sample, PublicIP: "192.168.100.99" }),
  );
  await allLogged(c, c.hosts, mark, `lease added subnet=${newcomer}`, 10_000);
  await c.etcd.ctl("del", `${SUBNETS_PREFIX}/10.5.250.0-24`);

  const [fwd, back] = await Promise.all([pinging, pingBack]);
  const after = (await c.leases()).map((l) => `${l.key}=${l.value.PublicIP}`).sort();
  const lost = (r: typeof fwd) => r.sent - r.received;
  console.log(
    `etcd outage ${secs(t1 - t0)} s: h0c0→h1c0 ${lost(fwd)}/${fwd.sent} lost, h2c0→h0c0 ${
      lost(back)
    }/${back.sent} lost; ` +
      `log lines during the outage per daemon: ${during.map((l) => l.length).join(", ")}; ` +
      `watch resumed ${secs(resumedAfter)} s after etcd returned; new lease seen by all 3; ` +
      `${before.length} leases compared before/after: ${
        before.join(" ") === after.join(" ") ? "identical" : "DIFFERENT"
      }`,
  );
  for (const [i, lines] of during.entries()) {
    assert(
      lines.length <= 10,
      `h${i} logged ${lines.length} lines during the outage:\n${lines.join("\n")}`,
    );
  }
  assert(
    lost(fwd) <= 2 && lost(back) <= 2,
    `echoes lost during the outage:\n${fwd.output}\n${back.output}`,
  );
  assertEquals(after, before, "the same leases with the same owners");
  assertEquals(
    c.hosts.map((h) => c.hostSubnetEnv(h)?.FLANNEL_SUBNET),
    envBefore,
    "subnet.env unchanged",
  );
  for (const h of c.hosts) {
    assert(!c.daemonLog(h).includes("SUBNET CHANGED"), `${h.name} changed its subnet`);
  }
});

Deno.test({
  name: "host cut off from etcd past its TTL: same subnet back when free, a new one when taken",
  ...ROOT_TEST,
}, async (t) => {
  await using c = await Cluster.create({
    hosts: 3,
    containersPerHost: 1,
    backend: "udp",
    daemonArgs: (name) => (name === "h1" ? ["--subnet-lease-ttl=15s"] : []),
  });
  const [h0, h1, h2] = c.hosts;
  const others = [h0, h2];
  // Only inside h1's namespace: etcd's address is unroutable, everything else works.
  const cut = () => c.exec(h1.ns, "ip", "route", "add", "blackhole", `${UNDERLAY.etcd}/32`);
  const heal = () => c.exec(h1.ns, "ip", "route", "del", "blackhole", `${UNDERLAY.etcd}/32`);
  const pingOnce = async (from: Host, to: Host) =>
    (await c.ping(from.containers[0].ns, to.containers[0].ip!, { count: 3, timeout: 1 })).ok;

  /** Cuts h1 off and waits until its key has expired and the others dropped it. */
  const cutUntilExpired = async (key: string) => {
    const mark = marks(c);
    const r = await cut();
    assertEquals(r.code, 0, r.stderr);
    const t0 = Date.now();
    const whileCut = await pingOnce(h1, h0) && await pingOnce(h0, h1);
    await until(
      `${key} expired`,
      async () => !(await c.etcd.ctl("get", key, "--keys-only")).includes(key),
      30_000,
      250,
    );
    const expiredAfter = Date.now() - t0;
    await allLogged(c, others, mark, `lease removed subnet=${subnetOfKey(key)}`, 10_000);
    return { mark, whileCut, expiredAfter };
  };

  const env0 = c.hostSubnetEnv(h1)!;
  const lease0 = (await leaseOf(c, h1))!;
  const subnet0 = subnetOfKey(lease0.key);
  assertEquals(env0.FLANNEL_SUBNET.replace(/\.1\//, ".0/"), subnet0);

  await t.step("partitioned past the TTL, healed: the same subnet back", async () => {
    const { mark: cutMark, whileCut, expiredAfter } = await cutUntilExpired(lease0.key);
    // udp: the others no longer route to h1's subnet, so replies to h1 are lost.
    const afterExpiry = { toH1: await pingOnce(h0, h1), fromH1: await pingOnce(h1, h0) };
    const cutLines = linesSince(c, h1, cutMark.get(h1)!);
    const mark = marks(c);
    const t1 = Date.now();
    assertEquals((await heal()).code, 0);
    await until(
      "h1's key back",
      async () => (await leaseOf(c, h1))?.key === lease0.key,
      30_000,
      200,
    );
    const keyBack = Date.now() - t1;
    await allLogged(c, others, mark, `lease added subnet=${subnet0}`, 15_000);
    await until("ping h0c0→h1c0 again", () => pingOnce(h0, h1), 15_000, 200);
    const recovered = Date.now() - t1;
    const h1Lines = linesSince(c, h1, mark.get(h1)!);
    console.log(
      `partition: pings across while cut off (before expiry): ${
        whileCut ? "ok" : "FAILED"
      }; key expired ${secs(expiredAfter)} s after the cut ` +
        `(TTL 15 s); after expiry h0c0→h1c0 ${
          afterExpiry.toH1 ? "answered" : "no reply"
        }, h1c0→h0c0 ${afterExpiry.fromH1 ? "answered" : "no reply"} ` +
        `(expected: the others dropped h1's lease); healed: key back in ${
          secs(keyBack)
        } s, pings again in ${secs(recovered)} s; ` +
        `h1 logged ${cutLines.length} lines while cut off, ${h1Lines.length} since the heal`,
    );
    assert(whileCut, "h1 stopped forwarding while merely cut off from etcd");
    assert(
      cutLines.length <= 6,
      `h1 logged ${cutLines.length} lines while cut off:\n${cutLines.join("\n")}`,
    );
    assert(!afterExpiry.toH1, "h0 still reached h1's containers after h1's lease expired");
    // h0 drops h1's datagrams as unknown_source once h1's lease is gone.
    assert(!afterExpiry.fromH1, "h1's containers still reached h0 after h1's lease expired");
    assertEquals(c.hostSubnetEnv(h1)!.FLANNEL_SUBNET, env0.FLANNEL_SUBNET, "subnet.env unchanged");
    assert(h1Lines.some((l) => l.includes("regained the same subnet")), h1Lines.join("\n"));
    assert(!c.daemonLog(h1).includes("SUBNET CHANGED"), c.daemonLog(h1));
    await assertNoOverlap(c);
  });

  await t.step(
    "partitioned past the TTL and the subnet taken meanwhile: a new subnet, loudly",
    async () => {
      await cutUntilExpired(lease0.key);
      // Another host leases h1's subnet while h1 is away.
      const grant = await c.etcd.ctl("lease", "grant", "120");
      const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
      assert(id, grant);
      const intruder = "192.168.100.99";
      await c.etcd.ctl(
        "put",
        lease0.key,
        JSON.stringify({ ...lease0.value, PublicIP: intruder }),
        `--lease=${id}`,
      );
      const mark = marks(c);
      const t1 = Date.now();
      assertEquals((await heal()).code, 0);
      await until(
        "SUBNET CHANGED on h1",
        () => linesSince(c, h1, mark.get(h1)!).some((l) => l.includes("SUBNET CHANGED")),
        30_000,
        100,
      );
      await until(
        "h1's new subnet.env",
        () => c.hostSubnetEnv(h1)?.FLANNEL_SUBNET !== env0.FLANNEL_SUBNET,
        10_000,
        100,
      );
      const changedAfter = Date.now() - t1;
      const env1 = c.hostSubnetEnv(h1)!;
      const lease1 = (await leaseOf(c, h1))!;
      assert(lease1 && lease1.key !== lease0.key, `h1's key: ${lease1?.key}`);
      assertEquals(
        subnetOfKey(lease1.key),
        env1.FLANNEL_SUBNET.replace(/\.1\//, ".0/"),
        "subnet.env names the new lease",
      );
      const held = (await c.leases()).find((l) => l.key === lease0.key);
      assertEquals(
        held?.value.PublicIP,
        intruder,
        "the old subnet stays with the host that took it",
      );
      await assertNoOverlap(c);
      await allLogged(c, others, mark, `lease added subnet=${subnetOfKey(lease1.key)}`, 15_000);
      // The containers follow subnet.env (as a CNI plugin would on restart), and traffic flows.
      await c.configureHostSubnet(h1, env1.FLANNEL_SUBNET, Number(env1.FLANNEL_MTU));
      await until("ping h0c0→h1c0 on the new subnet", () => pingOnce(h0, h1), 15_000, 200);
      const line = linesSince(c, h1, mark.get(h1)!).find((l) => l.includes("SUBNET CHANGED"))!;
      console.log(
        `subnet taken while away: h1 moved ${subnet0} → ${subnetOfKey(lease1.key)} ${
          secs(changedAfter)
        } s after the heal; ` +
          `${
            (await c.leases()).length
          } leases, none overlapping; pings on the new subnet ok; intruder ${
            formatIP4(parseCIDR4(`${intruder}/32`)!.ip)
          } kept ${subnet0}\n  ${line}`,
      );
    },
  );
});
