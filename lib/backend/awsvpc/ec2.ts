/**
 * The aws-vpc backend's calls to AWS, through the AWS SDK for JavaScript v3: the instance
 * metadata service (IMDSv2 with a session token, IMDSv1 when tokens are refused) for region
 * and instance id, and the EC2 API (SigV4 signing, credentials from the instance profile,
 * retries with backoff on throttling and 5xx) for everything else. The SDK's own settings
 * apply: `AWS_ENDPOINT_URL_EC2`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_MAX_ATTEMPTS`,
 * `AWS_RETRY_MODE`, credentials from the environment or `~/.aws`.
 *
 * This module is imported only when the backend is aws-vpc (a dynamic import in
 * backend.ts): the SDK costs tens of MiB of memory that the other backends never pay.
 * @module
 */

import {
  CreateRouteCommand,
  DeleteRouteCommand,
  DescribeInstancesCommand,
  DescribeRouteTablesCommand,
  EC2Client,
  ModifyNetworkInterfaceAttributeCommand,
  ReplaceRouteCommand,
} from "@aws-sdk/client-ec2";
import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { formatIP4, formatNet4, type IP4Net } from "../../core/ip.ts";
import type { Logger } from "../../core/log.ts";
import type { ExternalInterface } from "../../values/iface.ts";
import type { RouteApi } from "../cloud/keeper.ts";
import type { CloudRoute } from "../cloud/routes.ts";
import {
  type AwsVpcOptions,
  cloudRoute,
  ec2ErrorCode,
  ec2ErrorLine,
  findInterface,
  routeLimitLine,
} from "./model.ts";

/** Where the instance metadata service is unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says. */
const IMDS_DEFAULT = "http://169.254.169.254";
/** Per request to the metadata service; it answers in milliseconds where it exists. */
const IMDS_TIMEOUT_MS = 1000;
/** Attempts of EC2 calls unless `AWS_MAX_ATTEMPTS` says (upstream: 5 retries). */
const EC2_MAX_ATTEMPTS = 5;

/** Region and instance id from the instance metadata service; one clear Error when absent. */
export async function instanceIdentity(): Promise<{ region: string; instanceId: string }> {
  const endpoint = Deno.env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") || IMDS_DEFAULT;
  // Token PUT, then GET, each bounded; one retry. A host without the service fails in seconds.
  const imds = new MetadataService({
    httpOptions: { timeout: IMDS_TIMEOUT_MS },
    retries: 1,
    backoff: 0.2,
  });
  const get = async (path: string, what: string) => {
    try {
      const v = (await imds.request(path, {})).trim();
      if (!v) throw new Error("empty answer");
      return v;
    } catch (e) {
      const cause = ((e as Error).message ?? String(e)).split("\n")[0]
        .replace(/^Error making request to the metadata service: (Error: )?/, "");
      if (/Requires \w+ access/.test(cause)) {
        throw new Error(`cannot read the ${what} from the EC2 instance metadata service: ${cause}`);
      }
      throw new Error(
        `cannot read the ${what} from the EC2 instance metadata service at ${endpoint} ` +
          `(${cause}): not running on EC2, or the metadata service is off? ` +
          `(AWS_EC2_METADATA_SERVICE_ENDPOINT sets its address)`,
      );
    }
  };
  const region = await get("latest/meta-data/placement/region", "region");
  const instanceId = await get("latest/meta-data/instance-id", "instance id");
  return { region, instanceId };
}

/** EC2 calls with one-line errors. */
class Ec2 {
  readonly #client: EC2Client;

  constructor(region: string) {
    this.#client = new EC2Client({
      region,
      maxAttempts: Deno.env.get("AWS_MAX_ATTEMPTS") ? undefined : EC2_MAX_ATTEMPTS,
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    });
  }

  /** Makes one call; failures become an Error with one line and the SDK error as cause. */
  async call<T>(op: string, fn: (client: EC2Client) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#client);
    } catch (e) {
      throw new Error(ec2ErrorLine(op, e), { cause: e });
    }
  }
}

/** The SDK error code behind an Error thrown by {@link Ec2.send}. */
function codeOf(e: unknown): string | undefined {
  return ec2ErrorCode((e as Error).cause);
}

/**
 * Everything before the lease: who we are (metadata), our network interface (the one whose
 * private address is the external interface's), SourceDestCheck off on it (a warning when
 * that fails, as upstream), and the route tables (configured, else the one associated with
 * the interface's subnet, else the VPC's main table). Returns the route API of those tables.
 */
export async function discover(
  ext: ExternalInterface,
  opts: AwsVpcOptions,
  log: Logger,
): Promise<RouteApi> {
  const { region, instanceId } = await instanceIdentity();
  log.info("EC2 instance", { region, instance: instanceId });
  const ec2 = new Ec2(region);
  const desc = await ec2.call(
    "DescribeInstances",
    (c) => c.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] })),
  );
  const instance = desc.Reservations?.[0]?.Instances?.[0];
  if (!instance) throw new Error(`EC2 DescribeInstances does not know instance ${instanceId}`);
  const eni = findInterface(
    instanceId,
    instance.NetworkInterfaces ?? [],
    formatIP4(ext.ifaceAddr),
    ext.name,
  );
  const eniId = eni.NetworkInterfaceId!;
  log.info("network interface found", { eni: eniId, address: formatIP4(ext.ifaceAddr) });

  if (eni.SourceDestCheck === false) {
    log.info("SourceDestCheck is already off", { eni: eniId });
  } else {
    try {
      await ec2.call("ModifyNetworkInterfaceAttribute", (c) =>
        c.send(
          new ModifyNetworkInterfaceAttributeCommand({
            NetworkInterfaceId: eniId,
            SourceDestCheck: { Value: false },
          }),
        ));
      log.info("turned SourceDestCheck off", { eni: eniId });
    } catch (e) {
      log.warn(
        `cannot turn SourceDestCheck off on ${eniId}; EC2 drops packets for containers ` +
          `on this host until it is off: ${(e as Error).message}`,
      );
    }
  }

  const tables = opts.routeTableIds ?? [await detectTable(ec2, eni.SubnetId!, eni.VpcId!)];
  log.info(opts.routeTableIds ? "route tables (configured)" : "route table (detected)", {
    tables: tables.join(","),
  });
  return new Ec2Routes(ec2, tables, eniId);
}

/** The table associated with `subnetId`, else the VPC's main table. */
async function detectTable(ec2: Ec2, subnetId: string, vpcId: string): Promise<string> {
  const bySubnet = await ec2.call("DescribeRouteTables", (c) =>
    c.send(
      new DescribeRouteTablesCommand({
        Filters: [{ Name: "association.subnet-id", Values: [subnetId] }],
      }),
    ));
  const explicit = bySubnet.RouteTables?.[0]?.RouteTableId;
  if (explicit) return explicit;
  const main = await ec2.call("DescribeRouteTables", (c) =>
    c.send(
      new DescribeRouteTablesCommand({
        Filters: [
          { Name: "association.main", Values: ["true"] },
          { Name: "vpc-id", Values: [vpcId] },
        ],
      }),
    ));
  const id = main.RouteTables?.[0]?.RouteTableId;
  if (!id) {
    throw new Error(
      `no route table is associated with subnet ${subnetId} and VPC ${vpcId} has no main ` +
        "route table; set Backend.RouteTableID",
    );
  }
  return id;
}

/** The route tables as a {@link RouteApi}: one DescribeRouteTables call reads them all. */
class Ec2Routes implements RouteApi {
  /** Routes per table at the last read, for the route-limit message. */
  readonly #sizes = new Map<string, number>();

  constructor(
    private readonly ec2: Ec2,
    readonly tables: readonly string[],
    readonly ownTarget: string,
  ) {}

  async read(): Promise<Map<string, CloudRoute[]>> {
    const out = await this.ec2.call(
      "DescribeRouteTables",
      (c) => c.send(new DescribeRouteTablesCommand({ RouteTableIds: [...this.tables] })),
    );
    const map = new Map<string, CloudRoute[]>();
    for (const t of out.RouteTables ?? []) {
      if (!t.RouteTableId) continue;
      map.set(t.RouteTableId, (t.Routes ?? []).map(cloudRoute));
      this.#sizes.set(t.RouteTableId, t.Routes?.length ?? 0);
    }
    const missing = this.tables.filter((t) => !map.has(t));
    if (missing.length) throw new Error(`EC2 has no route table ${missing.join(", ")}`);
    return map;
  }

  async create(table: string, subnet: IP4Net): Promise<void> {
    try {
      await this.ec2.call("CreateRoute", (c) =>
        c.send(
          new CreateRouteCommand({
            RouteTableId: table,
            DestinationCidrBlock: formatNet4(subnet),
            NetworkInterfaceId: this.ownTarget,
          }),
        ));
    } catch (e) {
      const code = codeOf(e);
      // Created by someone else since our read: point it at us.
      if (code === "RouteAlreadyExists") return await this.#replace(table, subnet);
      if (code === "RouteLimitExceeded") {
        throw new Error(routeLimitLine(table, this.#sizes.get(table) ?? 0, (e as Error).message));
      }
      throw e;
    }
  }

  replace(table: string, subnet: IP4Net): Promise<void> {
    return this.#replace(table, subnet);
  }

  async #replace(table: string, subnet: IP4Net): Promise<void> {
    await this.ec2.call("ReplaceRoute", (c) =>
      c.send(
        new ReplaceRouteCommand({
          RouteTableId: table,
          DestinationCidrBlock: formatNet4(subnet),
          NetworkInterfaceId: this.ownTarget,
        }),
      ));
  }

  async remove(table: string, route: CloudRoute): Promise<void> {
    try {
      await this.ec2.call(
        "DeleteRoute",
        (c) =>
          c.send(new DeleteRouteCommand({ RouteTableId: table, DestinationCidrBlock: route.dest })),
      );
    } catch (e) {
      if (codeOf(e) !== "InvalidRoute.NotFound") throw e;
    }
  }
}
