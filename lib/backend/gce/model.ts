/**
 * The pure parts of the gce backend: route names, the compute API's resource shapes as the
 * plan reads them, where the metadata server and the compute API are, error lines and the
 * token refresh rule. No I/O.
 * @module
 */

import { formatNet4, type IP4Net } from "../../core/ip.ts";
import type { NetworkConfig } from "../../values/config.ts";
import { requireIPv4Only } from "../cloud/backend.ts";
import type { CloudRoute } from "../cloud/routes.ts";

/** gce has no options of its own. */
export type GceOptions = Record<never, never>;

/** Refuses what gce cannot do (IPv6); there are no options to read. */
export function parseGceOptions(
  _backend: Record<string, unknown>,
  network: NetworkConfig,
): GceOptions {
  requireIPv4Only("gce", network);
  return {};
}

/** Upstream's route name: `flannel-` and the subnet with `.` and `/` as `-`. */
export function routeName(subnet: IP4Net): string {
  return `flannel-${formatNet4(subnet).replace(/[./]/g, "-")}`;
}

/** List filter for our routes (the compute API matches the whole name as an RE2 regex). */
export const ROUTE_FILTER = 'name eq "flannel-.*"';

/**
 * A resource link without scheme and host (`projects/p/zones/z/instances/i`): the API
 * writes selfLinks with www.googleapis.com while it is reached at compute.googleapis.com.
 */
export function resourcePath(link: string): string {
  const i = link.indexOf("projects/");
  return i < 0 ? link : link.slice(i);
}

/** The last segment of a path (`projects/123/zones/us-central1-a` → `us-central1-a`). */
export function baseName(path: string): string {
  return path.trim().replace(/\/+$/, "").split("/").pop() ?? "";
}

/** A compute v1 Route, as far as we read it. */
export interface ComputeRoute {
  name?: string;
  network?: string;
  destRange?: string;
  nextHopInstance?: string;
  warnings?: { code?: string }[];
}

/** A compute route as the plan sees it; a next hop instance that is gone is a blackhole. */
export function cloudRoute(r: ComputeRoute): CloudRoute {
  return {
    dest: r.destRange ?? "",
    target: r.nextHopInstance ? resourcePath(r.nextHopInstance) : null,
    blackhole: r.warnings?.some((w) => w.code === "NEXT_HOP_INSTANCE_NOT_FOUND") ?? false,
    name: r.name,
  };
}

/** Metadata server base URL: `GCE_METADATA_HOST` (host or host:port) or 169.254.169.254. */
export function metadataBase(env: (k: string) => string | undefined): string {
  return `http://${env("GCE_METADATA_HOST") || "169.254.169.254"}/computeMetadata/v1/`;
}

/**
 * Compute API base URL: gcloud's endpoint override for compute
 * (`CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`, e.g. `https://compute.googleapis.com/compute/v1/`)
 * or the public endpoint.
 */
export function computeBase(env: (k: string) => string | undefined): string {
  const v = env("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE") ||
    "https://compute.googleapis.com/compute/v1/";
  return v.endsWith("/") ? v : `${v}/`;
}

/** A compute API error body (`{"error":{"code","message","errors":[{"reason"}]}}`). */
interface ErrorBody {
  error?: { code?: number; message?: string; errors?: { reason?: string }[] };
}

/** The `reason` of an error body (e.g. `rateLimitExceeded`), "" when none. */
export function errorReason(body: unknown): string {
  return (body as ErrorBody | null)?.error?.errors?.[0]?.reason ?? "";
}

/** Whether a failed call is worth retrying: throttling, server errors, no answer. */
export function retryable(status: number, reason: string): boolean {
  return status === 0 || status === 429 || status >= 500 ||
    (status === 403 && /rateLimitExceeded|userRateLimitExceeded|quotaExceeded/.test(reason));
}

/** One line for a failed compute call. */
export function computeErrorLine(
  op: string,
  status: number,
  body: unknown,
  attempts: number,
  cause = "",
): string {
  const e = (body as ErrorBody | null)?.error;
  const reason = errorReason(body);
  const what = status === 0
    ? `no answer (${cause})`
    : `HTTP ${status}${reason ? ` ${reason}` : ""}${
      e?.message ? `: ${e.message.split("\n")[0]}` : cause ? `: ${cause}` : ""
    }`;
  return `compute API ${op} failed: ${what} (${attempts} attempt${attempts === 1 ? "" : "s"})`;
}

/** A compute v1 Operation, as far as we read it. */
export interface Operation {
  name?: string;
  status?: string;
  error?: { errors?: { code?: string; message?: string }[] };
}

/** The error of a finished operation, as one line; "" when it succeeded. */
export function operationError(op: Operation): string {
  const errs = op.error?.errors ?? [];
  if (!errs.length) return "";
  const text = errs.map((e) => `${e.code ?? "ERROR"}: ${e.message ?? ""}`).join("; ");
  return errs.some((e) => e.code === "QUOTA_EXCEEDED")
    ? `${text} (GCE's ROUTES quota, 250 routes per project by default, is reached; raise it)`
    : text;
}

/**
 * When a token should be replaced: at most 5 minutes before it expires, and for short-lived
 * tokens at half their life, so that a call never goes out with a token about to expire.
 */
export function refreshAt(obtainedAt: number, expiresInSeconds: number): number {
  const lifeMs = expiresInSeconds * 1000;
  return obtainedAt + lifeMs - Math.min(300_000, lifeMs / 2);
}
