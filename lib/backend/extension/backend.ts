/**
 * The `extension` backend, after upstream's: the data path is whatever the operator's shell
 * commands (`sh -c`) set up.
 *
 * - `PreStartupCommand` runs before the lease is acquired; its stdout, trimmed, is stored in
 *   the lease as `"BackendData":"<string>"` (no command: no BackendData). Lease
 *   `"BackendType":"extension"`; MTU = the external interface's.
 * - `PostStartupCommand` runs once the lease is held, with `NETWORK`, `SUBNET` and
 *   `PUBLIC_IP` of our own lease in its environment.
 * - `SubnetAddCommand` / `SubnetRemoveCommand` run per remote extension lease with its
 *   `SUBNET` and `PUBLIC_IP` in the environment and its BackendData string (plus a newline,
 *   as upstream writes it) on stdin; scheduling, retries and timeouts in lease_commands.ts.
 *
 * A startup command that fails is retried a few times, then start-up fails as upstream's
 * (which does not retry). Every command is killed, with its children, after
 * `CommandTimeout` seconds.
 * @module
 */

import { Backoff, type BackoffOptions, sleep } from "../../core/async.ts";
import { formatIP4, formatIP6, formatNet4, formatNet6 } from "../../core/ip.ts";
import { logger, OnceLogger } from "../../core/log.ts";
import type { NetworkConfig } from "../../values/config.ts";
import { describeLease, type Lease, type LeaseEvent, subnetKey } from "../../values/lease.ts";
import type { Backend, BackendContext, BackendKind, BackendLeaseData } from "../backend.ts";
import { type ExtensionOptions, parseExtensionOptions } from "./config.ts";
import { CommandExecutor } from "./executor.ts";
import { LeaseCommands } from "./lease_commands.ts";
import { type CommandRunner, ShellRunner } from "./runner.ts";

const log = logger("extension");

/** The lease BackendType (upstream's). */
export const EXTENSION_LEASE_TYPE = "extension";

/** Retry timing; tests shorten it. */
export interface ExtensionTiming {
  /** Attempts at a startup command before start-up fails. */
  startupAttempts: number;
  /** Delays between startup attempts. */
  startupBackoff: BackoffOptions;
  /** Delays between retries of a lease's failing command. */
  leaseBackoff: BackoffOptions;
  /** Per-lease commands running at once, over all leases. */
  maxParallel: number;
}

/** Defaults: startup commands 5 attempts over ~15 s; lease commands 1 s doubling to 60 s. */
export const DEFAULT_TIMING: ExtensionTiming = {
  startupAttempts: 5,
  startupBackoff: { minMs: 1000, maxMs: 8000 },
  leaseBackoff: { minMs: 1000, maxMs: 60_000 },
  maxParallel: 16,
};

/**
 * Environment of a remote lease's SubnetAdd/RemoveCommand: `SUBNET` and `PUBLIC_IP` (all
 * upstream v0.20 sets), and with a dual-stack lease `IPV6SUBNET` and `PUBLIC_IPV6`, the
 * names later upstream releases use.
 */
export function leaseEnv(l: Lease): Record<string, string> {
  const env: Record<string, string> = {
    SUBNET: formatNet4(l.subnet),
    PUBLIC_IP: formatIP4(l.attrs.publicIP),
  };
  if (l.ipv6Subnet) env.IPV6SUBNET = formatNet6(l.ipv6Subnet);
  if (l.attrs.publicIPv6 !== null) env.PUBLIC_IPV6 = formatIP6(l.attrs.publicIPv6);
  return env;
}

/** Stdin of a remote lease's commands: its BackendData string and a newline (as upstream). */
export function leaseStdin(l: Lease): string {
  const d = l.attrs.backendData;
  return `${typeof d === "string" ? d : ""}\n`;
}

/** Environment of PostStartupCommand: the Network, our lease's subnet and public IP. */
export function postStartupEnv(network: NetworkConfig, own: Lease): Record<string, string> {
  const env = leaseEnv(own);
  if (network.network) env.NETWORK = formatNet4(network.network);
  return env;
}

/** The extension backend. */
export class ExtensionBackend implements Backend {
  readonly leaseType = EXTENSION_LEASE_TYPE;
  readonly mtu: number;
  readonly #o: ExtensionOptions;
  readonly #exec: CommandExecutor;
  readonly #leases: LeaseCommands;
  readonly #ignored = new OnceLogger(log);
  #stop = new AbortController();
  #counts = { ignored_leases: 0, bad_leases: 0 };

  constructor(
    private readonly ctx: BackendContext<ExtensionOptions>,
    runner: CommandRunner = new ShellRunner(),
    private readonly timing: ExtensionTiming = DEFAULT_TIMING,
  ) {
    this.#o = ctx.options;
    this.mtu = ctx.ext.mtu;
    this.#exec = new CommandExecutor(runner, this.#o.commandTimeoutMs);
    this.#leases = new LeaseCommands({
      exec: this.#exec,
      log,
      addCommand: this.#o.subnetAddCommand,
      removeCommand: this.#o.subnetRemoveCommand,
      env: leaseEnv,
      stdin: leaseStdin,
      backoff: timing.leaseBackoff,
      maxParallel: timing.maxParallel,
    });
  }

  /** Runs PreStartupCommand; its stdout, trimmed, becomes the lease's BackendData string. */
  async prepare(): Promise<BackendLeaseData> {
    if (!this.#o.preStartupCommand) {
      log.info("no PreStartupCommand configured; the lease carries no BackendData");
      return {};
    }
    const stdout = await this.#startup("PreStartupCommand", this.#o.preStartupCommand, {});
    return { backendData: stdout.trim() };
  }

  /** Runs PostStartupCommand for our lease, then starts the per-lease commands. */
  async start(own: Lease): Promise<void> {
    this.#stop = new AbortController();
    if (this.#o.postStartupCommand) {
      await this.#startup(
        "PostStartupCommand",
        this.#o.postStartupCommand,
        postStartupEnv(this.ctx.network, own),
      );
    } else {
      log.info("no PostStartupCommand configured");
    }
    this.#leases.start();
  }

  /** Records the wanted state per lease; commands run in the background, never awaited here. */
  handle(events: LeaseEvent[]): Promise<void> {
    for (const ev of events) {
      const l = ev.lease;
      const key = subnetKey(l.subnet, l.ipv6Subnet);
      if (ev.type === "removed") {
        this.#ignored.clear(key);
        this.#leases.set(key, null);
        continue;
      }
      const type = l.attrs.backendType ?? "";
      const data = l.attrs.backendData;
      if (type !== EXTENSION_LEASE_TYPE) {
        this.#counts.ignored_leases++;
        this.#ignored.warn(key, "ignoring lease of another backend type", {
          subnet: describeLease(l),
          backend: type || "(none)",
          want: EXTENSION_LEASE_TYPE,
        });
      } else if (data !== undefined && typeof data !== "string") {
        // Upstream cannot decode it into a string either, and skips the lease.
        this.#counts.bad_leases++;
        this.#ignored.warn(key, "ignoring extension lease: BackendData is not a JSON string", {
          subnet: describeLease(l),
          backendData: data,
        });
      } else {
        this.#ignored.clear(key);
        this.#leases.set(key, l);
        continue;
      }
      this.#leases.set(key, null); // a lease that turned unusable is removed
    }
    return Promise.resolve();
  }

  /** Kills running commands and drops pending retries; kernel state stays. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#leases.stop();
  }

  stats(): Record<string, number> {
    return { ...this.#exec.counts, ...this.#counts, peers: this.#leases.applied };
  }

  /**
   * Runs a startup command until it succeeds, at most `startupAttempts` times; returns its
   * stdout, or throws with its status and output (start-up then fails, as upstream's).
   */
  async #startup(name: string, command: string, env: Record<string, string>): Promise<string> {
    const backoff = new Backoff(this.timing.startupBackoff);
    for (let attempt = 1;; attempt++) {
      const out = await this.#exec.run(command, env, "\n", this.#stop.signal, attempt > 1);
      const fields = this.#exec.describe(out);
      if (out.ok) {
        log.info(`ran ${name}`, fields);
        return out.result.stdout;
      }
      if (out.stopped) throw new Error(`${name} killed: the backend stopped`);
      if (attempt >= this.timing.startupAttempts) {
        const f = fields as Record<string, unknown>;
        throw new Error(
          `${name} failed ${attempt} times; last: ${f.status}` +
            (f.stdout ? `; stdout: ${f.stdout}` : "") + (f.stderr ? `; stderr: ${f.stderr}` : ""),
        );
      }
      const delay = backoff.next();
      log.warn(`${name} failed; retrying in ${delay / 1000} s`, { attempt, ...fields });
      if (!await sleep(delay, this.#stop.signal)) {
        throw new Error(`${name} abandoned: the backend stopped`);
      }
    }
  }
}

/** The extension backend type. */
export const extensionBackend: BackendKind<ExtensionOptions> = {
  parse: parseExtensionOptions,
  create: (ctx) => new ExtensionBackend(ctx),
};
