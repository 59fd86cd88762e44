/**
 * The network config is read once, at start (as upstream): changing Network or the backend
 * under running hosts would renumber them. This poll only tells the operator that the
 * config in etcd no longer matches the one in use: one line per distinct new value
 * (changed, invalid or deleted), nothing applied.
 * @module
 */

import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../values/config.ts";
import { logger } from "../core/log.ts";
import type { SubnetRegistry } from "./registry.ts";

const log = logger("flanneld");

/** Stable text of a parsed config (bigints as strings), for comparing meaning, not bytes. */
function canonical(cfg: NetworkConfig): string {
  return JSON.stringify(cfg, (_k, v) => typeof v === "bigint" ? String(v) : v);
}

/** Why `text` differs from the config in use, or null when it means the same. */
export function configDrift(inUse: NetworkConfig, text: string | null): string | null {
  if (text === null) return "deleted";
  try {
    return canonical(parseNetworkConfig(text)) === canonical(inUse) ? null : "changed";
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return `changed and invalid: ${e.message}`;
  }
}

/**
 * Polls `<prefix>/config` every `intervalMs` until `signal` aborts; logs a drift once per
 * distinct value. etcd errors are ignored here (the watch and the probe report those).
 */
export function watchConfig(
  registry: SubnetRegistry,
  inUse: NetworkConfig,
  signal: AbortSignal,
  intervalMs = 10_000,
): void {
  let lastText: string | null | undefined;
  const timer = setInterval(async () => {
    let text: string | null;
    try {
      text = await registry.getConfig();
    } catch {
      return;
    }
    if (text === lastText || signal.aborted) return;
    lastText = text;
    const drift = configDrift(inUse, text);
    if (drift) {
      log.warn(`network config in etcd ${drift}; restart to apply`, { key: registry.configKey });
    }
  }, intervalMs);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
