/**
 * The `gce` backend: no encapsulation; each host inserts a route `flannel-<subnet>` (its
 * subnet → its instance) into its VPC network, and GCE delivers container traffic. Upstream's
 * behaviour (dropped in v0.20) plus: removed leases' routes are deleted, our route is checked
 * every reconcile interval and put back, the access token is replaced before it expires, and
 * `/readyz` says whether our route is in place (README "gce backend").
 * @module
 */

import { logger } from "../../core/log.ts";
import type { Backend, BackendKind } from "../backend.ts";
import { routeBackend } from "../cloud/backend.ts";
import { type GceOptions, parseGceOptions } from "./model.ts";

const log = logger("gce");

/** The gce backend type. */
export const gceBackend: BackendKind<GceOptions> = {
  parse: parseGceOptions,
  create: (ctx): Backend =>
    routeBackend(ctx, log, async () => (await import("./api.ts")).discover(ctx.ext, log)),
};
