/**
 * An active etcd liveness probe: a cheap unary Get of the config key every few seconds,
 * each with a short deadline. etcd's own progress notifications come every 10 minutes and
 * a half-open TCP connection can keep a watch stream "connected" for much longer, so
 * readiness needs its own evidence that etcd answers.
 * @module
 */

import { FailureLog, sleep } from "../../core/async.ts";
import { logger } from "../../core/log.ts";
import type { SubnetRegistry } from "../../subnet/registry.ts";

const log = logger("health");

/** Tunables of {@link EtcdProbe}. */
export interface EtcdProbeOptions {
  /** Time between probes (default 2000 ms). */
  intervalMs?: number;
  /** A probe not answered within this is a failure (default 2000 ms). */
  timeoutMs?: number;
}

/** Probe outcome counters, for readiness and metrics. */
export interface EtcdProbeStats {
  probes: number;
  failures: number;
  /** Last successful probe, ms since epoch (0: none yet). */
  lastOkAt: number;
  /** Last failure, ms since epoch (0: none). */
  lastFailAt: number;
  lastError: string;
}

/** Periodically reads `key` from etcd and records whether etcd answered. */
export class EtcdProbe {
  readonly stats: EtcdProbeStats = {
    probes: 0,
    failures: 0,
    lastOkAt: 0,
    lastFailAt: 0,
    lastError: "",
  };
  readonly #interval: number;
  readonly #timeout: number;
  readonly #failures = new FailureLog(log, "etcd answers again");
  #stop = new AbortController();
  #running = false;

  /** @param registry whose config key is read (over its own connection: see start.ts) */
  constructor(private readonly registry: SubnetRegistry, o: EtcdProbeOptions = {}) {
    this.#interval = o.intervalMs ?? 2000;
    this.#timeout = o.timeoutMs ?? 2000;
  }

  /** Starts probing (the first probe runs at once). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stop = new AbortController();
    void this.#loop();
  }

  /** Stops probing. */
  stop(): void {
    this.#running = false;
    this.#stop.abort();
  }

  async #loop(): Promise<void> {
    do await this.probeOnce(); while (await sleep(this.#interval, this.#stop.signal));
  }

  /** Runs one probe; resolves true when etcd answered in time. Never throws. */
  async probeOnce(): Promise<boolean> {
    this.stats.probes++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#timeout} ms`)),
        this.#timeout,
      );
    });
    try {
      // The race bounds the probe even when the client's retry policy re-issues the call.
      const get = this.registry.getConfig(this.#timeout);
      get.catch(() => {}); // a late rejection after the timeout won is expected
      await Promise.race([get, timeout]);
      this.stats.lastOkAt = Date.now();
      this.#failures.ok();
      return true;
    } catch (e) {
      this.stats.failures++;
      this.stats.lastFailAt = Date.now();
      this.stats.lastError = (e as Error).message;
      this.#failures.failed("etcd probe failed", { key: this.registry.configKey, error: e });
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}
