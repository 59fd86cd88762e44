/**
 * The aws-vpc and gce backends end to end (root only): our flanneld daemons in the namespace
 * cluster, with a real etcd, programming one shared route table in a cloud stand-in that
 * runs in the etcd namespace (tests/helpers/standin_main.ts), reached through the SDKs'
 * standard settings (`AWS_ENDPOINT_URL_EC2`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`;
 * `GCE_METADATA_HOST`, `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`). Covered: each host's route,
 * the lease value, SourceDestCheck, blackholes, `/readyz` with the own route, a deleted route
 * put back, a removed lease's route deleted by the surviving host, and a host without a
 * metadata service stopping with one clear line and no lease. One aws-vpc host runs with
 * exactly the compiled binary's permissions and no HOME (as under systemd).
 */

import { ROOT_TEST } from "./helpers/netns.ts";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { Cluster, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { healthGet } from "./helpers/health_http.ts";
import { RemoteStandIn } from "./helpers/standin_main.ts";
import { until } from "./helpers/wait.ts";
import { DAEMON_PERMISSIONS, DAEMON_RUNTIME_FLAGS } from "../dist/compile.ts";

const opts = ROOT_TEST;

/** Where the stand-in listens (inside the etcd namespace; fixed ports, private namespace). */
const CLOUD = UNDERLAY.etcd;
const API_PORT = 8773;
/** The per-instance metadata server of host `i`. */
const metadataPort = (i: number) => 8780 + i;
/** An address in the test network where nothing listens (the switch, refusing). */
const NO_METADATA = `${UNDERLAY.gateway}:8799`;
const HEALTH = 9180;
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Nothing from this machine's own cloud setup reaches the daemons. */
const CLEAN_ENV = [
  "-u",
  "AWS_ACCESS_KEY_ID",
  "-u",
  "AWS_SECRET_ACCESS_KEY",
  "-u",
  "AWS_SESSION_TOKEN",
  "-u",
  "AWS_PROFILE",
  "-u",
  "AWS_REGION",
  "-u",
  "AWS_MAX_ATTEMPTS",
];

const hostIndex = (name: string) => Number(name.slice(1));

/** The log lines of a host that contain `text`. */
const logLines = (c: Cluster, h: Host, text: string) =>
  c.daemonLog(h).split("\n").filter((l) => l.includes(text));

/** The lease values in etcd by public IP. */
async function leaseValues(c: Cluster): Promise<Map<string, { key: string; value: unknown }>> {
  const out = new Map();
  for (const l of await c.leases()) out.set((l.value as { PublicIP: string }).PublicIP, l);
  return out;
}

/** What differs between the clouds in {@link sharedTable}. */
interface CloudCase {
  standIn: RemoteStandIn;
  /** The stand-in's route lines. */
  lines(): Promise<string[]>;
  /** The line of host `i`'s route for `subnet` (`10.5.3.0/24`). */
  want(i: number, subnet: string): string;
  /** Deletes host 0's route as someone else would. */
  dropRoute(line: string): Promise<void>;
  /** Makes the API refuse the creation of routes until faults are cleared. */
  refuseCreate(): Promise<void>;
  /** What host 0's `/readyz` says while its route cannot be created. */
  notReady(line: string): string;
  /** The start of the fatal line of a host without a metadata service. */
  noMetadata: string;
}

/**
 * The scenario both clouds run, on a cluster of two hosts whose daemons are not started yet:
 * both routes in the shared table, the lease values, `/readyz`; host 0's route deleted and put
 * back; `/readyz` 503 with the reason while it cannot be put back; host 1 stopped and its lease
 * removed: host 0 deletes its route; a third host without a metadata service.
 */
async function sharedTable(c: Cluster, k: CloudCase): Promise<void> {
  const t0 = Date.now();
  const envs = await Promise.all(c.hosts.map((h) => c.startDaemon(h)));
  console.log(`2 daemons wrote subnet.env after ${Date.now() - t0} ms`);
  const want = envs.map((e, i) => k.want(i, e.FLANNEL_SUBNET.replace(/\.1\//, ".0/")));
  await until("both routes in the shared table", async () => {
    const l = await k.lines();
    return want.every((w) => l.includes(w));
  }, 20_000);
  assertEquals(envs.map((e) => e.FLANNEL_MTU), ["1500", "1500"], "the interface's MTU");
  const leases = await leaseValues(c);
  for (const h of c.hosts) {
    assertEquals(leases.get(h.ip)?.value, { PublicIP: h.ip, PublicIPv6: null });
  }
  const ready = (h: Host, yes: boolean) =>
    until(`${h.name} ${yes ? "" : "not "}ready`, async () => {
      const r = await healthGet(h, HEALTH, "/readyz");
      return (r.status === 200) === yes ? r.body || "ok" : "";
    }, 15_000);
  for (const h of c.hosts) await ready(h, true);

  // A deleted route is put back by its host within about a reconcile interval.
  const [h0, h1] = c.hosts;
  await k.dropRoute(want[0]);
  const t1 = Date.now();
  await until("h0's route back", async () => (await k.lines()).includes(want[0]), 15_000);
  console.log(`deleted route put back after ${Date.now() - t1} ms`);
  assertEquals(logLines(c, h0, "own route was deleted; put it back").length, 1);

  // While its route cannot be put back, h0 is not ready, and says why.
  await k.refuseCreate();
  await k.dropRoute(want[0]);
  assertStringIncludes(await ready(h0, false), k.notReady(want[0]));
  await k.standIn.call("clearFaults");
  await ready(h0, true);

  // h1 goes away and its lease is removed: h0 deletes h1's route, after the grace period.
  await c.stopDaemon(h1);
  await c.etcd.ctl("del", leases.get(h1.ip)!.key);
  await until("h1's route deleted by h0", async () => !(await k.lines()).includes(want[1]), 15_000);
  assertEquals(logLines(c, h0, "deleted route of a removed lease").length, 1);
  assert((await k.lines()).includes(want[0]));

  await checkNoMetadata(c, k.noMetadata);
}

/** Checks that a host without a metadata service stops at once, clearly, without a lease. */
async function checkNoMetadata(c: Cluster, text: string): Promise<void> {
  const h = await c.addHost({ startDaemon: false });
  const t0 = Date.now();
  h.daemon.start();
  const status = await h.daemon.status!;
  const took = Date.now() - t0;
  const log = c.daemonLog(h);
  assertEquals(status.code, 1, log);
  const fatal = log.split("\n").filter((l) => l.includes("fatal:"));
  assertEquals(fatal.length, 1, log);
  assertStringIncludes(fatal[0], text);
  assert(!/^\s+at |Stack backtrace/m.test(log), `no stack trace:\n${log}`);
  assert(took < 20_000, `stopped within seconds (${took} ms)`);
  assert(!(await leaseValues(c)).has(h.ip), "no subnet taken");
  console.log(
    `no metadata service: exit 1 after ${took} ms: ${fatal[0].replace(/^.*fatal: /, "")}`,
  );
}

Deno.test({
  name: "aws-vpc cluster: two daemons share one route table; repair, stale cleanup, readiness",
  ...opts,
  fn: async () => {
    const command = (name: string) => {
      const i = hostIndex(name);
      const endpoints = [
        `AWS_ENDPOINT_URL_EC2=http://${CLOUD}:${API_PORT}`,
        `AWS_EC2_METADATA_SERVICE_ENDPOINT=http://${
          i === 2 ? NO_METADATA : `${CLOUD}:${metadataPort(i)}`
        }`,
      ];
      // h1: the compiled binary's permissions, no HOME, no AWS config files (as under systemd).
      if (i === 1) {
        return [
          "env",
          ...CLEAN_ENV,
          "-u",
          "HOME",
          ...endpoints,
          Deno.execPath(),
          "run",
          ...DAEMON_RUNTIME_FLAGS,
          ...DAEMON_PERMISSIONS,
          MAIN,
        ];
      }
      return [
        "env",
        ...CLEAN_ENV,
        ...endpoints,
        "AWS_CONFIG_FILE=/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
        ...DEFAULT_DAEMON_COMMAND,
      ];
    };
    await using c = await Cluster.create({
      hosts: 2,
      backend: "aws-vpc",
      startDaemons: false,
      daemonCommand: command,
      daemonArgs: ["--reconcile-interval=1", "--healthz-ip=127.0.0.1", `--healthz-port=${HEALTH}`],
    });
    const s = await RemoteStandIn.start(c.etcdNs, "ec2", CLOUD, API_PORT);
    try {
      const table = (await s.call<{ id: string }>("addVpc", "vpc-1", "192.168.100.0/24")).id;
      type Ids = { instanceId: string; eniId: string };
      const inst: Ids[] = [];
      for (const h of c.hosts) {
        inst.push(
          await s.call<Ids>("addInstance", {
            ip: h.ip,
            vpcId: "vpc-1",
            imdsPort: metadataPort(h.index),
          }),
        );
      }
      // A terminated node's route, now a blackhole.
      const gone = await s.call<Ids>("addInstance", { ip: "192.168.100.99", vpcId: "vpc-1" });
      const route = {
        dest: "10.5.250.0/24",
        eni: gone.eniId,
        state: "active",
        origin: "CreateRoute",
      };
      await s.call("putRoute", table, route);
      await s.call("terminate", gone.instanceId);

      const lines = () => s.call<string[]>("routeLines", table);
      await sharedTable(c, {
        standIn: s,
        lines,
        want: (i, subnet) => `${subnet} → ${inst[i].eniId}`,
        dropRoute: (line) => s.call("dropRoute", table, line.split(" ")[0]),
        refuseCreate: () =>
          s.call(
            "fail",
            1000,
            "UnauthorizedOperation",
            403,
            "You are not authorized.",
            "CreateRoute",
          ),
        notReady: (line) =>
          `own route ${line} not in place in ${table}: EC2 CreateRoute failed: UnauthorizedOperation`,
        noMetadata:
          `cannot read the region from the EC2 instance metadata service at http://${NO_METADATA}`,
      });
      assert(!(await lines()).some((l) => l.startsWith("10.5.250.0/24")), "blackhole cleaned");
      for (const i of inst) {
        const eni = await s.call<{ sourceDestCheck: boolean }>("eni", i.eniId);
        assertEquals(eni.sourceDestCheck, false);
      }
      // h1 ran with the binary's permissions and no HOME: it did its part above.
      const log1 = c.daemonLog(c.hosts[1]);
      assert(!/PermissionDenied|NotCapable|Requires .* access/.test(log1), log1);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "gce cluster: two daemons share one project's routes; repair, stale cleanup, readiness",
  ...opts,
  fn: async () => {
    const command = (name: string) => {
      const i = hostIndex(name);
      return [
        "env",
        `GCE_METADATA_HOST=${i === 2 ? NO_METADATA : `${CLOUD}:${metadataPort(i)}`}`,
        `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=http://${CLOUD}:${API_PORT}/compute/v1/`,
        ...DEFAULT_DAEMON_COMMAND,
      ];
    };
    await using c = await Cluster.create({
      hosts: 2,
      backend: "gce",
      startDaemons: false,
      daemonCommand: command,
      daemonArgs: ["--reconcile-interval=1", "--healthz-ip=127.0.0.1", `--healthz-port=${HEALTH}`],
    });
    const s = await RemoteStandIn.start(c.etcdNs, "gce", CLOUD, API_PORT);
    try {
      for (const h of c.hosts) {
        const o = { name: `node-${h.name}`, ip: h.ip, metadataPort: metadataPort(h.index) };
        await s.call("addInstance", o);
      }
      await sharedTable(c, {
        standIn: s,
        lines: () => s.call<string[]>("routeLines"),
        want: (i, subnet) => `flannel-${subnet.replace(/[./]/g, "-")} ${subnet} → node-h${i}`,
        dropRoute: (line) => s.call("dropRoute", line.split(" ")[0]),
        refuseCreate: () =>
          s.call(
            "fail",
            1000,
            403,
            "forbidden",
            "Required 'compute.routes.create' permission",
            "POST .*/global/routes$",
          ),
        notReady: () =>
          "not in place in network default: compute API routes.insert failed: HTTP 403 forbidden",
        noMetadata:
          `cannot read project/project-id from the GCE metadata server at http://${NO_METADATA}/computeMetadata/v1/`,
      });
    } finally {
      await s.close();
    }
  },
});
