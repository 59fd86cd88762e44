// The lease manager's logic on the in-memory store: acquisition order, races, renewal that
// never overwrites a taken key, regaining the same subnet vs. SUBNET CHANGED, retries while
// the store is down. No etcd, no root; the real-etcd proofs are tests/lease_manager_test.ts.
import { assert, assertEquals, assertNotEquals, assertRejects } from "../helpers/assert.ts";
import { MemoryStore } from "../helpers/memory_store.ts";
import { captureLogs } from "../helpers/logs.ts";
import { hostManager } from "../helpers/control.ts";
import { sleep, until } from "../helpers/wait.ts";
import { formatNet4, overlaps4, parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";
import { type LeaseChange, OutOfSubnetsError } from "../../lib/subnet/lease_manager.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import type { Lease } from "../../lib/values/lease.ts";

const NET = `{"Network":"10.5.0.0/16"}`;
const SMALL = `{"Network":"10.8.0.0/16","SubnetMin":"10.8.1.0","SubnetMax":"10.8.3.0"}`;
const P = "/coreos.com/network/subnets";
const val = (ip: string) => `{"PublicIP":"${ip}","PublicIPv6":null}`;

function setup() {
  const store = new MemoryStore();
  const registry = new SubnetRegistry(store, "/coreos.com/network");
  return { store, registry };
}

Deno.test("acquire: a fresh host gets a random one of the first 100 free subnets", async () => {
  const { store, registry } = setup();
  store.put(`${P}/10.5.1.0-24`, val("192.168.0.9"));
  // random() → 0.5: the middle of the 100 candidates 10.5.2.0 … 10.5.101.0.
  const m = hostManager(registry, NET, "192.168.0.1", { random: () => 0.5 });
  const l = await m.acquire();
  assertEquals(formatNet4(l.subnet), "10.5.52.0/24");
  assertEquals(store.peek(`${P}/10.5.52.0-24`)?.value, val("192.168.0.1"));
  assertEquals(store.leaseTTL(l.leaseId!), 86400);
});

Deno.test("acquire: the lease of our PublicIP comes first, re-put with a fresh lease", async () => {
  const { store, registry } = setup();
  const old = store.put(`${P}/10.5.7.0-24`, val("192.168.0.1"), 86400);
  const m = hostManager(registry, NET, "192.168.0.1", {
    previous: { subnet: parseCIDR4("10.5.9.0/24")! }, // loses against the PublicIP match
  });
  const l = await m.acquire();
  assertEquals(formatNet4(l.subnet), "10.5.7.0/24");
  assertNotEquals(l.leaseId, old.leaseId);
  assertEquals(store.hasLease(old.leaseId), false, "the superseded lease is revoked");
  assertEquals(store.keys(), [`${P}/10.5.7.0-24`]);
});

Deno.test("acquire: a reservation of our PublicIP is adopted and stays lease-less", async () => {
  const { store, registry } = setup();
  store.put(`${P}/10.5.200.0-24`, val("192.168.0.1"), 0);
  const l = await hostManager(registry, NET, "192.168.0.1").acquire();
  assertEquals([formatNet4(l.subnet), l.leaseId, l.expiration], ["10.5.200.0/24", "0", 0]);
  assertEquals(store.peek(`${P}/10.5.200.0-24`)?.leaseId, "0");
});

Deno.test("acquire: our lease that no longer fits the config is deleted, a new one taken", async () => {
  const { store, registry } = setup();
  store.put(`${P}/10.5.0.0-24`, val("192.168.0.1"), 86400); // below SubnetMin
  const l = await hostManager(registry, NET, "192.168.0.1", { random: () => 0 }).acquire();
  assertEquals(formatNet4(l.subnet), "10.5.1.0/24");
  assertEquals(store.keys(), [`${P}/10.5.1.0-24`]);
});

Deno.test("acquire: the previous subnet from subnet.env when free, else a random one", async () => {
  const { store, registry } = setup();
  const prev = { subnet: parseCIDR4("10.5.77.0/24")! };
  const a = await hostManager(registry, NET, "192.168.0.1", { previous: prev }).acquire();
  assertEquals(formatNet4(a.subnet), "10.5.77.0/24");
  const b = await hostManager(registry, NET, "192.168.0.2", { previous: prev, random: () => 0 })
    .acquire();
  assertEquals(formatNet4(b.subnet), "10.5.1.0/24", "held by another host: not taken over");
  assertEquals(store.keys().length, 2);
});

Deno.test("acquire: a lost create race is retried on a fresh listing", async () => {
  const { store, registry } = setup();
  // Another host writes the very key we are about to create.
  store.beforeCreate = (key) => store.put(key, val("192.168.0.66"), 86400);
  const m = hostManager(registry, SMALL, "192.168.0.1", { random: () => 0 });
  const l = await m.acquire();
  assertEquals(formatNet4(l.subnet), "10.8.2.0/24", "the next free one");
  assertEquals(m.stats.acquireRetries, 1);
  assertEquals(store.peek(`${P}/10.8.1.0-24`)?.value, val("192.168.0.66"), "theirs untouched");
});

Deno.test("acquire: max attempts, then out of subnets, are clear errors", async () => {
  const { store, registry } = setup();
  let n = 0;
  const race = (key: string) => {
    store.put(key.replace(/\d+\.0-24$/, `${100 + ++n}.0-24`), val("192.168.9.9"));
    store.put(key, val("192.168.0.66"));
    store.beforeCreate = race;
  };
  store.beforeCreate = race;
  const m = hostManager(registry, NET, "192.168.0.1", { maxAttempts: 3 });
  await assertRejects(() => m.acquire(), Error, "max retries reached trying to acquire a subnet");
  store.beforeCreate = null;
  const full = setup();
  for (const s of ["1", "2", "3"]) full.store.put(`${P}/10.8.${s}.0-24`, val(`192.168.1.${s}`));
  await assertRejects(
    () => hostManager(full.registry, SMALL, "192.168.0.1").acquire(),
    OutOfSubnetsError,
    "out of subnets: all of 10.8.1.0..10.8.3.0 /24 are leased",
  );
});

Deno.test("race: 20 hosts for 3 subnets: 3 winners, no overlap, the rest out of subnets", async () => {
  const { store, registry } = setup();
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => hostManager(registry, SMALL, `192.168.5.${i + 1}`))
      .map((m) => m.acquire()),
  );
  const won = results.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  assertEquals(won.length, 3);
  for (const r of results) {
    if (r.status === "rejected") assert(r.reason instanceof OutOfSubnetsError, String(r.reason));
  }
  assertEquals(new Set(won.map((l) => formatNet4(l.subnet))).size, 3);
  assertEquals(store.keys().length, 3);
});

Deno.test("renew: when due, and what it writes", async () => {
  const { store, registry } = setup();
  const m = hostManager(registry, NET, "192.168.0.1", { ttlSeconds: 86400 });
  const l = await m.acquire();
  // Upstream's margin: 60 min before expiry (capped at half the TTL for short TTLs).
  assertEquals(m.renewAt, l.expiration! - 3600_000);
  const short = hostManager(registry, NET, "192.168.0.2", { ttlSeconds: 600 });
  const s = await short.acquire();
  assertEquals(short.renewAt, s.expiration! - 300_000);
  // --subnet-lease-renew-margin=10: ten minutes before expiry.
  const ten = hostManager(registry, NET, "192.168.0.3", { renewMarginMinutes: 10 });
  const t = await ten.acquire();
  assertEquals(ten.renewAt, t.expiration! - 600_000);
  await m.renew();
  assertEquals(m.stats.renewals, 1);
  assertNotEquals(m.lease!.leaseId, l.leaseId);
  assertEquals(store.hasLease(l.leaseId!), false);
  assertEquals(store.peek(registry.keyOf(l.subnet))?.leaseId, m.lease!.leaseId);
  m.stop();
  short.stop();
  ten.stop();
});

Deno.test("renew: never overwrites a key another host took; moves to a new subnet", async () => {
  const { store, registry } = setup();
  const changes: [LeaseChange, Lease, Lease][] = [];
  const m = hostManager(registry, NET, "192.168.0.1", {
    onChange: (now, old, why) => void changes.push([why, now, old]),
  });
  const l = await m.acquire();
  const key = registry.keyOf(l.subnet);
  store.put(key, val("192.168.0.200"), 86400); // taken while we were not watching
  const lines = await captureLogs(() => m.renew());
  assertEquals(store.peek(key)?.value, val("192.168.0.200"), "theirs is intact");
  assertEquals(changes.length, 1);
  const [why, now, old] = changes[0];
  assertEquals([why, formatNet4(old.subnet)], ["changed", formatNet4(l.subnet)]);
  assert(!overlaps4(now.subnet, l.subnet));
  assertEquals(store.peek(registry.keyOf(now.subnet))?.value, val("192.168.0.1"));
  assertEquals([m.stats.losses, m.stats.subnetChanges], [1, 1]);
  const changed = lines.filter((x) => x.includes("SUBNET CHANGED"));
  assertEquals(changed.length, 1, lines.join("\n"));
  assert(changed[0].startsWith("E"), "at error level");
  assert(changed[0].includes(`was taken by another host; now using ${formatNet4(now.subnet)}`));
  m.stop();
});

Deno.test("renew: our key deleted (expired while cut off) → the same subnet regained", async () => {
  const { store, registry } = setup();
  const changes: string[] = [];
  const m = hostManager(registry, NET, "192.168.0.1", {
    onChange: (now, _old, why) => void changes.push(`${why}:${formatNet4(now.subnet)}`),
  });
  const l = await m.acquire();
  store.revoke(l.leaseId!);
  await m.renew();
  assertEquals(changes, [`regained:${formatNet4(l.subnet)}`]);
  assertEquals(store.peek(registry.keyOf(l.subnet))?.value, val("192.168.0.1"));
  assertEquals([m.stats.regained, m.stats.subnetChanges], [1, 0]);
  m.stop();
});

Deno.test("own-key events: delete → regained, foreign put → changed, own re-put → tracked", async () => {
  const { store, registry } = setup();
  const changes: string[] = [];
  const m = hostManager(registry, NET, "192.168.0.1", {
    onChange: (now, _old, why) => void changes.push(`${why}:${formatNet4(now.subnet)}`),
  });
  const l = await m.acquire();
  const key = registry.keyOf(l.subnet);
  store.remove(key);
  m.handleOwn({ type: "delete" });
  await until("regained", () => changes.length === 1);
  assertEquals(changes[0], `regained:${formatNet4(l.subnet)}`);
  // Our own write seen by the watch: only its revision is tracked.
  const mine = store.peek(key)!;
  m.handleOwn({ type: "put", lease: { ...l, modRevision: mine.modRevision } });
  await m.renew(); // compares against the tracked revision: succeeds
  assertEquals([m.stats.renewals, changes.length], [1, 1]);
  store.put(key, val("192.168.0.99"));
  m.handleOwn({
    type: "put",
    lease: { subnet: l.subnet, attrs: { publicIP: parseIP4("192.168.0.99")!, publicIPv6: null } },
  });
  await until("moved", () => changes.length === 2);
  assert(changes[1].startsWith("changed:"));
  m.stop();
});

Deno.test("own-key events: a late delete for a key we already re-created is ignored", async () => {
  const { registry } = setup();
  let changed = 0;
  const m = hostManager(registry, NET, "192.168.0.1", { onChange: () => void changed++ });
  const l = await m.acquire();
  m.handleOwn({ type: "delete" }); // the key is still ours in the store
  await m.renew(); // runs after the event was handled (one chain)
  assertEquals([changed, m.stats.losses, m.stats.subnetChanges], [0, 0, 0]);
  assertEquals(formatNet4(m.lease!.subnet), formatNet4(l.subnet));
  m.stop();
});

Deno.test("store down: renewal failures give one warning, then one line when it answers", async () => {
  const { store, registry } = setup();
  const m = hostManager(registry, NET, "192.168.0.1", { retryMinMs: 5, retryMaxMs: 10 });
  await m.acquire();
  const lines = await captureLogs(async () => {
    store.down();
    await m.renew();
    await m.renew();
    await m.renew();
    store.up();
    await m.renew();
  });
  assertEquals([m.stats.renewFailures, m.stats.renewals], [3, 1]);
  const warn = lines.filter((l) => l.startsWith("W"));
  assertEquals(warn.length, 1, lines.join("\n"));
  assert(warn[0].includes("lease renewal failed"), warn[0]);
  assertEquals(lines.filter((l) => l.includes("etcd answers again")).length, 1);
  m.stop();
});

Deno.test("store down during recovery: retried with backoff; stop() ends the retries", async () => {
  const { store, registry } = setup();
  const changes: string[] = [];
  const m = hostManager(registry, NET, "192.168.0.1", {
    retryMinMs: 5,
    retryMaxMs: 20,
    onChange: (now, _old, why) => void changes.push(`${why}:${formatNet4(now.subnet)}`),
  });
  const l = await m.acquire();
  store.remove(registry.keyOf(l.subnet));
  store.down();
  await captureLogs(async () => {
    m.handleOwn({ type: "delete" });
    await sleep(60); // several failed attempts
    assertEquals(changes, []);
    store.up();
    await until("recovered", () => changes.length === 1, 2000, 5);
  });
  assertEquals(changes[0], `regained:${formatNet4(l.subnet)}`);

  // A recovery that can never succeed ends with stop(), not with the process.
  store.remove(registry.keyOf(l.subnet));
  store.down();
  const calls = () => store.calls.create + store.calls.get;
  await captureLogs(async () => {
    m.handleOwn({ type: "delete" });
    await sleep(40);
    m.stop();
    const after = calls();
    await sleep(60);
    assertEquals(calls(), after, "no retry after stop()");
  });
});
