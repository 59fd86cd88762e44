/**
 * The extension backend's options from the config's `Backend` object: upstream's four shell
 * commands (all optional, as upstream's) and our command timeout. Keys are case-insensitive
 * as Go's JSON decoding. Pure.
 * @module
 */

import { field } from "../../core/json.ts";
import { ConfigError } from "../../values/config.ts";

/** Default of `CommandTimeout`, in seconds: far above what `ip`/`bridge` commands take. */
export const DEFAULT_COMMAND_TIMEOUT_SECONDS = 30;

/** Parsed extension options; an empty command is "not configured" (upstream: skipped). */
export interface ExtensionOptions {
  /** Run before the lease is acquired; its stdout (trimmed) becomes the lease's BackendData. */
  preStartupCommand: string;
  /** Run once our lease is held, with NETWORK, SUBNET and PUBLIC_IP of our own lease. */
  postStartupCommand: string;
  /** Run per remote lease added, with its SUBNET and PUBLIC_IP and its BackendData on stdin. */
  subnetAddCommand: string;
  /** Run per remote lease removed, with the same environment and stdin as its add. */
  subnetRemoveCommand: string;
  /** A command still running after this long is killed, with its children (ours). */
  commandTimeoutMs: number;
}

function optCommand(o: Record<string, unknown>, name: string): string {
  const v = field(o, name);
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") {
    throw new ConfigError(
      `Backend.${name}`,
      `Backend.${name} must be a string (a shell command), got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** Parses the Backend object; throws ConfigError naming the field for a wrong type or value. */
export function parseExtensionOptions(backend: Record<string, unknown>): ExtensionOptions {
  const t = field(backend, "CommandTimeout");
  let seconds = DEFAULT_COMMAND_TIMEOUT_SECONDS;
  if (t !== undefined && t !== null) {
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0 || t > 86400) {
      throw new ConfigError(
        "Backend.CommandTimeout",
        `Backend.CommandTimeout must be a number of seconds above 0 and at most 86400, got ${
          JSON.stringify(t)
        }`,
      );
    }
    seconds = t;
  }
  return {
    preStartupCommand: optCommand(backend, "PreStartupCommand"),
    postStartupCommand: optCommand(backend, "PostStartupCommand"),
    subnetAddCommand: optCommand(backend, "SubnetAddCommand"),
    subnetRemoveCommand: optCommand(backend, "SubnetRemoveCommand"),
    commandTimeoutMs: Math.round(seconds * 1000),
  };
}
