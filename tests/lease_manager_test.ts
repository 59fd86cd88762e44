/**
 * Subnet leasing against a real etcd: acquisition order, byte-exact values, reservations,
 * races, renewal and recovery of a lost lease.
 */

import { assert, assertEquals, assertNotEquals, assertRejects } from "./helpers/assert.ts";
import { EtcdServer } from "./helpers/etcd.ts";
import { hostManager, registryFor } from "./helpers/control.ts";
import { sleep, until } from "./helpers/wait.ts";
import { formatNet4, overlaps4, parseCIDR4 } from "../lib/core/ip.ts";
import { OutOfSubnetsError } from "../lib/subnet/lease_manager.ts";
import { LeaseWatcher } from "../lib/subnet/watcher.ts";
import type { Lease } from "../lib/values/lease.ts";

const NET = `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`;

Deno.test("subnet leases on a real etcd", async (t) => {
  await using etcd = await EtcdServer.start();
  const stores: { close(): void }[] = [];
  let prefixN = 0;
  const fresh = () => {
    const p = `/t${++prefixN}/network`;
    const { store, registry } = registryFor(etcd, p);
    stores.push(store);
    return { prefix: p, reg: registry, store };
  };
  const kvOf = async (prefix: string) => {
    const out = JSON.parse(await etcd.ctl("get", "--prefix", `${prefix}/subnets`, "-w", "json"));
    return (out.kvs ?? []).map((kv: { key: string; value: string; lease?: number }) => ({
      key: atob(kv.key),
      value: atob(kv.value),
      lease: kv.lease ?? 0,
    }));
  };

  await t.step("fresh acquisition: key, byte-exact value, 24 h etcd lease", async () => {
    const { prefix, reg, store } = fresh();
    const m = hostManager(reg, NET, "192.168.1.10");
    const l = await m.acquire();
    const kvs = await kvOf(prefix);
    assertEquals(kvs.length, 1);
    assertEquals(kvs[0].key, `${prefix}/subnets/${formatNet4(l.subnet).replace("/", "-")}`);
    assertEquals(kvs[0].value, `{"PublicIP":"192.168.1.10","PublicIPv6":null}`);
    const ttl = await store.timeToLive(l.leaseId!);
    assert(ttl > 86390 && ttl <= 86400, `TTL ${ttl}`);
    assertEquals(l.subnet.prefix, 24);
    assert(
      l.subnet.ip >= parseCIDR4("10.5.1.0/24")!.ip &&
        l.subnet.ip <= parseCIDR4("10.5.255.0/24")!.ip,
    );
    m.stop();
  });

  await t.step("restart with the same PublicIP reuses the subnet with a new lease", async () => {
    const { reg, store } = fresh();
    const a = await hostManager(reg, NET, "192.168.1.11").acquire();
    const b = await hostManager(reg, NET, "192.168.1.11").acquire();
    assertEquals(formatNet4(b.subnet), formatNet4(a.subnet));
    assertNotEquals(b.leaseId, a.leaseId);
    assert(await store.timeToLive(b.leaseId!) > 86390);
    assertEquals(await store.timeToLive(a.leaseId!), -1, "superseded lease is revoked");
  });

  await t.step(
    "previous subnet from subnet.env is taken when free, skipped when held",
    async () => {
      const { reg } = fresh();
      const want = parseCIDR4("10.5.77.0/24")!;
      const got = await hostManager(reg, NET, "192.168.1.12", { previous: { subnet: want } })
        .acquire();
      assertEquals(formatNet4(got.subnet), "10.5.77.0/24");
      const other = await hostManager(reg, NET, "192.168.1.13", { previous: { subnet: want } })
        .acquire();
      assertNotEquals(formatNet4(other.subnet), "10.5.77.0/24");
    },
  );

  await t.step("random pick stays inside SubnetMin..SubnetMax, aligned, distinct", async () => {
    const { reg } = fresh();
    const cfg =
      `{"Network":"10.6.0.0/16","SubnetLen":26,"SubnetMin":"10.6.4.0","SubnetMax":"10.6.9.192"}`;
    const got: Lease[] = [];
    for (let i = 0; i < 12; i++) {
      got.push(await hostManager(reg, cfg, `192.168.2.${i + 1}`).acquire());
    }
    const lo = parseCIDR4("10.6.4.0/26")!.ip, hi = parseCIDR4("10.6.9.192/26")!.ip;
    for (const l of got) {
      assertEquals(l.subnet.prefix, 26);
      assertEquals(l.subnet.ip % 64, 0, `${formatNet4(l.subnet)} aligned`);
      assert(l.subnet.ip >= lo && l.subnet.ip <= hi, `${formatNet4(l.subnet)} in range`);
    }
    assertEquals(new Set(got.map((l) => l.subnet.ip)).size, got.length);
  });

  await t.step("out of subnets is a clear error", async () => {
    const { reg } = fresh();
    const cfg = `{"Network":"10.7.0.0/16","SubnetMin":"10.7.1.0","SubnetMax":"10.7.2.0"}`;
    await hostManager(reg, cfg, "192.168.3.1").acquire();
    await hostManager(reg, cfg, "192.168.3.2").acquire();
    const err = await assertRejects(
      () => hostManager(reg, cfg, "192.168.3.3").acquire(),
      OutOfSubnetsError,
    );
    assert(err.message.startsWith("out of subnets"));
  });

  await t.step(
    "a lease-less reservation for our PublicIP is adopted and stays lease-less",
    async () => {
      const { prefix, reg } = fresh();
      await etcd.ctl(
        "put",
        `${prefix}/subnets/10.5.200.0-24`,
        `{"PublicIP":"192.168.4.1","PublicIPv6":null}`,
      );
      const l = await hostManager(reg, NET, "192.168.4.1").acquire();
      assertEquals(formatNet4(l.subnet), "10.5.200.0/24");
      assertEquals(l.leaseId, "0");
      const kvs = await kvOf(prefix);
      assertEquals(kvs[0].lease, 0, "still no etcd lease on the key");
    },
  );

  await t.step(
    "20 hosts race for 5 subnets: 5 winners, no overlap, the rest out of subnets",
    async () => {
      const { prefix } = fresh();
      const cfg = `{"Network":"10.8.0.0/16","SubnetMin":"10.8.1.0","SubnetMax":"10.8.5.0"}`;
      const clients = Array.from({ length: 20 }, () => registryFor(etcd, prefix));
      const results = await Promise.allSettled(
        clients.map((c, i) => hostManager(c.registry, cfg, `192.168.5.${i + 1}`).acquire()),
      );
      const won = results.filter((r) => r.status === "fulfilled").map((r) =>
        (r as PromiseFulfilledResult<Lease>).value
      );
      const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
      assertEquals(won.length, 5);
      for (const r of lost) {
        assert(
          r.reason instanceof OutOfSubnetsError,
          `loser failed with: ${r.reason}`,
        );
      }
      for (let i = 0; i < won.length; i++) {
        for (let j = i + 1; j < won.length; j++) assert(!overlaps4(won[i].subnet, won[j].subnet));
      }
      assertEquals((await kvOf(prefix)).length, 5);
      for (const c of clients) c.store.close();
      console.log(`race: ${won.length} winners, ${lost.length} out of subnets`);
    },
  );

  await t.step(
    "own key deleted while running is regained; taken over → new subnet, no overlap",
    async () => {
      const { prefix, reg } = fresh();
      const changes: string[] = [];
      const m = hostManager(reg, NET, "192.168.6.1", {
        onChange: (now, _old, why) => {
          changes.push(`${why}:${formatNet4(now.subnet)}`);
          w.setOwn(now.subnet);
        },
      });
      const l = await m.acquire();
      const remote: string[] = [];
      const w = new LeaseWatcher(reg, {
        onEvents: (evs) =>
          remote.push(...evs.map((e) => `${e.type}:${formatNet4(e.lease.subnet)}`)),
        onOwn: (ev) => m.handleOwn(ev),
        validate: () => null,
      }, { backoffMinMs: 50, backoffMaxMs: 200 });
      w.setOwn(l.subnet, l.attrs.publicIP);
      await w.start();
      m.startRenewal();
      const key = `${prefix}/subnets/${formatNet4(l.subnet).replace("/", "-")}`;
      await etcd.ctl("del", key);
      await until("regained", () => changes.length === 1);
      assertEquals(changes[0], `regained:${formatNet4(l.subnet)}`);
      assertEquals((await kvOf(prefix))[0].value, `{"PublicIP":"192.168.6.1","PublicIPv6":null}`);
      // Another host writes its lease on our subnet: we must move away, never share it.
      await etcd.ctl("put", key, `{"PublicIP":"192.168.6.99","PublicIPv6":null}`);
      await until("moved", () => changes.length === 2);
      assert(changes[1].startsWith("changed:"));
      const kvs = await kvOf(prefix);
      assertEquals(kvs.length, 2);
      const subnets = kvs.map((kv: { key: string }) =>
        parseCIDR4(kv.key.split("/").pop()!.replace("-", "/"))!
      );
      assert(!overlaps4(subnets[0], subnets[1]));
      assertEquals(m.stats.regained, 1);
      assertEquals(remote, [], "our own leases never reach the backend as remote peers");
      assertEquals(m.stats.subnetChanges, 1);
      w.stop();
      m.stop();
    },
  );

  await t.step("a late delete event for a key we already re-created is ignored", async () => {
    // A watch cut off from etcd delivers the expiry after the renewal path regained the key.
    const { reg } = fresh();
    let changed = 0;
    const m = hostManager(reg, NET, "192.168.8.1", { onChange: () => void changed++ });
    const l = await m.acquire();
    m.handleOwn({ type: "delete" });
    await m.renew(); // queued behind the event: it runs once the event was handled
    await sleep(200); // room for a wrong recovery, which must not come
    assertEquals([changed, m.stats.losses, m.stats.subnetChanges], [0, 0, 0]);
    assertEquals(formatNet4(m.lease!.subnet), formatNet4(l.subnet));
    m.stop();
  });

  await t.step(
    "renewal re-puts before expiry and never clobbers a key someone else took",
    async () => {
      const { prefix, reg, store } = fresh();
      // When renewal is due is unit-tested; here the etcd side of one renewal.
      const m = hostManager(reg, NET, "192.168.7.1", { ttlSeconds: 10 });
      const l = await m.acquire();
      await m.renew();
      assertEquals(m.stats.renewals, 1);
      assertNotEquals(m.lease!.leaseId, l.leaseId);
      assert(await store.timeToLive(m.lease!.leaseId!) > 5);
      assertEquals(await store.timeToLive(l.leaseId!), -1, "the superseded lease is revoked");
      m.stop();
      // Someone else replaces the key while we are not watching; our renewal must not overwrite it.
      const key = `${prefix}/subnets/${formatNet4(l.subnet).replace("/", "-")}`;
      const m2 = hostManager(reg, NET, "192.168.7.1", { ttlSeconds: 10 });
      await m2.acquire();
      await etcd.ctl("put", key, `{"PublicIP":"192.168.7.200","PublicIPv6":null}`);
      await m2.renew();
      assertEquals(m2.stats.subnetChanges, 1, "moved on renewal");
      const kvs = await kvOf(prefix);
      assertEquals(
        kvs.find((kv: { key: string }) => kv.key === key)?.value,
        `{"PublicIP":"192.168.7.200","PublicIPv6":null}`,
      );
      m2.stop();
    },
  );

  for (const s of stores) s.close();
});
