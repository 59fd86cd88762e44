// The aws-vpc backend through the real AWS SDK against the local EC2 and IMDS stand-in
// (tests/helpers/ec2_standin.ts) on loopback: discovery, SourceDestCheck, route tables
// (detected, configured as a string or an array), our route created, conflicting route
// replaced, blackholes cleaned, a removed lease's route deleted, our route put back, the
// route limit, API errors and throttling, IMDSv1 fallback, and no metadata service.
// No root needed; the SDK is loaded once per process (~1 s).
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./helpers/assert.ts";
import { Ec2StandIn } from "./helpers/ec2_standin.ts";
import { until } from "./helpers/wait.ts";
import {
  deadEndpoints,
  leaseEvent,
  makeCloudBackend,
  ownLease,
  restoringEnv,
  withCapturedLogs,
} from "./helpers/cloud_backend.ts";

const VPC_CIDR = "10.0.0.0/16";
const MY_IP = "10.0.0.5";

/** Only the stand-in's credentials and endpoints: nothing from this machine's AWS setup. */
function isolate(endpoint: string, imds: string, extra: Record<string, string> = {}): void {
  for (
    const k of [
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "AWS_SESSION_TOKEN",
      "AWS_PROFILE",
      "AWS_REGION",
      "AWS_DEFAULT_REGION",
      "AWS_MAX_ATTEMPTS",
      "AWS_RETRY_MODE",
      "AWS_EC2_METADATA_DISABLED",
    ]
  ) Deno.env.delete(k);
  Deno.env.set("AWS_CONFIG_FILE", "/nonexistent/aws-config");
  Deno.env.set("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials");
  Deno.env.set("AWS_ENDPOINT_URL_EC2", endpoint);
  Deno.env.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds);
  for (const [k, v] of Object.entries(extra)) Deno.env.set(k, v);
}

const makeBackend = (backend: Record<string, unknown>, intervalSeconds?: number) =>
  makeCloudBackend(backend, MY_IP, intervalSeconds);
const lease = (subnet: string) => ownLease(subnet, MY_IP);
const ev = leaseEvent;

/** A stand-in with one VPC, our instance and a second one; log lines captured. */
async function withStandIn(
  fn: (
    s: Ec2StandIn,
    ids: { main: string; me: { instanceId: string; eniId: string; imds: string }; other: string },
    lines: string[],
  ) => Promise<void>,
): Promise<void> {
  await withCapturedLogs(() => new Ec2StandIn(), async (s, lines) => {
    const main = s.addVpc("vpc-1", VPC_CIDR).id;
    const me = s.addInstance({ ip: MY_IP, vpcId: "vpc-1", subnetId: "subnet-a" });
    const other = s.addInstance({ ip: "10.0.0.6", vpcId: "vpc-1" }).eniId;
    isolate(s.endpoint, me.imds);
    await fn(s, { main, me, other }, lines);
  });
}

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "aws-vpc: our route, conflicting route replaced, blackholes cleaned, SourceDestCheck off",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me, other }, lines) => {
      // A blackhole in the Network (a terminated node's), one outside it, and our subnet
      // still pointing at a previous holder.
      const gone = s.addInstance({ ip: "10.0.0.7", vpcId: "vpc-1" });
      s.putRoute(main, {
        dest: "10.5.9.0/24",
        eni: gone.eniId,
        state: "active",
        origin: "CreateRoute",
      });
      s.terminate(gone.instanceId);
      s.putRoute(main, {
        dest: "172.16.0.0/24",
        eni: gone.eniId,
        state: "blackhole",
        origin: "CreateRoute",
      });
      s.putRoute(main, { dest: "10.5.1.0/24", eni: other, state: "active", origin: "CreateRoute" });
      const b = makeBackend({ Type: "aws-vpc" });
      assertEquals(
        [b.leaseType, b.mtu],
        ["", 1460],
        "lease without BackendType; the interface's MTU",
      );
      assertEquals(await b.prepare(), {});
      await b.start(lease("10.5.1.0/24"));
      assertEquals(s.routeLines(main), [
        `10.0.0.0/16 → local`,
        `10.5.1.0/24 → ${me.eniId}`,
        `172.16.0.0/24 → ${gone.eniId} (blackhole)`,
      ]);
      assertEquals(b.problems!(), []);
      assertEquals(s.eni(me.eniId).sourceDestCheck, false);
      const modify = s.callsOf("ModifyNetworkInterfaceAttribute");
      assertEquals(
        modify.map((c) => [c.params.NetworkInterfaceId, c.params["SourceDestCheck.Value"]]),
        [
          [me.eniId, "false"],
        ],
      );
      assertEquals(s.callsOf("ReplaceRoute").length, 1, "the conflict is replaced in place");
      assertEquals(b.stats().routes_deleted_blackhole, 1);
      // IMDSv2: a token before every metadata read, also for the instance profile credentials.
      const reads = s.imdsRequests(me.instanceId).filter((r) => r.method === "GET");
      assert(reads.length >= 4 && reads.every((r) => r.token), JSON.stringify(reads));
      // Every EC2 call was signed by the instance profile's credentials (the stand-in checks).
      assert(s.calls.every((c) => c.status === 200 && c.instanceId === me.instanceId));
      assert(lines.some((l) => l.includes("replaced conflicting route")), lines.join("\n"));
      await b.stop();
      // A restart finds everything in place: one read, no write.
      const before = s.calls.length;
      const again = makeBackend({ Type: "aws-vpc" });
      await again.prepare();
      await again.start(lease("10.5.1.0/24"));
      await again.stop();
      assertEquals(
        s.calls.slice(before).map((c) => c.action),
        ["DescribeInstances", "DescribeRouteTables", "DescribeRouteTables", "DescribeRouteTables"],
        "SourceDestCheck already off: not modified again; route in place: not touched",
      );
    }),
});

Deno.test({
  name: "aws-vpc: RouteTableID detected (subnet's table, else main), a string, an array",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me }) => {
      const own = "10.5.1.0/24";
      const mine = `${own} → ${me.eniId}`;
      let b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      await b.start(lease(own));
      await b.stop();
      assert(s.routeLines(main).includes(mine), "no table for our subnet: the main one");
      s.dropRoute(main, own);

      const assoc = s.addTable("vpc-1", ["subnet-a"]).id;
      const spare = s.addTable("vpc-1").id;
      b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      await b.start(lease(own));
      await b.stop();
      assert(s.routeLines(assoc).includes(mine), "the table associated with our subnet");
      assert(!s.routeLines(main).includes(mine) && !s.routeLines(spare).includes(mine));
      s.dropRoute(assoc, own);

      b = makeBackend({ Type: "aws-vpc", RouteTableID: spare });
      await b.prepare();
      await b.start(lease(own));
      await b.stop();
      assertEquals([assoc, spare, main].map((t) => s.routeLines(t).includes(mine)), [
        false,
        true,
        false,
      ]);

      b = makeBackend({ Type: "aws-vpc", RouteTableID: [main, assoc] });
      await b.prepare();
      await b.start(lease(own));
      assertEquals([main, assoc, spare].map((t) => s.routeLines(t).includes(mine)), [
        true,
        true,
        true,
      ]);
      assertEquals(b.problems!(), []);
      await b.stop();

      // A table that does not exist: the backend runs, readiness names the table.
      b = makeBackend({ Type: "aws-vpc", RouteTableID: ["rtb-0000000000000dead"] });
      await b.prepare();
      await b.start(lease(own));
      assertStringIncludes(
        b.problems!().join("\n"),
        "own route 10.5.1.0/24 → " + me.eniId +
          " not checked yet in rtb-0000000000000dead: EC2 DescribeRouteTables failed: InvalidRouteTableID.NotFound",
      );
      await b.stop();
    }),
});

Deno.test({
  name: "aws-vpc: removed lease's route deleted after the grace period, own route put back",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me, other }, lines) => {
      s.putRoute(main, { dest: "10.5.2.0/24", eni: other, state: "active", origin: "CreateRoute" });
      s.putRoute(main, { dest: "10.5.3.0/24", eni: other, state: "active", origin: "CreateRoute" });
      const b = makeBackend({ Type: "aws-vpc" }, 1);
      await b.prepare();
      await b.start(lease("10.5.1.0/24"));
      try {
        await b.handle([ev("added", "10.5.2.0/24"), ev("added", "10.5.3.0/24")]);
        await b.handle([ev("removed", "10.5.2.0/24")]);
        const t0 = Date.now();
        await until("the removed lease's route deleted", () =>
          !s.routeLines(main).some((l) => l.startsWith("10.5.2.0/24")), 10_000);
        const took = Date.now() - t0;
        assert(took >= 900, `not before the 1 s grace period (${took} ms)`);
        assert(
          s.routeLines(main).some((l) =>
            l.startsWith("10.5.3.0/24")
          ),
          "a live lease's route stays",
        );
        assert(lines.some((l) =>
          l.includes("deleted route of a removed lease") && l.includes("10.5.2.0/24")
        ));

        s.dropRoute(main, "10.5.1.0/24");
        await until("own route back", () =>
          s.routeLines(main).includes(`10.5.1.0/24 → ${me.eniId}`), 10_000);
        s.putRoute(main, {
          dest: "10.5.1.0/24",
          eni: other,
          state: "active",
          origin: "CreateRoute",
        });
        await until("own route pointed back at us", () =>
          s.routeLines(main).includes(`10.5.1.0/24 → ${me.eniId}`), 10_000);
        assertEquals(b.stats().repairs_own_route, 2);
        assertEquals(b.stats().routes_deleted_stale, 1);
      } finally {
        await b.stop();
      }
    }),
});

Deno.test({
  name: "aws-vpc: a full route table gives a clear error naming the limit; readiness says so",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me }) => {
      const t = s.table(main);
      t.limit = 3;
      s.putRoute(main, {
        dest: "10.0.200.0/24",
        gateway: "igw-1",
        state: "active",
        origin: "CreateRoute",
      });
      s.putRoute(main, {
        dest: "10.0.201.0/24",
        gateway: "igw-1",
        state: "active",
        origin: "CreateRoute",
      });
      const b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      await b.start(lease("10.5.1.0/24"));
      assertEquals(b.problems!(), [
        `own route 10.5.1.0/24 → ${me.eniId} not in place in ${main}: route table ${main} is full (3 routes): EC2's quota "Routes per route table" (50 by default) is reached; raise it or use fewer hosts per table (EC2 CreateRoute failed: RouteLimitExceeded: The maximum number of routes has been reached. (HTTP 400, 1 attempt))`,
      ]);
      await b.stop();
    }),
});

Deno.test({
  name: "aws-vpc: throttling is retried by the SDK; a lasting one is one clear line",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me }, lines) => {
      Deno.env.set("AWS_MAX_ATTEMPTS", "3"); // the SDK's own setting, honoured
      s.throttle(2, "DescribeInstances");
      const b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      assertEquals(
        s.callsOf("DescribeInstances").map((c) => c.status),
        [503, 503, 200],
        "retried with backoff until it went through",
      );
      s.throttle(1000, "DescribeRouteTables");
      await b.start(lease("10.5.1.0/24"));
      const p = b.problems!();
      assertEquals(p, [
        `own route 10.5.1.0/24 → ${me.eniId} not checked yet in ${main}: EC2 DescribeRouteTables failed: RequestLimitExceeded: Request limit exceeded. (HTTP 503, 3 attempts)`,
      ]);
      // Discovery read the tables once before the throttle; the check made 3 attempts.
      assertEquals(s.callsOf("DescribeRouteTables").filter((c) => c.status === 503).length, 3);
      const warnings = lines.filter((l) => l.startsWith("W"));
      assertEquals(warnings.length, 1, warnings.join("\n"));
      assertStringIncludes(
        warnings[0],
        "cannot check the route tables: EC2 DescribeRouteTables failed: RequestLimitExceeded",
      );
      assert(!lines.some((l) => /^\s+at /.test(l)), "no stack trace");
      await b.stop();
    }),
});

Deno.test({
  name:
    "aws-vpc: API errors are not retried and read as one line; SourceDestCheck refused is a warning",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me }, lines) => {
      s.fail(
        1,
        "UnauthorizedOperation",
        403,
        "You are not authorized to perform this operation.",
        "ModifyNetworkInterfaceAttribute",
      );
      s.fail(
        1000,
        "UnauthorizedOperation",
        403,
        "You are not authorized to perform this operation.",
        "CreateRoute",
      );
      const b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      assertEquals(s.eni(me.eniId).sourceDestCheck, true);
      const w = lines.filter((l) => l.startsWith("W"));
      assertStringIncludes(w[0], `cannot turn SourceDestCheck off on ${me.eniId}`);
      assertStringIncludes(
        w[0],
        "UnauthorizedOperation: You are not authorized to perform this operation. (HTTP 403, 1 attempt)",
      );
      await b.start(lease("10.5.1.0/24"));
      assertEquals(b.problems!(), [
        `own route 10.5.1.0/24 → ${me.eniId} not in place in ${main}: EC2 CreateRoute failed: UnauthorizedOperation: You are not authorized to perform this operation. (HTTP 403, 1 attempt)`,
      ]);
      assertEquals(s.callsOf("CreateRoute").length, 1, "a permission error is not retried");
      await b.stop();
    }),
});

Deno.test({
  name: "aws-vpc: IMDSv1 when the metadata service refuses tokens",
  ...opts,
  fn: () =>
    withStandIn(async (s, { main, me }) => {
      s.refuseImdsTokens(me.instanceId);
      const b = makeBackend({ Type: "aws-vpc" });
      await b.prepare();
      await b.start(lease("10.5.1.0/24"));
      await b.stop();
      assert(s.routeLines(main).includes(`10.5.1.0/24 → ${me.eniId}`));
      const gets = s.imdsRequests(me.instanceId).filter((r) => r.method === "GET");
      assert(gets.length >= 2 && gets.every((r) => !r.token), JSON.stringify(gets));
    }),
});

Deno.test({
  name: "aws-vpc: no network interface with our address is a clear error before any lease",
  ...opts,
  fn: () =>
    restoringEnv(async () => {
      const s = new Ec2StandIn();
      try {
        s.addVpc("vpc-1", VPC_CIDR);
        const other = s.addInstance({ ip: "10.0.0.99", vpcId: "vpc-1" });
        isolate(s.endpoint, other.imds);
        await assertRejects(
          () => makeBackend({ Type: "aws-vpc" }).prepare(),
          Error,
          `no network interface of instance ${other.instanceId} has eth0's address ${MY_IP} (it has ${other.eniId}: 10.0.0.99)`,
        );
      } finally {
        await s.close();
      }
    }),
});

Deno.test({
  name: "aws-vpc: no metadata service: one clear line naming it, within seconds",
  ...opts,
  fn: () =>
    restoringEnv(async () => {
      // Nothing listening (refused at once), and a listener that never answers (timeouts).
      const dead = deadEndpoints();
      try {
        for (const port of [dead.refused, dead.silent]) {
          const endpoint = `http://127.0.0.1:${port}`;
          isolate("http://127.0.0.1:1", endpoint);
          const t0 = Date.now();
          const e = await assertRejects(() => makeBackend({ Type: "aws-vpc" }).prepare());
          const took = Date.now() - t0;
          assertStringIncludes(
            e.message,
            `cannot read the region from the EC2 instance metadata service at ${endpoint}`,
          );
          assertStringIncludes(e.message, "not running on EC2, or the metadata service is off?");
          assert(!e.message.includes("\n"), "one line");
          assert(took < 10_000, `within seconds, took ${took} ms`);
          console.log(`metadata service on port ${port} absent: error after ${took} ms`);
        }
      } finally {
        dead.close();
      }
    }),
});
