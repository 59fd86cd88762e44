// The cloud route backends' logic without a cloud: the plan (which routes to create, replace
// or delete given a table and the leases), the removed-lease tracker, and the keeper's
// check loop against an in-memory route table with injected API failures.
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { formatNet4, type IP4Net } from "../../lib/core/ip.ts";
import { logger, setSink } from "../../lib/core/log.ts";
import type { Lease, LeaseEvent } from "../../lib/values/lease.ts";
import {
  type CloudRoute,
  LeaseTracker,
  type PlanInput,
  planRoutes,
} from "../../lib/backend/cloud/routes.ts";
import { type RouteApi, RouteKeeper } from "../../lib/backend/cloud/keeper.ts";
import { net4 as net } from "../helpers/addr.ts";

const NETWORK = net("10.5.0.0/16");
const OWN = net("10.5.1.0/24");
const ME = "eni-me";
const route = (dest: string, target: string | null, blackhole = false): CloudRoute => ({
  dest,
  target,
  blackhole,
});
const base: PlanInput = {
  routes: [],
  network: NETWORK,
  own: OWN,
  ownTarget: ME,
  leased: new Set(),
  stale: new Set(),
};
const kinds = (i: Partial<PlanInput>) =>
  planRoutes({ ...base, ...i }).map((a) =>
    a.kind === "delete"
      ? `delete ${a.route.dest} (${a.reason})`
      : a.kind === "replace"
      ? `replace ${a.route.dest}`
      : "create"
  );

Deno.test("plan: own route created when missing, left when in place, replaced when wrong", () => {
  const local = route("192.168.0.0/16", "local");
  assertEquals(kinds({ routes: [local] }), ["create"]);
  assertEquals(kinds({ routes: [local, route("10.5.1.0/24", ME)] }), []);
  assertEquals(kinds({ routes: [route("10.5.1.0/24", "eni-other")] }), ["replace 10.5.1.0/24"]);
  assertEquals(kinds({ routes: [route("10.5.1.0/24", ME, true)] }), ["replace 10.5.1.0/24"]);
});

Deno.test("plan: blackholes inside the Network are deleted, others never", () => {
  assertEquals(
    kinds({
      routes: [
        route("10.5.1.0/24", ME),
        route("10.5.7.0/24", "eni-gone", true),
        route("10.6.7.0/24", "eni-gone", true), // outside the Network
        route("10.0.0.0/8", "eni-gone", true), // wider than the Network
      ],
    }),
    ["delete 10.5.7.0/24 (blackhole)"],
  );
  // A blackhole is deleted even when its subnet is leased: it carries nothing, and the
  // live holder puts its own route back.
  assertEquals(
    kinds({
      routes: [route("10.5.1.0/24", ME), route("10.5.7.0/24", "eni-x", true)],
      leased: new Set(["10.5.7.0/24"]),
    }),
    ["delete 10.5.7.0/24 (blackhole)"],
  );
});

Deno.test("plan: a removed lease's route is deleted only when due and not leased again", () => {
  const routes = [route("10.5.1.0/24", ME), route("10.5.9.0/24", "eni-b")];
  assertEquals(kinds({ routes }), [], "a live host's route is never touched");
  assertEquals(kinds({ routes, stale: new Set(["10.5.9.0/24"]) }), [
    "delete 10.5.9.0/24 (stale)",
  ]);
  assertEquals(
    kinds({ routes, stale: new Set(["10.5.9.0/24"]), leased: new Set(["10.5.9.0/24"]) }),
    [],
    "leased again: kept",
  );
});

Deno.test("plan: routes to our own next hop for another subnet are deleted (a subnet we held)", () => {
  const routes = [route("10.5.1.0/24", ME), route("10.5.3.0/24", ME), route("172.16.0.0/24", ME)];
  assertEquals(kinds({ routes }), ["delete 10.5.3.0/24 (previous)"]);
  // Unless someone holds that subnet now: its holder replaces the route.
  assertEquals(kinds({ routes, leased: new Set(["10.5.3.0/24"]) }), []);
});

Deno.test("plan: unparseable and non-canonical destinations are left alone; deletes come first", () => {
  const routes = [
    route("", "pl-123"),
    route("10.5.3.1/24", "eni-x", true),
    route("2001:db8::/64", ME),
    route("10.5.4.0/24", "eni-x", true),
  ];
  assertEquals(kinds({ routes }), ["delete 10.5.4.0/24 (blackhole)", "create"]);
});

const ev = (type: "added" | "removed", subnet: string): LeaseEvent => ({
  type,
  lease: { subnet: net(subnet), attrs: { publicIP: 1, publicIPv6: null } } as Lease,
});

Deno.test("lease tracker: stale after the grace period, cancelled by a new lease, forgotten", () => {
  const t = new LeaseTracker();
  t.apply([ev("added", "10.5.2.0/24"), ev("added", "10.5.3.0/24")], 0);
  assertEquals([...t.leased].sort(), ["10.5.2.0/24", "10.5.3.0/24"]);
  t.apply([ev("removed", "10.5.2.0/24"), ev("removed", "10.5.3.0/24")], 1000);
  t.apply([ev("removed", "10.5.2.0/24")], 5000); // a repeat keeps the first time
  assertEquals([...t.stale(5999, 5000)], []);
  assertEquals([...t.stale(6000, 5000)].sort(), ["10.5.2.0/24", "10.5.3.0/24"]);
  t.apply([ev("added", "10.5.3.0/24")], 6500);
  assertEquals([...t.stale(7000, 5000)], ["10.5.2.0/24"]);
  assertEquals(t.leased.has("10.5.3.0/24"), true);
  t.forget("10.5.2.0/24");
  assertEquals([t.pending, t.stale(9e9, 0).size], [0, 0]);
});

/** An in-memory route table with EC2-like semantics and failures on demand. */
class FakeApi implements RouteApi {
  readonly ownTarget = ME;
  readonly tables = ["rtb-1"];
  routes: CloudRoute[] = [route("172.31.0.0/16", "local")];
  failing: Partial<Record<"read" | "create" | "replace" | "remove", string>> = {};
  calls: string[] = [];

  #maybeFail(op: keyof FakeApi["failing"]): void {
    this.calls.push(op);
    const msg = this.failing[op];
    if (msg) throw new Error(msg);
  }
  read() {
    this.#maybeFail("read");
    return Promise.resolve(new Map([["rtb-1", this.routes.map((r) => ({ ...r }))]]));
  }
  create(_t: string, s: IP4Net) {
    this.#maybeFail("create");
    this.routes.push(route(formatNet4(s), ME));
    return Promise.resolve();
  }
  replace(_t: string, s: IP4Net) {
    this.#maybeFail("replace");
    this.routes = this.routes.filter((r) => r.dest !== formatNet4(s));
    this.routes.push(route(formatNet4(s), ME));
    return Promise.resolve();
  }
  remove(_t: string, r: CloudRoute) {
    this.#maybeFail("remove");
    this.routes = this.routes.filter((x) => x.dest !== r.dest);
    return Promise.resolve();
  }
  lines() {
    return this.routes.map((r) => `${r.dest} ${r.target}${r.blackhole ? " blackhole" : ""}`)
      .sort();
  }
}

/** A keeper on a fake table whose periodic loop never fires on its own (tests call check()). */
function keeper(api: FakeApi, graceMs = 0) {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  const k = new RouteKeeper(api, {
    network: NETWORK,
    intervalMs: 3_600_000,
    graceMs,
    log: logger("test"),
  });
  return { k, lines, restore: () => setSink(prev) };
}

Deno.test("keeper: creates our route, puts it back when deleted or changed, counts repairs", async () => {
  const api = new FakeApi();
  const { k, lines, restore } = keeper(api);
  try {
    assertEquals(k.problems(), []);
    await k.start(OWN);
    assertEquals(api.lines(), ["10.5.1.0/24 eni-me", "172.31.0.0/16 local"]);
    assertEquals(k.problems(), []);
    await k.check();
    assertEquals(api.calls, ["read", "create", "read"], "in place: one read, no write");

    api.routes = api.routes.filter((r) => r.dest !== "10.5.1.0/24");
    await k.check();
    assertEquals(api.lines(), ["10.5.1.0/24 eni-me", "172.31.0.0/16 local"]);
    api.routes.find((r) => r.dest === "10.5.1.0/24")!.target = "eni-intruder";
    await k.check();
    assertEquals(api.lines(), ["10.5.1.0/24 eni-me", "172.31.0.0/16 local"]);
    const s = k.stats();
    assertEquals(
      [s.routes_created, s.routes_replaced, s.repairs_own_route, s.route_checks],
      [2, 1, 2, 4],
    );
    assert(lines.some((l) => l.includes("own route was deleted; put it back")), lines.join("\n"));
    assert(
      lines.some((l) =>
        l.includes("own route was changed; put it back") && l.includes("was=eni-intruder")
      ),
    );
  } finally {
    await k.stop();
    restore();
  }
});

Deno.test("keeper: a removed lease's route goes after the grace period, a re-leased one stays", async () => {
  const api = new FakeApi();
  api.routes.push(route("10.5.2.0/24", "eni-b"), route("10.5.3.0/24", "eni-c"));
  const { k, restore } = keeper(api, 200);
  try {
    await k.start(OWN);
    k.handle([ev("added", "10.5.2.0/24"), ev("added", "10.5.3.0/24")]);
    k.handle([ev("removed", "10.5.2.0/24"), ev("removed", "10.5.3.0/24")]);
    await k.check();
    assertEquals(api.lines().length, 4, "within the grace period nothing is deleted");
    k.handle([ev("added", "10.5.3.0/24")]); // host c came back with the same subnet
    await new Promise((r) => setTimeout(r, 250));
    await k.check();
    assertEquals(api.lines(), ["10.5.1.0/24 eni-me", "10.5.3.0/24 eni-c", "172.31.0.0/16 local"]);
    assertEquals(k.stats().routes_deleted_stale, 1);
    // Deleted once; a later route for that subnet (a new host) is not deleted again.
    api.routes.push(route("10.5.2.0/24", "eni-d"));
    await k.check();
    assert(api.lines().includes("10.5.2.0/24 eni-d"));
  } finally {
    await k.stop();
    restore();
  }
});

Deno.test("keeper: failures are one warning, readiness says why, recovery is one line", async () => {
  const api = new FakeApi();
  api.failing.read = "EC2 DescribeRouteTables failed: RequestLimitExceeded (HTTP 503, 5 attempts)";
  const { k, lines, restore } = keeper(api);
  try {
    await k.start(OWN);
    assertEquals(k.problems(), [
      "own route 10.5.1.0/24 → eni-me not checked yet in rtb-1: EC2 DescribeRouteTables failed: RequestLimitExceeded (HTTP 503, 5 attempts)",
    ]);
    delete api.failing.read;
    api.failing.create = "route table rtb-1 is full (50 routes): quota";
    await k.check();
    await k.check();
    assertEquals(k.problems(), [
      "own route 10.5.1.0/24 → eni-me not in place in rtb-1: route table rtb-1 is full (50 routes): quota",
    ]);
    const warnings = lines.filter((l) => l.startsWith("W"));
    assertEquals(warnings.length, 1, warnings.join("\n"));
    assertStringIncludes(warnings[0], "cannot check the route tables: EC2 DescribeRouteTables");
    delete api.failing.create;
    await k.check();
    assertEquals(k.problems(), []);
    assert(lines.at(-1)!.includes("route tables in order again"), lines.at(-1));
    assertEquals(k.stats().api_failures, 3);
  } finally {
    await k.stop();
    restore();
  }
});

Deno.test("keeper: a failed stale deletion is retried; own route unaffected", async () => {
  const api = new FakeApi();
  api.routes.push(route("10.5.2.0/24", "eni-b"));
  const { k, restore } = keeper(api);
  try {
    await k.start(OWN);
    k.handle([ev("added", "10.5.2.0/24"), ev("removed", "10.5.2.0/24")]);
    api.failing.remove = "EC2 DeleteRoute failed: UnauthorizedOperation";
    await k.check();
    assertEquals(k.problems(), [], "our own route is in place: ready");
    delete api.failing.remove;
    await k.check();
    assertEquals(api.lines(), ["10.5.1.0/24 eni-me", "172.31.0.0/16 local"]);
  } finally {
    await k.stop();
    restore();
  }
});

Deno.test("keeper: a new subnet after a restart of the backend removes the old own route", async () => {
  const api = new FakeApi();
  const { k, restore } = keeper(api);
  try {
    await k.start(OWN);
    await k.stop();
    await k.start(net("10.5.8.0/24"));
    assertEquals(api.lines(), ["10.5.8.0/24 eni-me", "172.31.0.0/16 local"]);
    assertEquals(k.stats().routes_deleted_previous, 1);
  } finally {
    await k.stop();
    restore();
  }
});

Deno.test("keeper: the periodic check runs every interval until stopped", async () => {
  const api = new FakeApi();
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  const k = new RouteKeeper(api, {
    network: NETWORK,
    intervalMs: 30,
    graceMs: 0,
    log: logger("t"),
  });
  try {
    await k.start(OWN);
    api.routes = api.routes.filter((r) => r.dest !== "10.5.1.0/24");
    const until = Date.now() + 2000;
    while (!api.lines().includes("10.5.1.0/24 eni-me") && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert(api.lines().includes("10.5.1.0/24 eni-me"), "put back by the loop");
  } finally {
    await k.stop();
    setSink(prev);
  }
  const checks = k.stats().route_checks;
  await new Promise((r) => setTimeout(r, 100));
  assertEquals(k.stats().route_checks, checks, "no check after stop()");
});

Deno.test("keeper: stop() does not wait for a check stuck on a slow API; a new start does", async () => {
  const api = new FakeApi();
  const { k, restore } = keeper(api);
  let release = () => {};
  try {
    await k.start(OWN);
    const read = api.read.bind(api);
    api.read = () => new Promise((r) => release = () => r(read()));
    const stuck = k.check();
    const t0 = Date.now();
    await k.stop();
    assert(Date.now() - t0 < 100, "stop() returned at once");
    const restarted = k.start(net("10.5.8.0/24"));
    api.read = read;
    release();
    await stuck;
    await restarted;
    assertEquals(api.lines(), ["10.5.8.0/24 eni-me", "172.31.0.0/16 local"]);
  } finally {
    await k.stop();
    restore();
  }
});
