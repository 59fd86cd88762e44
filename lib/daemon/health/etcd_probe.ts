/**
 * An active etcd liveness probe: a cheap unary Get of the config key every few seconds,
 * each with a short deadline. etcd's own progress notifications come every 10 minutes and
 * a half-open TCP connection can keep a watch stream "connected" for much longer, so
 * readiness needs its own evidence that etcd answers.
 * @module
 */

import type { Etcd3 } from "etcd3";
import { logger } from "../../core/log.ts";

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
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #failing = false;

  constructor(
    private readonly client: Etcd3,
    private readonly key: string,
    o: EtcdProbeOptions = {},
  ) {
    this.#interval = o.intervalMs ?? 2000;
    this.#timeout = o.timeoutMs ?? 2000;
  }

  /** Starts probing (the first probe runs at once). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#loop();
  }

  /** Stops probing. */
  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      await this.probeOnce();
      if (!this.#running) return;
      await new Promise((r) => this.#timer = setTimeout(r, this.#interval));
    }
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
      const get = this.client.get(this.key).options({ deadline: Date.now() + this.#timeout })
        .buffer();
      get.catch(() => {}); // a late rejection after the timeout won is expected
      await Promise.race([get, timeout]);
      this.stats.lastOkAt = Date.now();
      if (this.#failing) {
        this.#failing = false;
        log.info("etcd answers again");
      }
      return true;
    } catch (e) {
      this.stats.failures++;
      this.stats.lastFailAt = Date.now();
      this.stats.lastError = (e as Error).message;
      if (!this.#failing) {
        this.#failing = true;
        log.warn("etcd probe failed", { key: this.key, error: e });
      }
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}
