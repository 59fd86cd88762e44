/**
 * flanneld's life cycle in etcd mode, in upstream's order (FLANNEL.md §16): config from
 * etcd, external interface, backend device, lease, subnet.env, then follow the other
 * hosts' leases and keep ours until a signal. Nothing is deleted on shutdown: the lease
 * stays in etcd and kernel state stays in place, so a restart does not cut traffic.
 * @module
 */

import type { Etcd3 } from "etcd3";
import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../values/config.ts";
import type { Backend } from "../backend/backend.ts";
import type { ExternalInterface } from "../values/iface.ts";
import { chooseBackend, type ChosenBackend } from "./backends.ts";
import { describeLease, type Lease, type LeaseAttrs, type LeaseEvent } from "../values/lease.ts";
import { formatIP4 } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import { remoteLeaseProblem } from "../subnet/allocator.ts";
import { LeaseManager, OutOfSubnetsError } from "../subnet/lease_manager.ts";
import { SubnetRegistry } from "../subnet/registry.ts";
import { LeaseWatcher, type WatcherOptions } from "../subnet/watcher.ts";
import { readPreviousSubnets, writeSubnetEnv } from "../values/subnet_env.ts";
import { watchConfig } from "../subnet/config_source.ts";
import { leaseNets, TrafficRules, type TrafficRulesOptions } from "../iptables/manager.ts";
import { sdNotify } from "../../ffi/sd_notify.ts";

const log = logger("flanneld");

/** Everything the daemon needs, already parsed from flags. */
export interface DaemonOptions {
  client: Etcd3;
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

/** Sleeps unless aborted; resolves false when aborted. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
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
        : `cannot read network config from etcd: ${(e as Error).message}`;
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

/** Runs the daemon until `signal` aborts. Returns the process exit code. */
export async function runDaemon(
  o: DaemonOptions,
  signal: AbortSignal,
  state: DaemonState = { subnetEnvWritten: false },
): Promise<number> {
  const registry = new SubnetRegistry(o.client, o.prefix);
  const { prev, problem } = await readPreviousSubnets(o.subnetFile);
  if (problem) log.warn(problem);
  else if (prev.subnet) {
    log.info("found previous subnet in subnet file", {
      subnet: describeLease({ subnet: prev.subnet, ipv6Subnet: prev.ipv6Subnet }),
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
  const ext = await o.selectInterface(cfg);
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

  const manager = new LeaseManager({
    registry,
    config: cfg,
    attrs,
    previous: prev,
    ttlSeconds: o.leaseTTLSeconds,
    renewMarginMinutes: o.renewMarginMinutes,
  });
  state.manager = manager;
  let lease: Lease | null = null;
  for (let wait = 1000; !lease && !signal.aborted; wait = Math.min(wait * 2, 30000)) {
    try {
      lease = await manager.acquire();
    } catch (e) {
      const why = e instanceof OutOfSubnetsError
        ? e.message
        : `failed to acquire lease: ${(e as Error).message}`;
      log.error(`${why}; retrying in ${wait / 1000} s`);
      if (!await sleep(wait, signal)) return 0;
    }
  }
  if (!lease) return 0;
  log.info("lease acquired", { subnet: describeLease(lease), publicIP: formatIP4(attrs.publicIP) });
  await backend.start(lease);
  // Rules before subnet.env (FLANNEL.md §16 step 8), so that "ready" implies them.
  state.rulesInPlace = !o.rules;
  const rules = o.rules ? new TrafficRules({ ...o.rules, nftables: cfg.enableNFTables }) : null;
  if (rules) {
    state.rules = rules;
    rules.onState = (ok) => state.rulesInPlace = ok;
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

  // Remote lease events reach the backend one batch at a time, in order.
  const watcher = new LeaseWatcher(registry, o.watcher);
  state.watcher = watcher;
  let queue = Promise.resolve();
  const deliver = (events: LeaseEvent[]) => {
    queue = queue.then(() => backend.handle(events)).catch((e) => {
      log.error("backend failed to apply lease events", { error: e, events: events.length });
    });
  };
  watcher.onEvents = deliver;
  watcher.validate = (l) => remoteLeaseProblem(cfg, l);
  watcher.onOwn = (ev) => manager.handleOwn(ev);
  watcher.setOwn(lease.subnet);
  watcher.setOwnPublicIP(attrs.publicIP);
  manager.onChange = async (now, old, why) => {
    if (why === "changed") {
      await queue;
      await backend.stop();
      await backend.start(now);
      await rules?.update(leaseNets(cfg, now));
      state.subnetEnvWritten = await envFile();
      watcher.setOwn(now.subnet);
      await watcher.resync();
      log.warn("data path moved to the new subnet; subnet file rewritten", {
        old: describeLease(old),
        subnet: describeLease(now),
      });
    }
  };
  await watcher.start();
  manager.startRenewal();
  watchConfig(registry, cfg, signal);
  log.info("running", { subnet: describeLease(lease), backend: cfg.backendType });
  sdNotify("READY=1"); // subnet.env is written and the watch runs (FLANNEL.md §16 step 11)

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
  await queue;
  await backend.stop();
  return 0;
}
