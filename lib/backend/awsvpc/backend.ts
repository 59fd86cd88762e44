/**
 * The `aws-vpc` backend: no encapsulation; each host puts a route `<its subnet> → <its
 * network interface>` into the VPC route tables, and the VPC delivers container traffic.
 * Upstream's behaviour (dropped in v0.20) plus: removed leases' routes are deleted, our route
 * is checked every reconcile interval and put back, a full table gives a clear error, and
 * `/readyz` says whether our route is in place (README "aws-vpc backend").
 * @module
 */

import { releaseFreedMemory } from "../../../ffi/malloc.ts";
import { logger } from "../../core/log.ts";
import type { Backend, BackendKind } from "../backend.ts";
import { routeBackend } from "../cloud/backend.ts";
import { type AwsVpcOptions, parseAwsVpcOptions } from "./model.ts";

const log = logger("aws-vpc");

/**
 * The module that holds the AWS SDK, imported by URL: Deno then leaves it out of the module
 * graph it resolves at start, which an analysable `import("./ec2.ts")` would cost every
 * backend (~2.6 MiB of resident memory for resolving the SDK's packages). `deno compile` and
 * install.sh's launcher include it by name (dist/compile.ts `LAZY_MODULES`).
 */
const EC2_MODULE = new URL("./ec2.ts", import.meta.url).href;

/** The aws-vpc backend type. */
export const awsVpcBackend: BackendKind<AwsVpcOptions> = {
  parse: parseAwsVpcOptions,
  create(ctx): Backend {
    return routeBackend(ctx, log, async () => {
      // The AWS SDK is loaded here only: the other backends never pay its memory.
      const ec2: typeof import("./ec2.ts") = await import(EC2_MODULE);
      releaseFreedMemory(); // the loader's garbage: ~30 MiB
      return await ec2.discover(ctx.ext, ctx.options, log);
    });
  },
};
