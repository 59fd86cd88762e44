/**
 * The benchmark's output: plain-text tables for stdout and the JSON document written to
 * `bench/results/`.
 * @module
 */

import type { CpResult } from "./control_plane.ts";
import { lossSummary } from "./counters.ts";
import type { PathResult } from "./measure.ts";
import type { PathKind } from "./paths.ts";

/** One data-path row: measured, not available here, or failed. */
export interface PathRow {
  id: string;
  label: string;
  kind: PathKind;
  /** For an upstream row: the id of our row it is compared with. */
  counterpart?: string;
  /** "ok", or the reason there are no numbers ("n/a (backend not available)", "failed: …"). */
  status: string;
  result?: PathResult;
}

/** Left-aligns the first column, right-aligns the rest; a row of one cell is printed as is. */
export function formatTable(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.filter((r) => r.length > 1)];
  const w = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r.length === 1 ? r[0] : r.map((c, i) => i === 0 ? c.padEnd(w[i]) : c.padStart(w[i])).join("  ");
  return [line(header), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

const num = (x: number, digits: number) => Number.isFinite(x) ? x.toFixed(digits) : "-";

/** `9.41 Gb/s`, `812 Mb/s`. */
export function fmtBps(bps: number): string {
  return bps >= 1e9 ? `${num(bps / 1e9, 2)} Gb/s` : `${num(bps / 1e6, 0)} Mb/s`;
}

/** `123.4 kpps`. */
function fmtPps(pps: number): string {
  return `${num(pps / 1e3, 1)} kpps`;
}

function fmtMiB(kib: number | null | undefined): string {
  return kib == null ? "-" : `${num(kib / 1024, 1)} MiB`;
}

/** The data-path table. */
export function pathTable(rows: PathRow[]): string {
  const header = [
    "path",
    "TCP 1×",
    "retr",
    "TCP 4×",
    "UDP 64 B rx",
    "loss",
    "RTT p50",
    "p99 ms",
    "CPU s/GB",
    "peak RSS",
    "TUN drops",
  ];
  return formatTable(
    header,
    rows.map((r) => {
      const m = r.result;
      if (!m) return [`${r.label}: ${r.status}`];
      return [
        r.label,
        fmtBps(m.tcp1.bps),
        String(m.tcp1.retransmits),
        fmtBps(m.tcp4.bps),
        fmtPps(m.udp64.pps),
        `${num(m.udp64.loss * 100, 1)} %`,
        num(m.rtt.p50, 3),
        num(m.rtt.p99, 3),
        m.daemon ? num(m.daemon.cpuSecondsPerGB, 2) : "-",
        fmtMiB(m.daemon?.peakRssKiB),
        m.tunTxDropped === undefined ? "-" : String(m.tunTxDropped),
      ];
    }),
  );
}

/** Our rows' metrics as fractions of each reference's (RTT: ours ÷ reference, so > 1 is slower). */
export function ratios(row: PathRow, refs: PathRow[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const m = row.result;
  for (const ref of refs) {
    const r = ref.result;
    if (!m || !r) continue;
    out[ref.id] = {
      tcp1: m.tcp1.bps / r.tcp1.bps,
      tcp4: m.tcp4.bps / r.tcp4.bps,
      udp64pps: m.udp64.pps / r.udp64.pps,
      rttP50: m.rtt.p50 / r.rtt.p50,
    };
  }
  return out;
}

/** Ratio table of the daemons' measured rows (ours and upstream's) against the measured references. */
export function ratioTable(rows: PathRow[]): string {
  const refs = rows.filter((r) => r.kind === "reference" && r.result);
  const ours = rows.filter((r) => r.kind !== "reference" && r.result);
  if (!refs.length || !ours.length) return "(no ratios: needs a measured reference and backend)";
  const header = [
    "backend",
    ...refs.flatMap((r) => [`TCP 1× /${r.id}`, `TCP 4× /${r.id}`, `pps /${r.id}`, `RTT /${r.id}`]),
  ];
  return formatTable(
    header,
    ours.map((o) => {
      const rs = ratios(o, refs);
      return [o.label, ...refs.flatMap((r) => Object.values(rs[r.id]).map((x) => `${num(x, 3)}×`))];
    }),
  );
}

/** `vxlan`, or `upstream vxlan` for upstream's daemon. */
function cpName(c: CpResult): string {
  return c.daemon === "upstream" ? `upstream ${c.backend}` : c.backend;
}

/** Ours ÷ upstream on the control plane, per backend and round: time, latency and memory. */
export function controlPlaneRatioTable(results: CpResult[]): string {
  const rows: string[][] = [];
  for (const o of results.filter((c) => c.daemon === "ours")) {
    const u = results.find((c) => c.daemon === "upstream" && c.backend === o.backend);
    if (!u) continue;
    for (const r of o.rounds) {
      const ur = u.rounds.find((x) => x.peers === r.peers && x.parallel === r.parallel);
      if (!ur) continue;
      const mode = r.parallel === 1 ? "one by one" : `${r.parallel} in flight`;
      // A daemon that missed leases has no comparable latency: say so instead of a ratio.
      const missed = [r, ur].map((x, i) =>
        x.missing ? `${i ? "upstream" : "ours"} missed ${x.missing}` : ""
      ).filter((x) => x).join(", ");
      rows.push(
        missed ? [o.backend, String(r.peers), mode, missed, "-", "-"] : [
          o.backend,
          String(r.peers),
          mode,
          `${num(r.allProgrammedMs! / ur.allProgrammedMs!, 2)}×`,
          `${num(r.p50Ms / ur.p50Ms, 2)}×`,
          `${num(r.p99Ms / ur.p99Ms, 2)}×`,
        ],
      );
    }
    rows.push([
      `  ${o.backend}: RSS idle ${
        num(o.rssIdleKiB / u.rssIdleKiB, 2)
      }×, with ${o.peakPeers} peers ${
        num((o.rssPeakPeersKiB ?? NaN) / (u.rssPeakPeersKiB ?? NaN), 2)
      }× upstream's`,
    ]);
  }
  if (!rows.length) return "(no upstream control-plane rows measured)";
  return formatTable(
    ["backend", "peers", "puts", "all programmed", "p50", "p99"],
    rows,
  );
}

/** The control-plane table. */
export function controlPlaneTable(results: CpResult[]): string {
  const rows = results.flatMap((c) => [
    ...c.rounds.map((r) => [
      cpName(c),
      String(r.peers),
      r.parallel === 1 ? "one by one" : `${r.parallel} in flight`,
      r.allProgrammedMs === null ? `incomplete (${r.missing} missing)` : num(r.allProgrammedMs, 1),
      num(r.p50Ms, 2),
      num(r.p99Ms, 2),
      num(r.writeMs, 0),
      r.lagMs === null ? "-" : num(r.lagMs, 1),
    ]),
    [
      `  ${cpName(c)}: programmed = ${c.method}; daemon RSS idle ${fmtMiB(c.rssIdleKiB)}, ` +
      `with ${c.peakPeers} peers ${fmtMiB(c.rssPeakPeersKiB)}`,
    ],
  ]);
  return formatTable(
    [
      "backend",
      "peers",
      "puts",
      "all programmed ms",
      "p50 ms",
      "p99 ms",
      "write ms",
      "lag after last put ms",
    ],
    rows,
  );
}

/** Ours ÷ upstream for one pair of rows: > 1 is better for throughput, worse for the rest. */
export function upstreamRatios(o: PathResult, u: PathResult): Record<string, number> {
  return {
    tcp1: o.tcp1.bps / u.tcp1.bps,
    tcp4: o.tcp4.bps / u.tcp4.bps,
    udp64pps: o.udp64.pps / u.udp64.pps,
    rttP50: o.rtt.p50 / u.rtt.p50,
    cpuPerGB: (o.daemon?.cpuSecondsPerGB ?? NaN) / (u.daemon?.cpuSecondsPerGB ?? NaN),
    peakRss: (o.daemon?.peakRssKiB ?? NaN) / (u.daemon?.peakRssKiB ?? NaN),
  };
}

/** Pairs of (upstream row, our row) that were both measured. */
export function upstreamPairs(rows: PathRow[]): [PathRow, PathRow][] {
  return rows.flatMap((u) => {
    const o = rows.find((r) => r.id === u.counterpart);
    return u.kind === "upstream" && u.result && o?.result ? [[u, o] as [PathRow, PathRow]] : [];
  });
}

/** Ours ÷ upstream's flanneld, backend by backend. */
export function upstreamTable(rows: PathRow[]): string {
  const pairs = upstreamPairs(rows);
  const skipped = rows.filter((r) => r.kind === "upstream" && !r.result)
    .map((r) => `${r.label}: ${r.status}`);
  if (!pairs.length) return skipped.join("\n") || "(no upstream rows measured)";
  const table = formatTable(
    ["backend", "TCP 1×", "TCP 4×", "UDP pps", "RTT p50", "CPU s/GB", "peak RSS"],
    pairs.map(([u, o]) => [
      o.label,
      ...Object.values(upstreamRatios(o.result!, u.result!)).map((x) => `${num(x, 2)}×`),
    ]),
  );
  return [table, ...skipped].join("\n");
}

/** Where the 64-byte UDP run lost its packets, by place, for every measured row. */
export function lossTable(rows: PathRow[]): string {
  const places = ["client", "h0", "h1", "server"];
  return formatTable(
    ["path", "loss", ...places.map((p) => `lost in ${p}`)],
    rows.filter((r) => r.result).map((r) => [
      r.label,
      `${num(r.result!.udp64.loss * 100, 1)} %`,
      ...places.map((p) => lossSummary(r.result!.udpLosses[p] ?? {})),
    ]),
  );
}

/** The daemons' memory after the TCP runs, split by kind (bench/memory.ts). */
export function memoryTable(rows: PathRow[]): string {
  const mib = (k: number) => num(k / 1024, 1);
  return formatTable(
    ["daemon", "peak RSS", "RSS", "exe code", "exe data", "files", "[heap]", "arenas", "anon"],
    rows.filter((r) => r.result?.daemon).map((r) => {
      const m = r.result!.daemon!.memory;
      return [
        r.label,
        mib(m.hwmKiB),
        mib(m.rssKiB),
        mib(m.exeCodeKiB),
        mib(m.exeDataKiB),
        mib(m.otherFilesKiB),
        mib(m.mainHeapKiB),
        mib(m.threadArenasKiB),
        mib(m.otherAnonKiB),
      ];
    }),
  );
}
