// The --ip-blackhole-route keeper on the in-memory kernel: installed for our subnet with a
// metric that leaves the bridge's own route in front, put back when deleted, moved when our
// subnet changes; with IPv6, one for the IPv6 subnet too. The namespace test (tests/blackhole_test.ts) shows its effect on traffic.
import { assert, assertEquals } from "../helpers/assert.ts";
import { captureLogs } from "../helpers/logs.ts";
import { MemoryKernel } from "../helpers/memory_kernel.ts";
import { BLACKHOLE_METRIC, BlackholeRoute } from "../../lib/backend/blackhole.ts";
import { routeDel, routeList, RTN_BLACKHOLE } from "../../ffi/netlink/mod.ts";
import { formatNet, parseCIDR4, parseCIDR6 } from "../../lib/core/ip.ts";
import type { Lease } from "../../lib/values/lease.ts";

const lease = (s: string): Lease => ({
  subnet: parseCIDR4(s)!,
  attrs: { publicIP: 0xc0a86401, publicIPv6: null },
});
const blackholes = (k: MemoryKernel, family: 4 | 6 = 4) =>
  routeList(k, { family }).filter((r) => r.type === RTN_BLACKHOLE).map((r) =>
    `${formatNet(r.dst)} metric ${r.priority}`
  );

Deno.test("blackhole route: installed, repaired when deleted, moved with our subnet", async () => {
  const k = new MemoryKernel();
  const b = new BlackholeRoute(k, 3600);
  const lines = await captureLogs(() => {
    b.start(lease("10.5.52.0/24"));
    assertEquals(blackholes(k), [`10.5.52.0/24 metric ${BLACKHOLE_METRIC}`]);
    assertEquals(b.check(), false, "in place: nothing to do");
    routeDel(k, {
      dst: parseCIDR4("10.5.52.0/24")!,
      type: RTN_BLACKHOLE,
      priority: BLACKHOLE_METRIC,
    });
    assertEquals(blackholes(k), []);
    assertEquals(b.check(), true);
    assertEquals([blackholes(k).length, b.repairs], [1, 1]);
    b.update(lease("10.5.9.0/24"));
    assertEquals(blackholes(k), [`10.5.9.0/24 metric ${BLACKHOLE_METRIC}`]);
    b.stop();
  });
  assert(lines.some((l) => l.includes("repaired: blackhole route was missing")), lines.join("\n"));
  assert(lines.some((l) => l.includes("removed the blackhole route of our previous subnet")));
  assertEquals(blackholes(k).length, 1, "stop() leaves the route in place");
});

Deno.test("blackhole route: a dual-stack lease gets one per family; IPv6-only never blackholes 0.0.0.0/0", async () => {
  const k = new MemoryKernel();
  const b = new BlackholeRoute(k, 3600);
  const dual = (v4: string, v6: string): Lease => ({
    ...lease(v4),
    ipv6Subnet: parseCIDR6(v6)!,
  });
  await captureLogs(() => {
    b.start(dual("10.5.52.0/24", "fd42:0:0:52::/64"));
    assertEquals(blackholes(k, 6), [`fd42:0:0:52::/64 metric ${BLACKHOLE_METRIC}`]);
    assertEquals(blackholes(k).length, 1);
    assert(b.present());
    routeDel(k, { dst: parseCIDR6("fd42:0:0:52::/64")!, type: RTN_BLACKHOLE });
    assert(!b.present(), "one family missing is not in place");
    assertEquals([b.check(), b.repairs, blackholes(k, 6).length], [true, 1, 1]);
    b.update(dual("10.5.9.0/24", "fd42:0:0:9::/64"));
    assertEquals(blackholes(k, 6), [`fd42:0:0:9::/64 metric ${BLACKHOLE_METRIC}`]);
    assertEquals(blackholes(k), [`10.5.9.0/24 metric ${BLACKHOLE_METRIC}`]);
    b.update(dual("0.0.0.0/0", "fd42:0:0:9::/64")); // the same host, now IPv6-only
    assertEquals(blackholes(k), [], "no IPv4 blackhole, least of all a default one");
    assertEquals(blackholes(k, 6).length, 1);
    b.stop();
  });
});
