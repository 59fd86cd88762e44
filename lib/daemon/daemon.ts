/**
 * flanneld's life cycle in etcd mode, in upstream's order: config from
 * etcd, external interface, backend device, lease, subnet.env, then follow the other
 * hosts' leases and keep ours until a signal. Nothing is deleted on shutdown: the lease
 * stays in etcd and kernel state stays in place, so a restart does not cut traffic.
 * @module
 */

import type { NetworkConfig } from "../values/config.ts";
import type { Backend } from "../backend/backend.ts";
import type { ExternalInterface } from "../values/iface.ts";
import { chooseBackend, type ChosenBackend } from "./backends.ts";
import { describeLease, type Lease, type LeaseAttrs, type LeaseEvent } from "../values/lease.ts";
import { Backoff, sleep } from "../core/async.ts";
import { formatIP4, formatIP6 } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import { remoteLeaseProblem } from "../subnet/allocator.ts";
import { LeaseManager, OutOfSubnetsError } from "../subnet/lease_manager.ts";
import { SubnetRegistry } from "../subnet/registry.ts";
import { LeaseWatcher, type WatcherOptions } from "../subnet/watcher.ts";
import { readPreviousSubnets, writeSubnetEnv } from "../values/subnet_env.ts";
import { waitForConfig, watchConfig } from "../subnet/config_source.ts";
import type { LeaseStore } from "../subnet/store.ts";
import { leaseNets, TrafficRules, type TrafficRulesOptions } from "../iptables/manager.ts";
import { sdNotify } from "../../ffi/sd_notify.ts";
import { NetlinkSocket } from "../../ffi/netlink/mod.ts";
import { BlackholeRoute } from "../backend/blackhole.ts";

const log = logger("flanneld");

/** Everything the daemon needs, already parsed from flags. */
export interface DaemonOptions {
  /** Where config and leases live (etcd, or a test's in-memory store). */
  store: LeaseStore;
  prefix: string;
  subnetFile: string;
  ipMasq: boolean;
  leaseTTLSeconds: number;
  renewMarginMinutes: number;
  /** Chooses the external interface once the config is known (it says whether IPv6 is on). */
  selectInterface: (cfg: NetworkConfig) => Promise<ExternalInterface>;
  /** `--reconcile-interval` in seconds, for the backend's repair loop. */
  reconcileIntervalSeconds: number;
  watcher?: WatcherOptions;
  /** Retry period for a missing or invalid config (upstream: 1 s). */
  configRetryMs?: number;
  /** iptables/nftables rules (masquerade, forward); none are touched when absent. */
  rules?: Omit<TrafficRulesOptions, "nftables">;
  /** `--ip-blackhole-route`: how often the route is checked (`--iptables-resync`, s). */
  blackholeRoute?: { intervalSeconds: number };
}

/** What a running daemon exposes to health, metrics and tests. */
export interface DaemonState {
  config?: NetworkConfig;
  ext?: ExternalInterface;
  backend?: Backend;
  manager?: LeaseManager;
  watcher?: LeaseWatcher;
  subnetEnvWritten: boolean;
  /** Traffic rules installed and complete at the last resync (true when none are managed). */
  rulesInPlace?: boolean;
  /** The rule keeper, for its restoration count. */
  rules?: TrafficRules;
}

/** Runs the daemon until `signal` aborts. Returns the process exit code. */
export async function runDaemon(
  o: DaemonOptions,
  signal: AbortSignal,
  state: DaemonState = { subnetEnvWritten: false },
): Promise<number> {
  const registry = new SubnetRegistry(o.store, o.prefix);
  const { prev, problem } = await readPreviousSubnets(o.subnetFile);
  if (problem) log.warn(problem);
  else if (prev.subnet || prev.ipv6Subnet) {
    log.info("found previous subnet in subnet file", {
      subnet: describeLease({
        subnet: prev.subnet ?? { ip: 0, prefix: 0 },
        ipv6Subnet: prev.ipv6Subnet,
      }),
    });
  }

  const cfg = await waitForConfig(registry, o.configRetryMs ?? 1000, signal);
  if (!cfg) return 0;
  state.config = cfg;
  let chosen: ChosenBackend;
  try {
    chosen = chooseBackend(cfg);
  } catch (e) {
    log.error(`invalid network config at ${registry.configKey}: ${(e as Error).message}`);
    return 1;
  }
  let ext: ExternalInterface;
  try {
    ext = await o.selectInterface(cfg);
  } catch (e) {
    // One line, before any device or lease exists: nothing is left half-programmed.
    const msg = (e as Error).message;
    const hint = cfg.enableIPv6 && /IPv6|v6/.test(msg)
      ? "; EnableIPv6 is set in the network config: the external interface needs a global " +
        "IPv6 address (--public-ipv6 must be one of its addresses), or set EnableIPv6 to false"
      : "";
    log.error(`${msg}${hint}`);
    return 1;
  }
  state.ext = ext;
  const backend = chosen.kind.create({
    network: cfg,
    ext,
    options: chosen.options,
    reconcileIntervalSeconds: o.reconcileIntervalSeconds,
  });
  state.backend = backend;
  const data = await backend.prepare();
  const attrs: LeaseAttrs = {
    publicIP: cfg.enableIPv4 ? ext.extAddr : 0,
    publicIPv6: cfg.enableIPv6 ? ext.extAddr6 : null,
  };
  if (backend.leaseType) attrs.backendType = backend.leaseType;
  if (data.backendData !== undefined) attrs.backendData = data.backendData;
  if (data.backendV6Data !== undefined) attrs.backendV6Data = data.backendV6Data;

  let rules: TrafficRules | null = null;
  let blackhole: BlackholeRoute | null = null;
  let queue = Promise.resolve();
  // Remote lease events reach the backend one batch at a time, in order.
  const watcher = new LeaseWatcher(registry, {
    onEvents: (events: LeaseEvent[]) => {
      queue = queue.then(() => backend.handle(events)).catch((e) => {
        log.error("backend failed to apply lease events", { error: e, events: events.length });
      });
    },
    onOwn: (ev) => manager.handleOwn(ev),
    validate: (l) => remoteLeaseProblem(cfg, l),
  }, o.watcher);
  const manager = new LeaseManager({
    registry,
    config: cfg,
    attrs,
    previous: prev,
    ttlSeconds: o.leaseTTLSeconds,
    renewMarginMinutes: o.renewMarginMinutes,
    onChange: async (now, old, why) => {
      if (why !== "changed") return;
      await queue;
      await backend.stop();
      await backend.start(now);
      blackhole?.update(now);
      await rules?.update(leaseNets(cfg, now));
      state.subnetEnvWritten = await envFile();
      watcher.setOwn(now.subnet, undefined, now.ipv6Subnet);
      await watcher.resync();
      log.warn("data path moved to the new subnet; subnet file rewritten", {
        old: describeLease(old),
        subnet: describeLease(now),
      });
    },
  });
  state.manager = manager;
  let lease: Lease | null = null;
  const backoff = new Backoff({ minMs: 1000, maxMs: 30000 });
  while (!lease && !signal.aborted) {
    try {
      lease = await manager.acquire();
    } catch (e) {
      const why = e instanceof OutOfSubnetsError
        ? e.message
        : `failed to acquire lease: ${(e as Error).message}`;
      const wait = backoff.next();
      log.error(`${why}; retrying in ${wait / 1000} s`);
      if (!await sleep(wait, signal)) return 0;
    }
  }
  if (!lease) return 0;
  log.info("lease acquired", {
    subnet: describeLease(lease),
    publicIP: cfg.enableIPv4 ? formatIP4(attrs.publicIP) : undefined,
    publicIPv6: attrs.publicIPv6 !== null ? formatIP6(attrs.publicIPv6) : undefined,
  });
  await backend.start(lease);
  if (o.blackholeRoute) {
    blackhole = new BlackholeRoute(NetlinkSocket.open(), o.blackholeRoute.intervalSeconds);
    blackhole.start(lease);
  }
  // Rules before subnet.env (upstream's order), so that "ready" implies them.
  state.rulesInPlace = !o.rules;
  if (o.rules) {
    rules = new TrafficRules({
      ...o.rules,
      nftables: cfg.enableNFTables,
      onState: (ok) => state.rulesInPlace = ok,
    });
    state.rules = rules;
    await rules.start(leaseNets(cfg, lease), prev);
  }
  // A subnet file that cannot be written costs a warning, not the lease (as upstream).
  const envFile = () =>
    writeSubnetEnv(o.subnetFile, {
      network: cfg.enableIPv4 ? cfg.network : undefined,
      subnet: cfg.enableIPv4 ? manager.lease!.subnet : undefined,
      ipv6Network: cfg.enableIPv6 ? cfg.ipv6Network : undefined,
      ipv6Subnet: cfg.enableIPv6 ? manager.lease!.ipv6Subnet : undefined,
      mtu: backend.mtu,
      ipMasq: o.ipMasq,
    }).then(() => true, (e) => {
      log.warn("cannot write subnet file; continuing without it", { path: o.subnetFile, error: e });
      return false;
    });
  state.subnetEnvWritten = await envFile();
  if (state.subnetEnvWritten) {
    log.info("wrote subnet file", {
      path: o.subnetFile,
      subnet: describeLease(lease),
      mtu: backend.mtu,
    });
  }

  state.watcher = watcher;
  watcher.setOwn(lease.subnet, attrs.publicIP, lease.ipv6Subnet, attrs.publicIPv6);
  await watcher.start();
  manager.startRenewal();
  watchConfig(registry, cfg, signal);
  log.info("running", { subnet: describeLease(lease), backend: cfg.backendType });
  sdNotify("READY=1"); // subnet.env is written and the watch runs (upstream's order)

  await new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  log.info("shutting down; lease and kernel state are kept", {
    subnet: describeLease(manager.lease ?? lease),
  });
  watcher.stop();
  manager.stop();
  await rules?.stop(); // the rules themselves stay, as upstream's
  blackhole?.stop(); // so does the route
  await queue;
  await backend.stop();
  return 0;
}
