/**
 * Lease watching against a real etcd: events from another client, etcd killed and
 * restarted mid-watch, compaction past our revision, a silent (frozen) stream, and a
 * watch kept open for minutes under Deno.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { EtcdServer } from "./helpers/etcd.ts";
import { TcpProxy } from "./helpers/tcp_proxy.ts";
import { recorder, registryFor } from "./helpers/control.ts";
import { sleep, until } from "./helpers/wait.ts";
import { parseCIDR4 } from "../lib/core/ip.ts";
import { remoteLeaseProblem } from "../lib/subnet/allocator.ts";
import { parseNetworkConfig } from "../lib/values/config.ts";

const P = "/coreos.com/network/subnets";
const val = (ip: string) => `{"PublicIP":"${ip}","PublicIPv6":null}`;

Deno.test("watch: another host's add and remove, own subnet excluded, bad values skipped", async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  await etcd.ctl("put", `${P}/10.5.1.0-24`, val("192.168.0.1"));
  await etcd.ctl("put", `${P}/10.5.9.0-24`, val("192.168.0.9"));
  const { w, seen, events } = recorder(registry);
  w.setOwn(parseCIDR4("10.5.9.0/24"));
  await w.start();
  assertEquals(seen, ["added:10.5.1.0/24"], "snapshot without our own subnet");
  await etcd.ctl(
    "put",
    `${P}/10.5.2.0-24`,
    `{"PublicIP":"192.168.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
  );
  await etcd.ctl("put", `${P}/10.5.3.0-24`, "not json");
  await etcd.ctl("put", `${P}/10.5.9.0-24`, val("192.168.0.9"));
  await etcd.ctl("del", `${P}/10.5.1.0-24`);
  await until("add and remove", () => seen.length === 3);
  assertEquals(seen, ["added:10.5.1.0/24", "added:10.5.2.0/24", "removed:10.5.1.0/24"]);
  assertEquals(events[1].lease.attrs.backendType, "vxlan");
  assertEquals(
    events[2].lease.attrs.publicIP,
    events[0].lease.attrs.publicIP,
    "removal carries the stored lease",
  );
  assertEquals(w.stats.badLeases, 1);
  w.stop();
  store.close();
});

Deno.test("watch: etcd killed and restarted mid-watch loses no event", async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  const { w, seen } = recorder(registry);
  await w.start();
  await etcd.ctl("put", `${P}/10.5.1.0-24`, val("192.168.0.1"));
  await until("first add", () => seen.length === 1);
  await etcd.kill();
  await sleep(1500); // etcd down past several backoff steps
  await etcd.resume();
  // Written at once after the restart, before the watcher has necessarily reconnected.
  await etcd.ctl("put", `${P}/10.5.2.0-24`, val("192.168.0.2"));
  await etcd.ctl("del", `${P}/10.5.1.0-24`);
  await etcd.ctl("put", `${P}/10.5.3.0-24`, val("192.168.0.3"));
  await until("events after restart", () => seen.length === 4, 15000);
  assertEquals(seen, [
    "added:10.5.1.0/24",
    "added:10.5.2.0/24",
    "removed:10.5.1.0/24",
    "added:10.5.3.0/24",
  ]);
  assert(w.stats.reconnects >= 1);
  console.log(`etcd restart: ${seen.length} events checked, ${w.stats.reconnects} reconnects`);
  w.stop();
  store.close();
});

Deno.test("watch: compaction past our revision → re-list with synthesized removals, no loop", async () => {
  await using etcd = await EtcdServer.start();
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: etcd.clientPort });
  const { store, registry } = registryFor(proxy);
  try {
    await etcd.ctl("put", `${P}/10.5.1.0-24`, val("192.168.0.1"));
    await etcd.ctl("put", `${P}/10.5.2.0-24`, val("192.168.0.2"));
    const { w, seen } = recorder(registry);
    await w.start();
    assertEquals(seen.length, 2);
    proxy.cut(); // the watcher is cut off while etcd moves on
    await etcd.ctl("del", `${P}/10.5.1.0-24`);
    await etcd.ctl("put", `${P}/10.5.4.0-24`, val("192.168.0.4"));
    const rev = JSON.parse(await etcd.ctl("get", "/", "-w", "json")).header.revision;
    await etcd.ctl("compact", String(rev));
    proxy.restore();
    await until("re-list after compaction", () => seen.length === 4, 15000);
    assertEquals(seen.slice(2).sort(), ["added:10.5.4.0/24", "removed:10.5.1.0/24"]);
    assertEquals(w.stats.compactions, 1);
    // Resumed, not looping: a later event arrives once and no further compaction is seen.
    await etcd.ctl("put", `${P}/10.5.5.0-24`, val("192.168.0.5"));
    await until("event after resume", () => seen.length === 5);
    await sleep(500); // time for a compaction loop to show
    assertEquals(w.stats.compactions, 1);
    assertEquals(w.stats.relists, 2);
    w.stop();
  } finally {
    store.close();
    proxy.close();
  }
});

Deno.test("watch: a silent stream is detected and re-established", async () => {
  await using etcd = await EtcdServer.start();
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: etcd.clientPort });
  // Everything goes through the proxy; freezing it leaves the open connection silent, and a
  // new connection works: what a wedged gRPC stream looks like.
  const { store, registry } = registryFor(proxy);
  try {
    const { w, seen } = recorder(registry, {
      progressIntervalMs: 300,
      stallTimeoutMs: 1500,
    });
    await w.start();
    await etcd.ctl("put", `${P}/10.5.1.0-24`, val("192.168.0.1"));
    await until("event before freeze", () => seen.length === 1);
    proxy.freeze();
    await etcd.ctl("put", `${P}/10.5.2.0-24`, val("192.168.0.2"));
    await until("stall detected", () => w.stats.stalls >= 1, 10000);
    await until("event after re-establish", () => seen.length === 2, 10000);
    assertEquals(seen, ["added:10.5.1.0/24", "added:10.5.2.0/24"]);
    console.log(`stall: detected after freeze, ${w.stats.stalls} stall(s), events intact`);
    w.stop();
  } finally {
    store.close();
    proxy.close();
  }
});

const LONG_MS = Number(Deno.env.get("FLANNEL_LONG_WATCH_MS") ?? 130000);

Deno.test(`watch: stays live for ${Math.round(LONG_MS / 1000)} s under Deno`, async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  const { w, seen } = recorder(registry);
  await w.start();
  const start = Date.now();
  let n = 0;
  const lags: number[] = [];
  while (Date.now() - start < LONG_MS) {
    await sleep(Math.min(20000, LONG_MS / 4)); // the point: a watch idle this long
    n++;
    const t0 = Date.now();
    await etcd.ctl("put", `${P}/10.5.${n}.0-24`, val(`192.168.0.${n}`));
    await until(
      `event ${n} after ${Math.round((Date.now() - start) / 1000)} s`,
      () => seen.length === n,
      5000,
      10,
    );
    lags.push(Date.now() - t0);
  }
  assertEquals(w.stats.stalls, 0);
  console.log(
    `long watch: ${n} events over ${Math.round((Date.now() - start) / 1000)} s, max delivery ${
      Math.max(...lags)
    } ms (incl. etcdctl)`,
  );
  w.stop();
  store.close();
});

Deno.test("watch: impossible subnets are never routed; a lease turning invalid is removed", async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  const cfg = parseNetworkConfig(`{"Network":"10.5.0.0/16"}`);
  await etcd.ctl("put", `${P}/0.0.0.0-0`, val("192.168.0.66"));
  await etcd.ctl("put", `${P}/10.6.1.0-24`, val("192.168.0.67"));
  await etcd.ctl("put", `${P}/10.5.1.0-24`, val("192.168.0.1"));
  const { w, seen } = recorder(registry, {}, undefined, (l) => remoteLeaseProblem(cfg, l));
  await w.start();
  assertEquals(seen, ["added:10.5.1.0/24"]);
  await etcd.ctl("put", `${P}/10.5.2.0-25`, val("192.168.0.2"));
  await etcd.ctl("put", `${P}/10.5.1.0-24`, `{"PublicIP":null}`);
  await etcd.ctl("put", `${P}/10.5.3.0-24`, val("192.168.0.3"));
  await until("valid add", () => seen.length === 3);
  assertEquals(seen, ["added:10.5.1.0/24", "removed:10.5.1.0/24", "added:10.5.3.0/24"]);
  assertEquals(w.stats.badLeases, 4);
  w.stop();
  store.close();
});
