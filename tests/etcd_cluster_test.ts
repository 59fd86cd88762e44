/**
 * The control plane against a 3-member etcd cluster on loopback, all three endpoints given
 * to the client: the leader is killed, then (after it rejoined) a follower. Our lease (TTL
 * 10 s, so it is renewed every 5 s throughout) must never be lost, and the watcher must
 * see every event written through the remaining members, in order.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { hostManager, recorder } from "./helpers/control.ts";
import { until } from "./helpers/wait.ts";
import { EtcdCluster } from "./helpers/etcd_cluster.ts";
import { EtcdStore } from "../lib/subnet/etcd_store.ts";
import { SubnetRegistry } from "../lib/subnet/registry.ts";

const PREFIX = "/coreos.com/network";
const P = `${PREFIX}/subnets`;
const CONFIG = JSON.stringify({
  Network: "10.5.0.0/16",
  SubnetMin: "10.5.100.0",
  Backend: { Type: "alloc" },
});

Deno.test({
  name: "etcd cluster: leader, then a follower killed — no lease loss, no missed event",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using ec = await EtcdCluster.start(3);
  const store = new EtcdStore({ endpoints: ec.endpoints, callTimeoutMs: 2000 });
  const registry = new SubnetRegistry(store, PREFIX);
  const m = hostManager(registry, CONFIG, "192.168.0.1", { ttlSeconds: 10 });
  const { w, seen } = recorder(registry, {}, (ev) => m.handleOwn(ev));
  try {
    const own = await m.acquire();
    const ownKey = registry.keyOf(own.subnet);
    m.startRenewal();
    w.setOwn(own.subnet);
    await w.start();

    // Peer events, written through whichever members are up. A put whose answer was lost
    // in an election may still have been applied: look before writing again, so that each
    // event happens exactly once.
    const want: string[] = [];
    let n = 0;
    const event = async () => {
      n++;
      const del = n % 4 === 0; // every fourth event removes the previous peer
      const subnet = `10.5.${del ? n - 1 : n}.0`;
      const key = `${P}/${subnet}-24`;
      await until(
        `event ${n} written`,
        async () => {
          try {
            if (del) await ec.ctl("del", key);
            else await ec.ctl("put", key, `{"PublicIP":"192.168.1.${n}","PublicIPv6":null}`);
            return true;
          } catch {
            const there = (await ec.ctl("get", key, "--keys-only")).includes(key);
            return del ? !there : there;
          }
        },
        20_000,
        200,
      );
      want.push(`${del ? "removed" : "added"}:${subnet}/24`);
    };
    const events = async (k: number) => {
      for (let i = 0; i < k; i++) await event();
    };
    const ownKeyThere = async () => (await ec.ctl("get", ownKey, "--keys-only")).includes(ownKey);

    await events(3);
    await until("baseline events", () => seen.length === want.length);

    for (const role of ["leader", "follower"] as const) {
      const leader = await ec.leader();
      const victim = role === "leader" ? leader : ec.alive.find((x) => x !== leader)!;
      const t0 = Date.now();
      await victim.kill();
      await events(4); // during the election (leader) or right away (follower)
      await until("a leader among the survivors", () => ec.leader(), 15_000, 200);
      await events(4);
      await until(`events after the ${role} was killed`, () => seen.length === want.length, 20_000);
      assertEquals(seen, want, `events in order after the ${role} was killed`);
      assert(await ownKeyThere(), `our key vanished after the ${role} was killed`);
      // Stay down for at least one renewal period, so that a renewal runs without it.
      const renewals = m.stats.renewals;
      await until(`a renewal without the ${role}`, () => m.stats.renewals > renewals, 15_000, 100);
      console.log(
        `killed ${role}: ${want.length} events checked in order; member down ${
          ((Date.now() - t0) / 1000).toFixed(1)
        } s; ` +
          `renewals ${m.stats.renewals}, renew failures ${m.stats.renewFailures}, watch reconnects ${w.stats.reconnects}`,
      );
      await victim.resume();
      await victim.waitHealthy(20_000);
    }

    assertEquals(m.stats.losses, 0, "the lease was never lost");
    assert(await ownKeyThere(), "our key exists at the end");
    const final = await registry.getLease(own.subnet);
    assertEquals(final?.leaseId, m.lease?.leaseId, "the key carries the lease the manager renews");
    assert(m.stats.renewals >= 2, `renewals: ${m.stats.renewals}`);
    console.log(
      `3-member cluster: ${want.length} events checked, ${m.stats.renewals} renewals (${m.stats.renewFailures} failed and retried), ` +
        `0 losses, ${w.stats.reconnects} watch reconnects`,
    );
  } finally {
    w.stop();
    m.stop();
    store.close();
  }
});
