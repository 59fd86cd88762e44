// The lease watcher's logic on the in-memory store: snapshot and events, resume from the
// last delivered revision after a disconnect, compaction re-list with synthesized removals,
// stall detection, unusable leases. No etcd, no root; the real-etcd proofs (etcd killed,
// a frozen TCP stream, minutes-long watches) are tests/watcher_test.ts.
import { assert, assertEquals } from "../helpers/assert.ts";
import { MemoryStore } from "../helpers/memory_store.ts";
import { captureLogs } from "../helpers/logs.ts";
import { recorder } from "../helpers/control.ts";
import { sleep, until } from "../helpers/wait.ts";
import { parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";
import { remoteLeaseProblem } from "../../lib/subnet/allocator.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";

const P = "/coreos.com/network/subnets";
const val = (ip: string) => `{"PublicIP":"${ip}","PublicIPv6":null}`;
/** Fast timings: backoff 5–20 ms, progress every 10 ms, stall after 60 ms. */
const FAST = { backoffMinMs: 5, backoffMaxMs: 20, progressIntervalMs: 10, stallTimeoutMs: 60 };

function setup() {
  const store = new MemoryStore();
  return { store, registry: new SubnetRegistry(store, "/coreos.com/network") };
}

Deno.test("watch: snapshot, then puts and deletes; our own key goes to onOwn only", async () => {
  const { store, registry } = setup();
  store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
  store.put(`${P}/10.5.9.0-24`, val("192.168.0.9"));
  const { w, seen, own } = recorder(registry, FAST);
  w.setOwn(parseCIDR4("10.5.9.0/24"), parseIP4("192.168.0.9")!);
  await captureLogs(async () => {
    await w.start();
    assertEquals(seen, ["added:10.5.1.0/24"]);
    assertEquals(own.map((e) => e.type), ["put"], "the snapshot reports our key's state");
    store.put(`${P}/10.5.2.0-24`, val("192.168.0.2"));
    store.remove(`${P}/10.5.1.0-24`);
    store.remove(`${P}/10.5.9.0-24`);
    // Our public IP on another subnet: our own write during a subnet change, never a peer.
    store.put(`${P}/10.5.10.0-24`, val("192.168.0.9"));
    await until("events", () => seen.length === 3 && own.length === 2, 1000, 2);
  });
  assertEquals(seen, ["added:10.5.1.0/24", "added:10.5.2.0/24", "removed:10.5.1.0/24"]);
  assertEquals(own[1].type, "delete");
  assertEquals(w.leases().length, 1);
  w.stop();
});

Deno.test("watch: store down and back → resumes after the last delivered revision", async () => {
  const { store, registry } = setup();
  const { w, seen } = recorder(registry, FAST);
  const lines = await captureLogs(async () => {
    await w.start();
    store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
    await until("first event", () => seen.length === 1, 1000, 2);
    const watchesBefore = store.calls.watch;
    store.down();
    // What happens meanwhile in etcd reaches us after the reconnect, in order, once.
    store.put(`${P}/10.5.2.0-24`, val("192.168.0.2"));
    store.remove(`${P}/10.5.1.0-24`);
    store.put(`${P}/10.5.3.0-24`, val("192.168.0.3"));
    await sleep(50); // several reconnect attempts fail
    assert(w.stats.reconnects >= 2, `reconnects ${w.stats.reconnects}`);
    store.up();
    await until("missed events", () => seen.length === 4, 1000, 2);
    assert(store.calls.watch > watchesBefore);
  });
  assertEquals(seen, [
    "added:10.5.1.0/24",
    "added:10.5.2.0/24",
    "removed:10.5.1.0/24",
    "added:10.5.3.0/24",
  ]);
  assertEquals(w.stats.relists, 1, "resumed from a revision, no re-list");
  assertEquals(w.revision, store.revision);
  assertEquals(lines.filter((l) => l.startsWith("W")).length, 1, "one warning per outage");
  assertEquals(lines.filter((l) => l.includes("watch resumed")).length, 1);
  w.stop();
});

Deno.test("watch: compaction past our revision → re-list, synthesized removals, no loop", async () => {
  const { store, registry } = setup();
  store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
  store.put(`${P}/10.5.2.0-24`, val("192.168.0.2"));
  const { w, seen } = recorder(registry, FAST);
  await captureLogs(async () => {
    await w.start();
    store.down();
    store.remove(`${P}/10.5.1.0-24`);
    store.put(`${P}/10.5.4.0-24`, val("192.168.0.4"));
    store.put(`${P}/10.5.2.0-24`, val("192.168.0.22")); // changed while we were away
    store.compact();
    store.up();
    await until("re-list", () => seen.length === 5, 1000, 2);
    store.put(`${P}/10.5.5.0-24`, val("192.168.0.5"));
    await until("event after resume", () => seen.length === 6, 1000, 2);
    await sleep(30); // time for a compaction loop to show
  });
  assertEquals(seen.slice(2, 5).sort(), [
    "added:10.5.2.0/24",
    "added:10.5.4.0/24",
    "removed:10.5.1.0/24",
  ]);
  assertEquals(seen[5], "added:10.5.5.0/24");
  assertEquals([w.stats.compactions, w.stats.relists], [1, 2]);
  w.stop();
});

Deno.test("watch: a silent stream is noticed, re-created on a fresh connection, no event lost", async () => {
  const { store, registry } = setup();
  const { w, seen } = recorder(registry, FAST);
  await captureLogs(async () => {
    await w.start();
    store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
    await until("first event", () => seen.length === 1, 1000, 2);
    store.silenceWatches();
    store.put(`${P}/10.5.2.0-24`, val("192.168.0.2"));
    await until("stall", () => w.stats.stalls === 1, 1000, 2);
    await until("event after re-establish", () => seen.length === 2, 1000, 2);
  });
  assertEquals(store.calls.resets, 1, "the connection was replaced");
  assertEquals(seen, ["added:10.5.1.0/24", "added:10.5.2.0/24"]);
  assertEquals(store.openWatches, 1);
  w.stop();
  assertEquals(store.openWatches, 0);
});

Deno.test("watch: a stream silent from the start (create never answered) is a stall too", async () => {
  const { store, registry } = setup();
  store.silenceNextWatch();
  const { w, seen } = recorder(registry, FAST);
  await captureLogs(async () => {
    await w.start();
    store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
    await until("event after re-establish", () => seen.length === 1, 1000, 2);
  });
  assertEquals(w.stats.stalls, 1);
  w.stop();
});

Deno.test("watch: unusable leases are never routed, logged once per key and reason", async () => {
  const { store, registry } = setup();
  const cfg = parseNetworkConfig(`{"Network":"10.5.0.0/16"}`);
  store.put(`${P}/0.0.0.0-0`, val("192.168.0.66"));
  store.put(`${P}/10.6.1.0-24`, val("192.168.0.67"));
  store.put(`${P}/10.5.1.0-24`, val("192.168.0.1"));
  store.put(`${P}/10.5.7.0-24`, "not json");
  const { w, seen } = recorder(registry, FAST, undefined, (l) => remoteLeaseProblem(cfg, l));
  const lines = await captureLogs(async () => {
    await w.start();
    for (let i = 0; i < 3; i++) store.put(`${P}/10.5.7.0-24`, "still not json");
    store.put(`${P}/10.5.1.0-24`, `{"PublicIP":null}`); // turns unusable: removed
    store.put(`${P}/10.5.3.0-24`, val("192.168.0.3"));
    await until("valid add", () => seen.length === 3, 1000, 2);
  });
  assertEquals(seen, ["added:10.5.1.0/24", "removed:10.5.1.0/24", "added:10.5.3.0/24"]);
  assertEquals(w.stats.badLeases, 7, "every unusable value is counted");
  const bad = lines.filter((l) => l.includes("ignoring unusable lease"));
  assertEquals(bad.length, 5, `once per key and reason:\n${bad.join("\n")}`);
  w.stop();
});

Deno.test("watch: stop() during a re-list against a dead store returns at once", async () => {
  const { store, registry } = setup();
  store.down();
  const { w } = recorder(registry, { ...FAST, backoffMinMs: 1000, backoffMaxMs: 1000 });
  await captureLogs(async () => {
    const started = w.start();
    await sleep(10);
    const t0 = Date.now();
    w.stop();
    await started;
    assert(Date.now() - t0 < 100, "the backoff sleep was cut short");
  });
  assertEquals(store.calls.list, 1);
});
