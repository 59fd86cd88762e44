// The pure parts of the aws-vpc and gce backends: options (and clear errors naming the
// field), which network interface is ours, how API routes and errors read, route names,
// endpoints from the environment, retry and token-refresh rules.
import { assertEquals, assertStringIncludes, assertThrows } from "../helpers/assert.ts";
import { ConfigError, parseNetworkConfig } from "../../lib/values/config.ts";
import { chooseBackend } from "../../lib/daemon/backends.ts";
import {
  cloudRoute as ec2Route,
  ec2ErrorLine,
  findInterface,
  parseAwsVpcOptions,
  routeLimitLine,
} from "../../lib/backend/awsvpc/model.ts";
import {
  baseName,
  cloudRoute as gceRoute,
  computeBase,
  computeErrorLine,
  metadataBase,
  operationError,
  refreshAt,
  resourcePath,
  retryable,
  routeName,
} from "../../lib/backend/gce/model.ts";
import { parseCIDR4 } from "../../lib/core/ip.ts";
import { LAZY_MODULES } from "../../dist/compile.ts";

const cfg = (backend: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  parseNetworkConfig(JSON.stringify({ Network: "10.5.0.0/16", Backend: backend, ...extra }));

Deno.test("aws-vpc options: RouteTableID absent, a string, an array; anything else names the field", () => {
  const parse = (b: Record<string, unknown>) => parseAwsVpcOptions(b, cfg(b));
  assertEquals(parse({ Type: "aws-vpc" }), { routeTableIds: null });
  assertEquals(parse({ Type: "aws-vpc", RouteTableID: "rtb-1" }), { routeTableIds: ["rtb-1"] });
  assertEquals(parse({ Type: "aws-vpc", routetableid: ["rtb-1", "rtb-2", "rtb-1"] }), {
    routeTableIds: ["rtb-1", "rtb-2"],
  });
  for (const bad of [42, ["rtb-1", 7], [], "", { id: "rtb-1" }, true]) {
    const e = assertThrows(
      () => parse({ Type: "aws-vpc", RouteTableID: bad }),
      ConfigError,
      "Backend.RouteTableID must be a route table id or an array of them",
    );
    assertEquals(e.field, "Backend.RouteTableID");
  }
  // Through the registry, as the daemon reads the config.
  const chosen = chooseBackend(cfg({ Type: "aws-vpc", RouteTableID: ["rtb-9"] }));
  assertEquals(chosen.options, { routeTableIds: ["rtb-9"] });
  assertThrows(
    () => chooseBackend(cfg({ Type: "AWS-VPC" }, { EnableIPv6: true, IPv6Network: "fd00::/48" })),
    ConfigError,
    "the aws-vpc backend routes IPv4 only",
  );
  assertEquals(chooseBackend(cfg({ Type: "gce" })).options, {});
});

Deno.test("aws-vpc: the network interface with our address, or an error listing what there is", () => {
  const enis = [
    { NetworkInterfaceId: "eni-a", PrivateIpAddresses: [{ PrivateIpAddress: "10.0.0.5" }] },
    {
      NetworkInterfaceId: "eni-b",
      PrivateIpAddresses: [{ PrivateIpAddress: "10.0.1.5" }, { PrivateIpAddress: "10.0.1.6" }],
    },
  ];
  assertEquals(findInterface("i-1", enis, "10.0.1.6", "eth1").NetworkInterfaceId, "eni-b");
  const e = assertThrows(() => findInterface("i-1", enis, "10.0.9.9", "eth0"));
  assertEquals(
    e.message,
    "no network interface of instance i-1 has eth0's address 10.0.9.9 (it has eni-a: 10.0.0.5; eni-b: 10.0.1.5, 10.0.1.6); choose the interface with --iface",
  );
});

Deno.test("aws-vpc: EC2 routes and errors as the plan and the log see them", () => {
  assertEquals(
    ec2Route({
      DestinationCidrBlock: "10.5.1.0/24",
      NetworkInterfaceId: "eni-a",
      InstanceId: "i-1",
      State: "active",
    }),
    { dest: "10.5.1.0/24", target: "eni-a", blackhole: false },
  );
  assertEquals(
    ec2Route({ DestinationCidrBlock: "10.5.2.0/24", InstanceId: "i-2", State: "blackhole" }),
    { dest: "10.5.2.0/24", target: "i-2", blackhole: true },
  );
  assertEquals(ec2Route({ GatewayId: "igw-1", State: "active" }).dest, ""); // IPv6/prefix list
  const throttled = Object.assign(new Error("Request limit exceeded."), {
    name: "RequestLimitExceeded",
    $metadata: { httpStatusCode: 503, attempts: 5 },
  });
  assertEquals(
    ec2ErrorLine("DescribeRouteTables", throttled),
    "EC2 DescribeRouteTables failed: RequestLimitExceeded: Request limit exceeded. (HTTP 503, 5 attempts)",
  );
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
    code: "ECONNREFUSED",
    $metadata: { attempts: 1 },
  });
  assertEquals(
    ec2ErrorLine("CreateRoute", refused),
    "EC2 CreateRoute failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1 (1 attempt)",
  );
  const noCreds = Object.assign(new Error("Could not load credentials from any providers"), {
    name: "CredentialsProviderError",
  });
  assertStringIncludes(ec2ErrorLine("DescribeInstances", noCreds), "no AWS credentials");
  assertStringIncludes(
    routeLimitLine("rtb-1", 50, "EC2 CreateRoute failed: RouteLimitExceeded"),
    'route table rtb-1 is full (50 routes): EC2\'s quota "Routes per route table" (50 by default)',
  );
});

Deno.test("gce: route names, resource paths, routes with a missing next hop", () => {
  assertEquals(routeName(parseCIDR4("10.5.52.0/24")!), "flannel-10-5-52-0-24");
  assertEquals(
    resourcePath("https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/i"),
    "projects/p/zones/z/instances/i",
  );
  assertEquals(baseName("projects/123/zones/europe-west1-b\n"), "europe-west1-b");
  assertEquals(
    gceRoute({
      name: "flannel-10-5-1-0-24",
      destRange: "10.5.1.0/24",
      nextHopInstance: "https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/i",
      warnings: [{ code: "NEXT_HOP_INSTANCE_NOT_FOUND" }],
    }),
    {
      dest: "10.5.1.0/24",
      target: "projects/p/zones/z/instances/i",
      blackhole: true,
      name: "flannel-10-5-1-0-24",
    },
  );
});

Deno.test("gce: endpoints from the environment", () => {
  const env = (o: Record<string, string>) => (k: string) => o[k];
  assertEquals(metadataBase(env({})), "http://169.254.169.254/computeMetadata/v1/");
  assertEquals(
    metadataBase(env({ GCE_METADATA_HOST: "127.0.0.1:8080" })),
    "http://127.0.0.1:8080/computeMetadata/v1/",
  );
  assertEquals(computeBase(env({})), "https://compute.googleapis.com/compute/v1/");
  assertEquals(
    computeBase(env({ CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE: "http://127.0.0.1:9/compute/v1" })),
    "http://127.0.0.1:9/compute/v1/",
  );
});

Deno.test("gce: what is retried, error lines, operation errors, token refresh time", () => {
  assertEquals(
    [
      retryable(0, ""),
      retryable(429, ""),
      retryable(503, ""),
      retryable(403, "rateLimitExceeded"),
      retryable(403, "forbidden"),
      retryable(404, "notFound"),
      retryable(400, "invalid"),
    ],
    [true, true, true, true, false, false, false],
  );
  const body = {
    error: {
      code: 403,
      message: "Required 'compute.routes.create' permission for 'projects/p/global/routes/x'",
      errors: [{ reason: "forbidden" }],
    },
  };
  assertEquals(
    computeErrorLine("routes.insert", 403, body, 1),
    "compute API routes.insert failed: HTTP 403 forbidden: Required 'compute.routes.create' permission for 'projects/p/global/routes/x' (1 attempt)",
  );
  assertEquals(
    computeErrorLine("routes.list", 0, null, 5, "Connection refused (os error 111)"),
    "compute API routes.list failed: no answer (Connection refused (os error 111)) (5 attempts)",
  );
  assertEquals(operationError({ status: "DONE" }), "");
  assertStringIncludes(
    operationError({
      status: "DONE",
      error: { errors: [{ code: "QUOTA_EXCEEDED", message: "Quota 'ROUTES' exceeded." }] },
    }),
    "QUOTA_EXCEEDED: Quota 'ROUTES' exceeded. (GCE's ROUTES quota, 250 routes per project",
  );
  assertEquals(refreshAt(0, 3600), 3_300_000, "an hour's token: 5 minutes early");
  assertEquals(refreshAt(0, 4), 2000, "a short-lived token: at half its life");
});

Deno.test("aws-vpc: the SDK module imported by URL is one that deno compile includes by name", () => {
  const root = new URL("../../", import.meta.url);
  const backend = Deno.readTextFileSync(new URL("lib/backend/awsvpc/backend.ts", root));
  const m = /new URL\("\.\/([\w.]+)", import\.meta\.url\)/.exec(backend);
  assertEquals(LAZY_MODULES.includes(`lib/backend/awsvpc/${m?.[1]}`), true, String(m?.[1]));
  for (const f of LAZY_MODULES) assertEquals(Deno.statSync(new URL(f, root)).isFile, true, f);
});
