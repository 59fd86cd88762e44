/**
 * Backend types by name (the config's lower-cased `Backend.Type`).
 * @module
 */

import { allocBackend } from "../backend/alloc.ts";
import type { BackendFactory } from "../backend/backend.ts";
import { hostGwBackend } from "../backend/hostgw.ts";
import { udpBackendFactory } from "../backend/udp/backend.ts";
import { vxlanBackend } from "../backend/vxlan.ts";

const FACTORIES: Record<string, BackendFactory> = {
  alloc: allocBackend,
  udp: udpBackendFactory,
  vxlan: vxlanBackend,
  "host-gw": hostGwBackend,
};

/** The factory for a backend type, or undefined when the type is unknown. */
export function backendFactory(type: string): BackendFactory | undefined {
  return Object.hasOwn(FACTORIES, type) ? FACTORIES[type] : undefined;
}

/** Names of every backend we have, for error messages. */
export function backendTypes(): string[] {
  return Object.keys(FACTORIES).sort();
}
