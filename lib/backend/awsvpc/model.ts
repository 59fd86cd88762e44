/**
 * The aws-vpc backend's options and the pure parts of its discovery: which network
 * interface carries our address, how EC2 routes and errors read. No SDK here, so that the
 * rules are unit-tested without loading it.
 * @module
 */

import { field } from "../../core/json.ts";
import { ConfigError, type NetworkConfig } from "../../values/config.ts";
import { requireIPv4Only } from "../cloud/backend.ts";
import type { CloudRoute } from "../cloud/routes.ts";

/** Parsed `{"Type":"aws-vpc","RouteTableID":…}`. */
export interface AwsVpcOptions {
  /** Tables to program; null: the one associated with our subnet, else the VPC's main table. */
  routeTableIds: string[] | null;
}

/** Parses the Backend object: `RouteTableID` is a string or an array of strings, or absent. */
export function parseAwsVpcOptions(
  backend: Record<string, unknown>,
  network: NetworkConfig,
): AwsVpcOptions {
  requireIPv4Only("aws-vpc", network);
  const v = field(backend, "RouteTableID");
  if (v === undefined || v === null) return { routeTableIds: null };
  const bad = () =>
    new ConfigError(
      "Backend.RouteTableID",
      `Backend.RouteTableID must be a route table id or an array of them (strings like "rtb-0123abcd"), got ${
        JSON.stringify(v)
      }`,
    );
  const ids = typeof v === "string" ? [v] : Array.isArray(v) ? v : null;
  if (!ids || ids.length === 0 || ids.some((id) => typeof id !== "string" || id.trim() === "")) {
    throw bad();
  }
  return { routeTableIds: [...new Set(ids as string[])] };
}

/** The parts of an EC2 instance network interface that discovery reads. */
export interface Ec2Interface {
  NetworkInterfaceId?: string;
  SubnetId?: string;
  VpcId?: string;
  SourceDestCheck?: boolean;
  PrivateIpAddresses?: { PrivateIpAddress?: string }[];
}

/** The interface with private address `ip`, or an Error saying which addresses there are. */
export function findInterface(
  instanceId: string,
  interfaces: readonly Ec2Interface[],
  ip: string,
  ifaceName: string,
): Ec2Interface {
  const hit = interfaces.find((n) => n.PrivateIpAddresses?.some((a) => a.PrivateIpAddress === ip));
  if (hit?.NetworkInterfaceId) return hit;
  const have = interfaces.map((n) =>
    `${n.NetworkInterfaceId}: ${
      (n.PrivateIpAddresses ?? []).map((a) => a.PrivateIpAddress).join(", ") || "no address"
    }`
  ).join("; ");
  throw new Error(
    `no network interface of instance ${instanceId} has ${ifaceName}'s address ${ip} ` +
      `(it has ${have || "no network interfaces"}); choose the interface with --iface`,
  );
}

/** The parts of an EC2 route that the plan reads. */
export interface Ec2Route {
  DestinationCidrBlock?: string;
  NetworkInterfaceId?: string;
  InstanceId?: string;
  GatewayId?: string;
  NatGatewayId?: string;
  TransitGatewayId?: string;
  VpcPeeringConnectionId?: string;
  State?: string;
}

/** An EC2 route as the plan sees it; IPv6 and prefix-list routes come out with no dest. */
export function cloudRoute(r: Ec2Route): CloudRoute {
  return {
    dest: r.DestinationCidrBlock ?? "",
    target: r.NetworkInterfaceId ?? r.GatewayId ?? r.NatGatewayId ?? r.TransitGatewayId ??
      r.VpcPeeringConnectionId ?? r.InstanceId ?? null,
    blackhole: r.State === "blackhole",
  };
}

/** EC2's default quota of routes per route table ("Routes per route table"). */
export const DEFAULT_ROUTE_LIMIT = 50;

/** An SDK error as far as the message needs it. */
interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
}

/** One line for a failed EC2 call: operation, error code, message, HTTP status and attempts. */
export function ec2ErrorLine(op: string, e: unknown): string {
  const err = (e ?? {}) as SdkError;
  const code = err.name && err.name !== "Error" ? err.name : err.code;
  const msg = (err.message ?? String(e)).split("\n")[0];
  const meta = err.$metadata;
  const extra = [
    meta?.httpStatusCode ? `HTTP ${meta.httpStatusCode}` : "",
    meta?.attempts ? `${meta.attempts} attempt${meta.attempts === 1 ? "" : "s"}` : "",
  ].filter(Boolean).join(", ");
  if (code === "CredentialsProviderError") {
    return `EC2 ${op} failed: no AWS credentials (${msg}); attach an IAM role to the instance`;
  }
  return `EC2 ${op} failed: ${code ? `${code}: ` : ""}${msg}${extra ? ` (${extra})` : ""}`;
}

/** The error code of an SDK error. */
export function ec2ErrorCode(e: unknown): string | undefined {
  return (e as SdkError | null)?.name;
}

/** The line for a route table that refused our route because it is full. */
export function routeLimitLine(table: string, routes: number, cause: string): string {
  return `route table ${table} is full (${routes} routes): EC2's quota "Routes per route table" ` +
    `(${DEFAULT_ROUTE_LIMIT} by default) is reached; raise it or use fewer hosts per table ` +
    `(${cause})`;
}
