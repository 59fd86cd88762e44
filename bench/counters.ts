/**
 * Where packets are lost: kernel counters of every namespace on a path (client container,
 * sending host, receiving host, server container), read before and after a run, and the
 * differences that mean a drop. They stay valid on a busy machine, unlike rates:
 * - `/proc/net/snmp` Udp: RcvbufErrors (a socket's receive buffer was full), SndbufErrors,
 *   InErrors, NoPorts; Ip: InDiscards, OutDiscards;
 * - links (`ip -s link`): tx/rx dropped, e.g. a TUN's queue full when its reader lags
 *   (tx_dropped), or a veth's backlog full;
 * - for our udp daemon its own counters (`/metrics`: dropped packets by reason, TUN writes
 *   that found the queue full).
 * @module
 */

import { must, nsExec } from "../tests/helpers/netns.ts";
import { ipJSON } from "../tests/helpers/netlink_ns.ts";

/** Flat counters of one namespace: `Udp.RcvbufErrors`, `link.flannel0.tx_dropped`, … */
export type Counters = Record<string, number>;

/** Parses `/proc/net/snmp` (pairs of header and value lines) into `Proto.Field` counters. */
export function parseSnmp(text: string): Counters {
  const out: Counters = {};
  const lines = text.split("\n").filter((l) => l.includes(":"));
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [proto, names] = lines[i].split(":");
    const values = lines[i + 1].split(":")[1].trim().split(/\s+/);
    names.trim().split(/\s+/).forEach((n, j) => out[`${proto}.${n}`] = Number(values[j]));
  }
  return out;
}

/** Link statistics of every link in `ns` as `link.<name>.<rx|tx>_<field>`. */
async function linkCounters(ns: string): Promise<Counters> {
  const out: Counters = {};
  for (const l of await ipJSON(ns, "-s", "link", "show")) {
    for (const dir of ["rx", "tx"] as const) {
      for (const [k, v] of Object.entries(l.stats64?.[dir] ?? {})) {
        if (typeof v === "number") out[`link.${l.ifname}.${dir}_${k}`] = v;
      }
    }
  }
  return out;
}

/** The daemon's backend counters from its `/metrics` (our daemon with `--healthz-port`). */
export function parseBackendMetrics(text: string): Counters {
  const out: Counters = {};
  for (const line of text.split("\n")) {
    const m = /^flannel_backend_(\w+?)(?:_total)?(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = (m[2] ?? "").split(",").filter((x) => x && !x.startsWith("backend="))
      .map((x) => x.split("=")[1].replaceAll('"', ""));
    out[`daemon.${[m[1], ...labels].join(".")}`] = Number(m[3]);
  }
  return out;
}

/** Port of the health server the benchmark gives our daemons (inside each host namespace). */
export const BENCH_HEALTHZ_PORT = 8471;

/** Reads every counter of namespace `ns`; with `metrics`, also our daemon's in it. */
export async function snapshot(ns: string, metrics = false): Promise<Counters> {
  const snmp = parseSnmp(must(await nsExec(ns, "cat", ["/proc/net/snmp"]), `snmp in ${ns}`));
  const out = { ...snmp, ...await linkCounters(ns) };
  if (metrics) {
    const r = await nsExec(ns, "curl", [
      "-sf",
      "--max-time",
      "3",
      `http://127.0.0.1:${BENCH_HEALTHZ_PORT}/metrics`,
    ]);
    if (r.code === 0) Object.assign(out, parseBackendMetrics(r.stdout));
  }
  return out;
}

/** `after − before` for every counter that changed. */
export function delta(before: Counters, after: Counters): Counters {
  const out: Counters = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * Counter names that count a lost packet, the rest being traffic. (Udp InErrors is left out:
 * it is the sum of RcvbufErrors, InCsumErrors and other errors counted on their own.)
 */
export function isLoss(name: string): boolean {
  return /RcvbufErrors|SndbufErrors|NoPorts|InDiscards|OutDiscards|InCsumErrors|_dropped$|_errors$|dropped/
    .test(name);
}

/** The losses in `d` as `name n` items (`-` when none). */
export function lossSummary(d: Counters): string {
  const items = Object.entries(d).filter(([k, v]) => isLoss(k) && v > 0)
    .map(([k, v]) => `${k} ${v}`);
  return items.length ? items.join(", ") : "-";
}
