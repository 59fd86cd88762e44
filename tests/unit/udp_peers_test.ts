import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { PeerTable } from "../../lib/backend/udp/peers.ts";
import { type IP4Net, parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";

const net = (s: string): IP4Net => parseCIDR4(s)!;
const ip = (s: string): number => parseIP4(s)!;

/** Subnet number i of 10.0.0.0/8 split into /24s. */
const nth = (i: number): IP4Net => ({ ip: (0x0a000000 + i * 256) >>> 0, prefix: 24 });

Deno.test("peer table: set, lookup by any address in the subnet, delete", () => {
  const t = PeerTable.create(24);
  const out = new Uint32Array(2);
  assert(!t.lookup(ip("10.5.52.7"), out));
  assert(t.set(net("10.5.52.0/24"), ip("192.168.1.2"), 8285));
  assert(t.lookup(ip("10.5.52.7"), out));
  assertEquals([...out], [ip("192.168.1.2"), 8285]);
  assert(t.lookup(ip("10.5.52.255"), out));
  assert(!t.lookup(ip("10.5.53.0"), out));
  assert(t.isPeer(ip("192.168.1.2")));
  assert(!t.isPeer(ip("192.168.1.3")));
  // replace: new peer, old public IP forgotten
  assert(t.set(net("10.5.52.0/24"), ip("192.168.1.3"), 9000));
  assert(t.lookup(ip("10.5.52.1"), out));
  assertEquals([...out], [ip("192.168.1.3"), 9000]);
  assert(!t.isPeer(ip("192.168.1.2")));
  assertEquals(t.size, 1);
  assert(t.delete(net("10.5.52.0/24")));
  assert(!t.delete(net("10.5.52.0/24")));
  assert(!t.lookup(ip("10.5.52.1"), out));
  assert(!t.isPeer(ip("192.168.1.3")));
  assertEquals([t.size, t.peerCount], [0, 0]);
});

Deno.test("peer table: public IPs are reference counted across subnets", () => {
  const t = PeerTable.create(24);
  const pub = ip("172.16.0.9");
  t.set(nth(1), pub, 8285);
  t.set(nth(2), pub, 8285);
  assertEquals(t.peerCount, 1);
  t.delete(nth(1));
  assert(t.isPeer(pub));
  t.delete(nth(2));
  assert(!t.isPeer(pub));
});

Deno.test("peer table: rejects other prefix lengths and host bits", () => {
  const t = PeerTable.create(24);
  assertThrows(() => t.set(net("10.5.0.0/16"), 1, 1), Error, /prefix/);
  assertThrows(() => t.set({ ip: ip("10.5.52.1"), prefix: 24 }, 1, 1), Error, /host bits/);
  assertThrows(() => PeerTable.create(24, 100), Error, /power of two/);
});

Deno.test("peer table: collisions and deletions inside clusters keep every entry reachable", () => {
  const t = PeerTable.create(24, 64); // small: long probe clusters
  const out = new Uint32Array(2);
  const live = new Map<number, number>();
  let seed = 7;
  const rand = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
  for (let step = 0; step < 20000; step++) {
    const i = rand(200);
    if (rand(3) === 0) {
      assertEquals(t.delete(nth(i)), live.delete(i));
    } else if (live.has(i) || live.size < t.maxEntries) {
      assert(t.set(nth(i), 0xc0a80000 + i, 1000 + i));
      live.set(i, 0xc0a80000 + i);
    }
    if (step % 97 === 0) {
      for (let j = 0; j < 200; j++) {
        const found = t.lookup(nth(j).ip + 5, out);
        assertEquals(found, live.has(j), `subnet ${j} at step ${step}`);
        if (found) assertEquals([...out], [0xc0a80000 + j, 1000 + j]);
        assertEquals(t.isPeer(0xc0a80000 + j), live.has(j));
      }
    }
  }
  assertEquals(t.size, live.size);
  assertEquals(
    new Set(t.entries().map((e) => e.subnet.ip)),
    new Set([...live.keys()].map((i) => nth(i).ip)),
  );
});

Deno.test("peer table: a full table refuses new subnets but still updates existing ones", () => {
  const t = PeerTable.create(24, 8);
  assertEquals(t.maxEntries, 6);
  for (let i = 0; i < 6; i++) assert(t.set(nth(i), 100 + i, 1));
  assert(!t.set(nth(6), 106, 1));
  assert(!t.lookup(nth(6).ip, new Uint32Array(2)));
  assert(t.set(nth(3), 999, 2), "update in place");
  assert(t.delete(nth(0)));
  assert(t.set(nth(6), 106, 1), "room again after a delete");
  assertEquals(t.size, 6);
});

Deno.test("peer table: /32 and /1 subnet lengths", () => {
  const out = new Uint32Array(2);
  const t32 = PeerTable.create(32);
  t32.set({ ip: 0xffffffff, prefix: 32 }, 1, 2);
  assert(t32.lookup(0xffffffff, out));
  assert(!t32.lookup(0xfffffffe, out));
  const t1 = PeerTable.create(1);
  t1.set({ ip: 0x80000000, prefix: 1 }, 3, 4);
  assert(t1.lookup(0xdeadbeef, out));
  assert(!t1.lookup(0x7fffffff, out));
});

Deno.test("peer table: readers in another thread never see torn or missing entries", async () => {
  const t = PeerTable.create(24, 64);
  const hot = nth(1), fixed = nth(2);
  t.set(fixed, 0xc0a80002, 8285);
  t.set(hot, 0x00010001, 1);
  const control = new Int32Array(new SharedArrayBuffer(4));
  const w = new Worker(new URL("../helpers/peer_reader_worker.ts", import.meta.url), {
    type: "module",
  });
  const msgs: MessageEvent[] = [];
  let notify = () => {};
  w.onmessage = (e) => {
    msgs.push(e);
    notify();
  };
  const next = () =>
    msgs.length
      ? Promise.resolve(msgs.shift()!)
      : new Promise<MessageEvent>((r) => notify = () => r(msgs.shift()!));
  try {
    w.postMessage({
      peers: t.buffer,
      control: control.buffer,
      hot: hot.ip + 1,
      fixed: fixed.ip + 1,
      fixedIP: 0xc0a80002,
    });
    assertEquals((await next()).data.type, "started");
    // Rewrite the hot subnet and churn neighbours (backward shifts move slots around the
    // fixed entry) for a while, synchronously, while the Worker reads.
    const until = Date.now() + 300;
    let k = 1;
    while (Date.now() < until) {
      for (let i = 0; i < 100; i++) {
        k = (k + 0x10001) >>> 0;
        t.set(hot, k, k & 0xffff);
        const n = nth(3 + (k % 40));
        if (!t.delete(n)) t.set(n, k, k & 0xffff);
        if (k % 7 === 0) t.delete(hot);
      }
    }
    Atomics.store(control, 0, 1);
    const r = (await next()).data;
    assertEquals(r.type, "done");
    assert(r.lookups > 1000, `only ${r.lookups} lookups`);
    assert(r.hits > 0);
    assertEquals(r.torn, 0);
    assertEquals(r.missedFixed, 0);
  } finally {
    w.terminate();
  }
});
