/**
 * Control-plane test fixtures: an etcd client and registry against a test etcd, lease
 * managers for fake hosts, a watcher that records its events, and a poll-until helper
 * with a deadline.
 * @module
 */

import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../lib/subnet/etcd_store.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import { formatNet4, parseIP4 } from "../../lib/core/ip.ts";
import type { LeaseEvent } from "../../lib/values/lease.ts";
import { LeaseManager, type LeaseManagerOptions } from "../../lib/subnet/lease_manager.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { LeaseWatcher, type WatcherOptions } from "../../lib/subnet/watcher.ts";
import type { EtcdServer } from "./etcd.ts";

/** A client plus registry on the default prefix (or `prefix`). */
export function registryFor(
  etcd: Pick<EtcdServer, "endpoint">,
  prefix = "/coreos.com/network",
): { client: Etcd3; registry: SubnetRegistry } {
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

/**
 * A watcher (fast backoff unless `opts` says otherwise) that records its remote events,
 * in `seen` as `added:10.5.1.0/24` strings and in `events` as delivered.
 */
export function recorder(
  registry: SubnetRegistry,
  opts: WatcherOptions = {},
): { w: LeaseWatcher; seen: string[]; events: LeaseEvent[] } {
  const w = new LeaseWatcher(registry, { backoffMinMs: 50, backoffMaxMs: 1000, ...opts });
  const seen: string[] = [];
  const events: LeaseEvent[] = [];
  w.onEvents = (evs) => {
    events.push(...evs);
    seen.push(...evs.map((e) => `${e.type}:${formatNet4(e.lease.subnet)}`));
  };
  return { w, seen, events };
}
