/**
 * Readiness as a pure function of a snapshot, so the rules are unit-tested without a
 * daemon. Ready means the node is actually routable: it holds a fresh lease, it follows
 * the other hosts' leases over a live watch, etcd answers, subnet.env is written, the
 * iptables rules (when managed) are in place and the backend reports no problem (e.g. the
 * cloud backends' own route in place). Upstream's `/readyz` only checks the last
 * two once, at start (flannel#616, #722).
 * @module
 */

import { describeLease, type Lease } from "../../values/lease.ts";

/** What readiness is judged on; times in ms since epoch. */
export interface ReadinessInput {
  now: number;
  /** When the process started; stands in for "last answer" before etcd ever answered. */
  startedAt: number;
  lease: Lease | null | undefined;
  subnetEnvWritten: boolean;
  /** undefined: rules not managed by us (no `--ip-masq` or not wired yet). */
  rulesInPlace?: boolean;
  /** undefined: the watch has not started. */
  watch?: { connected: boolean; lastResponseAt: number };
  /** Last time etcd answered anything (probe or watch); 0 when never. */
  etcdLastAnswerAt: number;
  /** The backend's own reasons (`Backend.problems()`); absent or empty when it has none. */
  backendProblems?: readonly string[];
}

/** Bounds of the liveness checks. */
export interface ReadinessLimits {
  /** etcd silent longer than this → not ready (default 10 s). */
  etcdSilenceMs: number;
  /** A disconnected watch is tolerated this long after its last answer (default 3 s: reconnects after a compaction are quick). */
  watchDisconnectGraceMs: number;
  /** A connected watch that has not answered this long is stalled (default 15 s: 3 missed progress answers). */
  watchSilenceMs: number;
}

/** Defaults used by the daemon. */
export const DEFAULT_LIMITS: ReadinessLimits = {
  etcdSilenceMs: 10_000,
  watchDisconnectGraceMs: 3_000,
  watchSilenceMs: 15_000,
};

const secs = (ms: number) => Math.floor(ms / 1000);

/** Why the node is not ready, one human-readable reason each; empty when ready. */
export function readinessProblems(
  i: ReadinessInput,
  lim: ReadinessLimits = DEFAULT_LIMITS,
): string[] {
  const out: string[] = [];
  if (!i.lease) out.push("no subnet lease yet");
  else if (i.lease.expiration && i.now >= i.lease.expiration) {
    out.push(
      `lease on ${describeLease(i.lease)} expired ${secs(i.now - i.lease.expiration)} s ago`,
    );
  }
  const silent = i.now - (i.etcdLastAnswerAt || i.startedAt);
  if (silent > lim.etcdSilenceMs) out.push(`etcd not answering for ${secs(silent)} s`);
  if (!i.watch) out.push("lease watch not started");
  else {
    const quiet = i.now - (i.watch.lastResponseAt || i.startedAt);
    if (!i.watch.connected && quiet > lim.watchDisconnectGraceMs) {
      out.push(`lease watch disconnected (last answer ${secs(quiet)} s ago)`);
    } else if (i.watch.connected && quiet > lim.watchSilenceMs) {
      out.push(`lease watch silent for ${secs(quiet)} s`);
    }
  }
  if (!i.subnetEnvWritten) out.push("subnet.env not written yet");
  if (i.rulesInPlace === false) out.push("iptables rules not in place");
  if (i.backendProblems) out.push(...i.backendProblems);
  return out;
}
