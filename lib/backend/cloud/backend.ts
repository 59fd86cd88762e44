/**
 * A {@link Backend} made of a cloud's discovery and a {@link RouteKeeper}: no device and no
 * encapsulation; the cloud's network delivers packets for our subnet to this host because
 * a route table says so. The lease carries only the public IP (no BackendType, as upstream)
 * and FLANNEL_MTU is the external interface's.
 * @module
 */

import type { IP4Net } from "../../core/ip.ts";
import type { Logger } from "../../core/log.ts";
import { ConfigError, type NetworkConfig } from "../../values/config.ts";
import type { Backend, BackendContext } from "../backend.ts";
import { type RouteApi, RouteKeeper } from "./keeper.ts";

/**
 * Refuses networks the cloud route backends cannot serve: they route IPv4 only.
 * @param type the backend type, for the message
 */
export function requireIPv4Only(type: string, network: NetworkConfig): IP4Net {
  if (network.enableIPv6) {
    throw new ConfigError(
      "EnableIPv6",
      `the ${type} backend routes IPv4 only; EnableIPv6 is not supported with it`,
    );
  }
  if (!network.network) {
    throw new ConfigError("Network", `the ${type} backend needs an IPv4 Network`);
  }
  return network.network;
}

/**
 * The backend: `discover` runs in prepare(), before the lease is taken, so that a host that
 * cannot program its cloud (no metadata service, no permission, no matching interface) stops
 * with a clear error without holding a subnet.
 */
export function routeBackend(
  ctx: BackendContext<unknown>,
  log: Logger,
  discover: () => Promise<RouteApi>,
): Backend {
  let keeper: RouteKeeper | null = null;
  const intervalMs = ctx.reconcileIntervalSeconds * 1000;
  return {
    leaseType: "",
    mtu: ctx.ext.mtu,
    async prepare() {
      keeper = new RouteKeeper(await discover(), {
        network: ctx.network.network!,
        intervalMs,
        graceMs: intervalMs,
        log,
      });
      return {};
    },
    start: (own) => keeper!.start(own.subnet),
    handle(events) {
      keeper?.handle(events);
      return Promise.resolve();
    },
    stop: () => keeper?.stop() ?? Promise.resolve(),
    stats: () => keeper?.stats() ?? {},
    problems: () => keeper?.problems() ?? [],
  };
}
