/**
 * `/metrics`: the daemon's counters and levels as Prometheus families, read from the
 * running daemon's state at scrape time (nothing is accumulated here).
 * @module
 */

import { formatIP4, formatIP6 } from "../../core/ip.ts";
import { describeLease } from "../../values/lease.ts";
import { VERSION } from "../../core/version.ts";
import { backendFamilies } from "./backend_metrics.ts";
import type { HealthMonitor } from "./monitor.ts";
import { type Family, formatFamilies } from "./prometheus.ts";

const counter = (name: string, help: string, value: number | undefined): Family => ({
  name,
  help,
  type: "counter",
  samples: value === undefined ? [] : [{ value }],
});

const gauge = (
  name: string,
  help: string,
  value: number | undefined,
  labels?: Record<string, string>,
): Family => ({
  name,
  help,
  type: "gauge",
  samples: value === undefined ? [] : [{ value, labels }],
});

/** Collects every family from the monitor's daemon state and probe. */
export function collect(m: HealthMonitor, now = Date.now()): Family[] {
  const { state, probe } = m;
  const lease = state.manager?.lease ?? undefined;
  const ls = state.manager?.stats;
  const ws = state.watcher?.stats;
  const problems = m.problems(now);
  const lastAnswer = m.snapshot(now).etcdLastAnswerAt;
  const b = state.backend;
  const backendType = state.config?.backendType ?? "";
  const leaseInfo = lease && {
    subnet: describeLease(lease),
    public_ip: formatIP4(lease.attrs.publicIP),
    ...(lease.attrs.publicIPv6 !== null ? { public_ipv6: formatIP6(lease.attrs.publicIPv6) } : {}),
    backend: backendType,
  };
  return [
    gauge("flannel_build_info", "Version of this flanneld.", 1, { version: VERSION }),
    gauge("flannel_ready", "1 when /readyz answers 200.", problems.length === 0 ? 1 : 0),
    gauge(
      "flannel_subnet_env_written",
      "1 once subnet.env has been written.",
      state.subnetEnvWritten ? 1 : 0,
    ),
    gauge(
      "flannel_lease_info",
      "The subnet lease held (value 1; the subnet is a label).",
      leaseInfo ? 1 : undefined,
      leaseInfo,
    ),
    gauge(
      "flannel_lease_expiry_timestamp_seconds",
      "When the lease expires (Unix time); absent for a reservation, which never expires.",
      lease?.expiration ? lease.expiration / 1000 : undefined,
    ),
    counter("flannel_lease_renewals_total", "Successful lease renewals.", ls?.renewals),
    counter(
      "flannel_lease_renew_failures_total",
      "Failed lease renewal attempts.",
      ls?.renewFailures,
    ),
    counter(
      "flannel_lease_losses_total",
      "Times our lease was deleted, expired or taken.",
      ls?.losses,
    ),
    counter(
      "flannel_lease_regains_total",
      "Lost leases regained on the same subnet.",
      ls?.regained,
    ),
    counter(
      "flannel_lease_subnet_changes_total",
      "Lost leases replaced by a different subnet.",
      ls?.subnetChanges,
    ),
    counter(
      "flannel_watch_events_total",
      "etcd watch events received on the lease prefix.",
      ws?.events,
    ),
    counter("flannel_watch_reconnects_total", "Watch stream re-establishments.", ws?.reconnects),
    counter(
      "flannel_watch_relists_total",
      "Full lease listings (start, compaction, subnet change).",
      ws?.relists,
    ),
    counter(
      "flannel_watch_compactions_total",
      "Watches cancelled because the revision was compacted.",
      ws?.compactions,
    ),
    counter(
      "flannel_watch_stalls_total",
      "Watch streams dropped for not answering progress requests.",
      ws?.stalls,
    ),
    counter("flannel_watch_bad_leases_total", "Unusable lease keys or values seen.", ws?.badLeases),
    gauge(
      "flannel_watch_last_event_age_seconds",
      "Seconds since the last watch event; absent before the first one.",
      ws?.lastEventAt ? (now - ws.lastEventAt) / 1000 : undefined,
    ),
    gauge(
      "flannel_watch_connected",
      "1 while the watch stream is established.",
      ws ? (ws.connected ? 1 : 0) : undefined,
    ),
    gauge(
      "flannel_peers_known",
      "Remote leases known from the watch.",
      state.watcher?.leases().length,
    ),
    gauge(
      "flannel_iptables_rules_in_place",
      "1 when the managed iptables/nftables rules were complete at the last resync.",
      state.rulesInPlace === undefined ? undefined : state.rulesInPlace ? 1 : 0,
    ),
    counter(
      "flannel_iptables_restorations_total",
      "Times missing or altered rules were put back.",
      state.rules?.restorations,
    ),
    counter("flannel_etcd_probes_total", "Liveness probes sent to etcd.", probe?.stats.probes),
    counter(
      "flannel_etcd_probe_failures_total",
      "Liveness probes etcd did not answer in time.",
      probe?.stats.failures,
    ),
    gauge(
      "flannel_etcd_last_answer_age_seconds",
      "Seconds since etcd last answered a probe or the watch.",
      lastAnswer ? (now - lastAnswer) / 1000 : undefined,
    ),
    ...(b ? backendFamilies(backendType, b.stats()) : []),
  ];
}

/** The `/metrics` body. */
export function renderMetrics(m: HealthMonitor, now = Date.now()): string {
  return formatFamilies(collect(m, now));
}
