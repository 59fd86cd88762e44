/**
 * Backend types by name (the config's lower-cased `Backend.Type`), and the one place where
 * the config's Backend object is turned into a backend's typed options.
 * @module
 */

import { allocBackend } from "../backend/alloc.ts";
import { awsVpcBackend } from "../backend/awsvpc/backend.ts";
import type { BackendKind } from "../backend/backend.ts";
import { extensionBackend } from "../backend/extension/backend.ts";
import { gceBackend } from "../backend/gce/backend.ts";
import { hostGwBackend } from "../backend/hostgw.ts";
import { udpBackend } from "../backend/udp/backend.ts";
import { vxlanBackend } from "../backend/vxlan.ts";
import { ConfigError, type NetworkConfig } from "../values/config.ts";

// deno-lint-ignore no-explicit-any
const KINDS: Record<string, BackendKind<any>> = {
  alloc: allocBackend,
  udp: udpBackend,
  vxlan: vxlanBackend,
  "host-gw": hostGwBackend,
  extension: extensionBackend,
  "aws-vpc": awsVpcBackend,
  gce: gceBackend,
};

/** The backend type called `type`, or undefined when there is none. */
export function backendKind(type: string): BackendKind<unknown> | undefined {
  return Object.hasOwn(KINDS, type) ? KINDS[type] : undefined;
}

/** Names of every backend we have, for error messages. */
export function backendTypes(): string[] {
  return Object.keys(KINDS).sort();
}

/** A backend type with its parsed options. */
export interface ChosenBackend {
  kind: BackendKind<unknown>;
  options: unknown;
}

/**
 * The config's backend: its kind and typed options. Throws ConfigError for an unknown type
 * or an invalid option, so that the daemon reports it like any other config problem.
 */
export function chooseBackend(cfg: NetworkConfig): ChosenBackend {
  if (cfg.backendType === "") {
    throw new ConfigError(
      "Backend.Type",
      `Backend has no Type: set one (${backendTypes().join(", ")}), or leave Backend out for udp`,
    );
  }
  const kind = backendKind(cfg.backendType);
  if (!kind) {
    throw new ConfigError(
      "Backend.Type",
      `unknown backend type ${JSON.stringify(cfg.backendType)}; have: ${backendTypes().join(", ")}`,
    );
  }
  return { kind, options: kind.parse(cfg.backend, cfg) };
}
