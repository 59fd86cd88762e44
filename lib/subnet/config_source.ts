/**
 * The network config at `<prefix>/config`: waiting at start until it exists and is valid
 * (retried every second as upstream, with clear lines instead of a flood), and afterwards a
 * poll that only tells the operator that the config in etcd no longer matches the one in
 * use. It is read once (as upstream): changing Network or the backend under running hosts
 * would renumber them, so nothing is applied: one line per distinct new value (changed,
 * invalid or deleted).
 * @module
 */

import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../values/config.ts";
import { sleep } from "../core/async.ts";
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

/**
 * Reads `<prefix>/config` until it exists and is valid. Logs a line when the problem
 * first appears or changes, and a reminder every 30 s: a clear message, not a flood.
 */
export async function waitForConfig(
  registry: SubnetRegistry,
  retryMs: number,
  signal: AbortSignal,
): Promise<NetworkConfig | null> {
  let lastProblem = "";
  let lastLogged = 0;
  while (!signal.aborted) {
    let problem: string;
    try {
      const text = await registry.getConfig();
      if (text === null) {
        problem = `flannel config not found in etcd store at ${registry.configKey}. ` +
          "Did you create your config using etcdv3 API? (etcdctl put, with ETCDCTL_API=3)";
      } else {
        const cfg = parseNetworkConfig(text);
        if (lastProblem) log.info("network config is now valid", { key: registry.configKey });
        return cfg;
      }
    } catch (e) {
      problem = e instanceof ConfigError
        ? `invalid network config at ${registry.configKey}: ${e.message}${
          e.field ? ` (field ${e.field})` : ""
        }`
        : `cannot read network config: ${(e as Error).message}`;
    }
    if (problem !== lastProblem || Date.now() - lastLogged > 30000) {
      log.error(`${problem}; retrying every ${retryMs / 1000} s`);
      lastProblem = problem;
      lastLogged = Date.now();
    }
    if (!await sleep(retryMs, signal)) break;
  }
  return null;
}
