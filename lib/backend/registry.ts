/**
 * Backend types by name (the config's lower-cased `Backend.Type`).
 * @module
 */

import type { BackendFactory } from "./backend.ts";
import { udpBackendFactory } from "./udp/backend.ts";

const FACTORIES: Record<string, BackendFactory> = {
  udp: udpBackendFactory,
};

/** The factory for a backend type, or undefined when the type is unknown. */
export function backendFactory(type: string): BackendFactory | undefined {
  return Object.hasOwn(FACTORIES, type) ? FACTORIES[type] : undefined;
}
