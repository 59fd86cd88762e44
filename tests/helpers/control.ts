/**
 * Control-plane test fixtures: a store and registry on a test etcd, lease managers for fake
 * hosts, a watcher that records its events.
 * @module
 */

import { EtcdStore } from "../../lib/subnet/etcd_store.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import { parseIP4 } from "../../lib/core/ip.ts";
import { describeLease, type Lease, type LeaseEvent } from "../../lib/values/lease.ts";
import { LeaseManager, type LeaseManagerOptions } from "../../lib/subnet/lease_manager.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { LeaseWatcher, type OwnEvent, type WatcherOptions } from "../../lib/subnet/watcher.ts";
import type { EtcdServer } from "./etcd.ts";

/** A store on `etcd` plus a registry on the default prefix (or `prefix`). */
export function registryFor(
  etcd: Pick<EtcdServer, "endpoint">,
  prefix = "/coreos.com/network",
): { store: EtcdStore; registry: SubnetRegistry } {
  const store = new EtcdStore({ endpoints: [etcd.endpoint], callTimeoutMs: 3000 });
  return { store, registry: new SubnetRegistry(store, prefix) };
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
 * in `seen` as `added:10.5.1.0/24` strings and in `events` as delivered, and events on
 * its own key (see `setOwn`) in `own`.
 */
export function recorder(
  registry: SubnetRegistry,
  opts: WatcherOptions = {},
  onOwn: (ev: OwnEvent) => void = () => {},
  validate: (l: Lease) => string | null = () => null,
): { w: LeaseWatcher; seen: string[]; events: LeaseEvent[]; own: OwnEvent[] } {
  const seen: string[] = [];
  const events: LeaseEvent[] = [];
  const own: OwnEvent[] = [];
  const w = new LeaseWatcher(registry, {
    onEvents: (evs) => {
      events.push(...evs);
      seen.push(...evs.map((e) => `${e.type}:${describeLease(e.lease)}`));
    },
    onOwn: (ev) => {
      own.push(ev);
      onOwn(ev);
    },
    validate,
  }, { backoffMinMs: 50, backoffMaxMs: 1000, ...opts });
  return { w, seen, events, own };
}
