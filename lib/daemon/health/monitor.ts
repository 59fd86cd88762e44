/**
 * Ties the running daemon's state and the etcd probe to the readiness rules: the one place
 * that answers "is this node ready, and if not, why", for `/readyz`, `/metrics` and the
 * systemd watchdog alike.
 * @module
 */

import type { DaemonState } from "../daemon.ts";
import type { EtcdProbe } from "./etcd_probe.ts";
import {
  DEFAULT_LIMITS,
  type ReadinessInput,
  type ReadinessLimits,
  readinessProblems,
} from "./readiness.ts";

/** The daemon state health reads (`rulesInPlace` undefined: rules not managed). */
export type HealthState = DaemonState;

/** Evaluates readiness on demand. */
export class HealthMonitor {
  readonly startedAt = Date.now();

  constructor(
    readonly state: HealthState,
    readonly probe: EtcdProbe | null,
    private readonly limits: ReadinessLimits = DEFAULT_LIMITS,
  ) {}

  /** The snapshot readiness is judged on. */
  snapshot(now = Date.now()): ReadinessInput {
    const w = this.state.watcher?.stats;
    return {
      now,
      startedAt: this.startedAt,
      lease: this.state.manager?.lease,
      subnetEnvWritten: this.state.subnetEnvWritten,
      rulesInPlace: this.state.rulesInPlace,
      watch: w ? { connected: w.connected, lastResponseAt: w.lastResponseAt } : undefined,
      etcdLastAnswerAt: Math.max(this.probe?.stats.lastOkAt ?? 0, w?.lastResponseAt ?? 0),
      backendProblems: this.state.backend?.problems?.(),
    };
  }

  /** Reasons the node is not ready; empty when ready. */
  problems(now = Date.now()): string[] {
    return readinessProblems(this.snapshot(now), this.limits);
  }

  /** Whether `/readyz` answers 200. */
  ready(): boolean {
    return this.problems().length === 0;
  }
}
