/**
 * Starts what watches the daemon from outside the control loop: the etcd probe, the health
 * server (when `--healthz-port` > 0) and the systemd watchdog pings (when `$WATCHDOG_USEC`
 * is set). Nothing runs when neither is asked for.
 * @module
 */

import { SubnetRegistry } from "../../subnet/registry.ts";
import type { LeaseStore } from "../../subnet/store.ts";
import { EtcdProbe } from "./etcd_probe.ts";
import { HealthMonitor, type HealthState } from "./monitor.ts";
import { startWatchdog, watchdogIntervalMs } from "../../../ffi/sd_notify.ts";
import { startHealthServer } from "./server.ts";

/** What {@link startHealth} needs. */
export interface HealthOptions {
  /** Makes the probe's store connection (closed by `stop()`). */
  probeStore: () => LeaseStore;
  /** etcd prefix; the probe reads `<prefix>/config`. */
  prefix: string;
  hostname: string;
  /** 0 disables the server. */
  port: number;
  /** The state object handed to runDaemon. */
  state: HealthState;
}

/** Running health machinery; `stop()` ends all of it. */
export interface Health {
  monitor: HealthMonitor | null;
  stop(): Promise<void>;
}

/** Starts probe, server and watchdog as configured. */
export function startHealth(o: HealthOptions): Health {
  const wd = watchdogIntervalMs();
  if (o.port <= 0 && wd === null) return { monitor: null, stop: async () => {} };
  const store = o.probeStore();
  const probe = new EtcdProbe(new SubnetRegistry(store, o.prefix));
  probe.start();
  const monitor = new HealthMonitor(o.state, probe);
  const server = o.port > 0 ? startHealthServer(o.hostname, o.port, monitor) : null;
  const stopWatchdog = wd !== null ? startWatchdog(wd, () => monitor.ready()) : () => {};
  return {
    monitor,
    async stop() {
      stopWatchdog();
      probe.stop();
      await server?.shutdown();
      store.close();
    },
  };
}
