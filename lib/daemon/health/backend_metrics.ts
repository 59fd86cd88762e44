/**
 * Maps a backend's flat `stats()` counters onto Prometheus families. The mapping is small
 * and fixed so dashboards can rely on it (all families carry `backend="<type>"`):
 *
 * | stats() key               | metric                                                        |
 * |---------------------------|---------------------------------------------------------------|
 * | `tx_packets`, `rx_packets`| `flannel_backend_packets_total{direction="tx"\|"rx"}`          |
 * | `tx_bytes`, `rx_bytes`    | `flannel_backend_bytes_total{direction}`                      |
 * | `tx_batches`, `rx_batches`| `flannel_backend_batches_total{direction}`                    |
 * | `<dir>_drop_<reason>`     | `flannel_backend_dropped_packets_total{direction,reason}`     |
 * | `repairs_<kind>`          | `flannel_backend_repairs_total{kind}` (`repairs`, their sum, is dropped then) |
 * | `peers`                   | `flannel_backend_peers` (gauge)                               |
 * | `peers_ipv4`, `peers_ipv6`| `flannel_backend_peers_by_family{family="ipv4"\|"ipv6"}` (gauge) |
 * | anything else `<k>`       | `flannel_backend_<k>_total` (counter)                         |
 * @module
 */

import type { Family } from "./prometheus.ts";
import { sanitizeName } from "./prometheus.ts";

/** stats() keys that are levels, not counts. */
const GAUGES: Record<string, string> = { peers: "Remote peers programmed into the data path." };

interface Rule {
  re: RegExp;
  name: string;
  help: string;
  labels: (m: RegExpMatchArray) => Record<string, string>;
}

/** Levels with a label, by key. */
const GAUGE_RULES: Rule[] = [
  {
    re: /^peers_(ipv4|ipv6)$/,
    name: "flannel_backend_peers_by_family",
    help: "Remote peers programmed into the data path in each address family.",
    labels: (m) => ({ family: m[1] }),
  },
];

const RULES: Rule[] = [
  {
    re: /^(tx|rx)_(packets|bytes|batches)$/,
    name: "", // filled from the match: flannel_backend_<packets|bytes|batches>_total
    help:
      "Data path packets, bytes or batches by direction (tx: overlay to underlay, rx: underlay to overlay).",
    labels: (m) => ({ direction: m[1] }),
  },
  {
    re: /^(tx|rx)_drop_(.+)$/,
    name: "flannel_backend_dropped_packets_total",
    help: "Packets dropped by the data path, by direction and reason.",
    labels: (m) => ({ direction: m[1], reason: m[2] }),
  },
  {
    re: /^repairs_(.+)$/,
    name: "flannel_backend_repairs_total",
    help: "Kernel state the reconciler had to repair, by kind.",
    labels: (m) => ({ kind: m[1] }),
  },
];

/** Families for one backend's stats; `type` is the backend type (`udp`, `vxlan`…). */
export function backendFamilies(type: string, stats: Record<string, number>): Family[] {
  const fams = new Map<string, Family>();
  const add = (
    name: string,
    help: string,
    kind: Family["type"],
    labels: Record<string, string>,
    value: number,
  ) => {
    let f = fams.get(name);
    if (!f) fams.set(name, f = { name, help, type: kind, samples: [] });
    f.samples.push({ labels: { backend: type, ...labels }, value });
  };
  const hasKinds = Object.keys(stats).some((k) => k.startsWith("repairs_"));
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value !== "number") continue;
    if (key === "repairs" && hasKinds) continue; // the sum of repairs_<kind>: sum() gives it
    if (key in GAUGES) {
      add(`flannel_backend_${sanitizeName(key)}`, GAUGES[key], "gauge", {}, value);
      continue;
    }
    const gaugeRule = GAUGE_RULES.find((r) => r.re.test(key));
    if (gaugeRule) {
      add(
        gaugeRule.name,
        gaugeRule.help,
        "gauge",
        gaugeRule.labels(key.match(gaugeRule.re)!),
        value,
      );
      continue;
    }
    const rule = RULES.find((r) => r.re.test(key));
    if (rule) {
      const m = key.match(rule.re)!;
      add(
        rule.name || `flannel_backend_${m[2]}_total`,
        rule.help,
        "counter",
        rule.labels(m),
        value,
      );
    } else {
      add(
        `flannel_backend_${sanitizeName(key)}_total`,
        `Backend counter ${key}.`,
        "counter",
        {},
        value,
      );
    }
  }
  return [...fams.values()];
}
