// The gce backend over REST against the local compute API and metadata stand-in
// (tests/helpers/gce_standin.ts) on loopback: discovery, our route inserted (name, range,
// next hop, priority, network) and each operation waited for, a conflicting route deleted
// first, routes with a missing next hop cleaned, a removed lease's route deleted, our route
// put back, the access token replaced before it expires, the ROUTES quota, API errors and
// throttling, and no metadata server. No root needed.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./helpers/assert.ts";
import { GceStandIn } from "./helpers/gce_standin.ts";
import {
  deadEndpoints,
  leaseEvent,
  makeCloudBackend,
  ownLease,
  restoringEnv,
  withCapturedLogs,
} from "./helpers/cloud_backend.ts";
import { until } from "./helpers/wait.ts";

const MY_IP = "10.128.0.5";
const makeBackend = (intervalSeconds?: number) =>
  makeCloudBackend({ Type: "gce" }, MY_IP, intervalSeconds);
const lease = (subnet: string) => ownLease(subnet, MY_IP);

/** A stand-in project with our instance ("node-a") and another ("node-b"); logs captured. */
async function withStandIn(
  fn: (s: GceStandIn, lines: string[]) => Promise<void>,
  o: { tokenLifetime?: number } = {},
): Promise<void> {
  await withCapturedLogs(() => new GceStandIn(), async (s, lines) => {
    const md = s.addInstance({ name: "node-a", ip: MY_IP, tokenLifetime: o.tokenLifetime });
    s.addInstance({ name: "node-b", ip: "10.128.0.6" });
    Deno.env.set("GCE_METADATA_HOST", md);
    Deno.env.set("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", s.endpoint);
    await fn(s, lines);
  });
}

Deno.test("gce: our route inserted as upstream names it; conflict deleted first; no-next-hop routes cleaned", () =>
  withStandIn(async (s, lines) => {
    s.opDelayMs = 300; // each insert and delete is an operation that takes a while
    s.addInstance({ name: "node-c", ip: "10.128.0.7" });
    s.putRoute({ name: "flannel-10-5-9-0-24", destRange: "10.5.9.0/24", instance: "node-c" });
    s.putRoute({ name: "other-team-route", destRange: "10.5.77.0/24", instance: "node-c" });
    s.deleteInstance("node-c"); // its routes lose their next hop
    s.putRoute({ name: "flannel-10-5-1-0-24", destRange: "10.5.1.0/24", instance: "node-b" });
    const b = makeBackend();
    assertEquals([b.leaseType, b.mtu], ["", 1460]);
    await b.prepare();
    await b.start(lease("10.5.1.0/24"));
    assertEquals(s.routeLines(), [
      "default-route-0123456789abcdef 0.0.0.0/0 → default-internet-gateway",
      "flannel-10-5-1-0-24 10.5.1.0/24 → node-a",
      "other-team-route 10.5.77.0/24 → node-c (no next hop)",
    ]);
    const mine = s.routes.find((r) => r.name === "flannel-10-5-1-0-24")!;
    assertEquals(mine, {
      name: "flannel-10-5-1-0-24",
      network: s.networkLink,
      destRange: "10.5.1.0/24",
      nextHopInstance: s.instanceLink("node-a"),
      priority: 1000,
    });
    assertEquals(b.problems!(), []);
    // Each write's operation is waited for before the next: the blackhole goes, then the
    // conflicting route, then ours is inserted.
    const writes = s.callsMatching("^(POST|DELETE) ").map((c) =>
      `${c.method} ${
        c.path.replace("/compute/v1/projects/flannel-test/global/", "").replace(
          /operation-[\d-]+/,
          "op",
        )
      }`
    );
    assertEquals(writes, [
      "DELETE routes/flannel-10-5-9-0-24",
      "POST operations/op/wait",
      "DELETE routes/flannel-10-5-1-0-24",
      "POST operations/op/wait",
      "POST routes",
      "POST operations/op/wait",
    ]);
    assert(lines.some((l) => l.includes("deleted blackhole route") && l.includes("10.5.9.0/24")));
    await b.stop();
  }));

Deno.test("gce: removed lease's route deleted after the grace period, own route put back", () =>
  withStandIn(async (s, lines) => {
    s.putRoute({ name: "flannel-10-5-2-0-24", destRange: "10.5.2.0/24", instance: "node-b" });
    s.putRoute({ name: "flannel-10-5-3-0-24", destRange: "10.5.3.0/24", instance: "node-b" });
    const b = makeBackend(1);
    await b.prepare();
    await b.start(lease("10.5.1.0/24"));
    try {
      await b.handle([leaseEvent("added", "10.5.2.0/24"), leaseEvent("added", "10.5.3.0/24")]);
      await b.handle([leaseEvent("removed", "10.5.2.0/24")]);
      await until(
        "the removed lease's route deleted",
        () => !s.routes.some((r) => r.name === "flannel-10-5-2-0-24"),
        10_000,
      );
      assert(s.routes.some((r) => r.name === "flannel-10-5-3-0-24"), "a live lease's route stays");
      assert(lines.some((l) => l.includes("deleted route of a removed lease")));
      s.dropRoute("flannel-10-5-1-0-24");
      await until(
        "own route back",
        () => s.routeLines().includes("flannel-10-5-1-0-24 10.5.1.0/24 → node-a"),
        10_000,
      );
      s.putRoute({ name: "flannel-10-5-1-0-24", destRange: "10.5.1.0/24", instance: "node-b" });
      await until(
        "own route pointed back at us",
        () => s.routeLines().includes("flannel-10-5-1-0-24 10.5.1.0/24 → node-a"),
        10_000,
      );
      assertEquals(b.stats().repairs_own_route, 2);
    } finally {
      await b.stop();
    }
  }));

Deno.test("gce: the access token is replaced before it expires", () =>
  withStandIn(async (s) => {
    const b = makeBackend(1);
    await b.prepare();
    await b.start(lease("10.5.1.0/24"));
    try {
      // 3 s tokens, a check every second: over 5 s the token must be replaced at least once
      // and no call may go out with an expired one (the stand-in answers those with 401).
      await new Promise((r) => setTimeout(r, 5000));
      assert(s.tokensIssued("node-a") >= 3, `tokens issued: ${s.tokensIssued("node-a")}`);
      assertEquals(s.calls.filter((c) => c.status === 401).length, 0);
      assertEquals(b.problems!(), []);
      assert(b.stats().route_checks >= 4);
    } finally {
      await b.stop();
    }
  }, { tokenLifetime: 3 }));

Deno.test("gce: throttling retried with backoff; a lasting one is one clear line; the ROUTES quota", () =>
  withStandIn(async (s, lines) => {
    s.throttle(2, 429, "GET .*/instances/");
    const b = makeBackend();
    await b.prepare();
    assertEquals(s.callsMatching("GET .*/instances/").map((c) => c.status), [429, 429, 200]);
    s.throttle(1000, 403, "GET .*/global/routes$");
    await b.start(lease("10.5.1.0/24"));
    assertEquals(b.problems!(), [
      "own route 10.5.1.0/24 → projects/flannel-test/zones/europe-west1-b/instances/node-a not checked yet in network default: compute API routes.list failed: HTTP 403 rateLimitExceeded: Rate Limit Exceeded (5 attempts)",
    ]);
    const warnings = lines.filter((l) => l.startsWith("W"));
    assertEquals(warnings.length, 1, warnings.join("\n"));
    s.clearFaults();
    await b.stop();
    s.routeQuota = 1; // the default route already uses it up
    const again = makeBackend();
    await again.prepare();
    await again.start(lease("10.5.1.0/24"));
    assertStringIncludes(
      again.problems!().join("\n"),
      "not in place in network default: compute API routes.insert flannel-10-5-1-0-24 failed: QUOTA_EXCEEDED: Quota 'ROUTES' exceeded.  Limit: 1.0 globally. (GCE's ROUTES quota, 250 routes per project by default, is reached; raise it)",
    );
    await again.stop();
  }));

Deno.test("gce: API errors are not retried; a missing permission reads as one line", () =>
  withStandIn(async (s) => {
    s.fail(
      1000,
      403,
      "forbidden",
      "Required 'compute.routes.create' permission for 'projects/flannel-test/global/routes/flannel-10-5-1-0-24'",
      "POST .*/global/routes$",
    );
    const b = makeBackend();
    await b.prepare();
    await b.start(lease("10.5.1.0/24"));
    assertStringIncludes(
      b.problems!()[0],
      "compute API routes.insert failed: HTTP 403 forbidden: Required 'compute.routes.create' permission for 'projects/flannel-test/global/routes/flannel-10-5-1-0-24' (1 attempt)",
    );
    assertEquals(s.callsMatching("POST .*/global/routes$").length, 1);
    await b.stop();
  }));

Deno.test("gce: no metadata server: one clear line naming it, within seconds", () =>
  restoringEnv(async () => {
    const dead = deadEndpoints();
    // Something that answers HTTP but is not the metadata server (no Metadata-Flavor header).
    const impostor = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("hello"),
    );
    try {
      for (
        const host of [
          `127.0.0.1:${dead.refused}`,
          `127.0.0.1:${dead.silent}`,
          `127.0.0.1:${impostor.addr.port}`,
        ]
      ) {
        Deno.env.set("GCE_METADATA_HOST", host);
        const t0 = Date.now();
        const e = await assertRejects(() => makeBackend().prepare());
        const took = Date.now() - t0;
        assertStringIncludes(
          e.message,
          `cannot read project/project-id from the GCE metadata server at http://${host}/computeMetadata/v1/`,
        );
        assertStringIncludes(e.message, "not running on Google Compute Engine?");
        assert(!e.message.includes("\n"), "one line");
        assert(took < 10_000, `within seconds, took ${took} ms`);
        console.log(`metadata server at ${host}: error after ${took} ms: ${e.message}`);
      }
    } finally {
      dead.close();
      await impostor.shutdown();
    }
  }));
