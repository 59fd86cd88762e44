/**
 * Control-plane test fixtures: an etcd client and registry against a test etcd, lease
 * managers for fake hosts, and a poll-until helper with a deadline.
 * @module
 */

import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../lib/etcd/client.ts";
import { parseNetworkConfig } from "../../lib/config.ts";
import { parseIP4 } from "../../lib/ip.ts";
import { LeaseManager, type LeaseManagerOptions } from "../../lib/subnet/lease_manager.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import type { EtcdServer } from "./etcd.ts";

/** A client plus registry on the default prefix (or `prefix`). */
export function registryFor(etcd: EtcdServer, prefix = "/coreos.com/network"): { client: Etcd3; registry: SubnetRegistry } {
  const client = createEtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 3000 });
  return { client, registry: new SubnetRegistry(client, prefix) };
}

/** A lease manager for a fake host with public IP `ip` under config JSON `configText`. */
export function hostManager(
  registry: SubnetRegistry,
  configText: string,
  ip: string,
  extra: Partial<LeaseManagerOptions> = {},
): LeaseManager {
  return new LeaseManager({
    registry,
    config: parseNetworkConfig(configText),
    attrs: { publicIP: parseIP4(ip)!, publicIPv6: null },
    retryMinMs: 50,
    retryMaxMs: 500,
    ...extra,
  });
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; throws with `what`. */
export async function until<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}
