/**
 * The benchmark's output: plain-text tables for stdout and the JSON document written to
 * `bench/results/`.
 * @module
 */

import type { CpResult } from "./control_plane.ts";
import type { PathResult } from "./measure.ts";

/** One data-path row: measured, not available here, or failed. */
export interface PathRow {
  id: string;
  label: string;
  reference: boolean;
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

/** Ratio table of our measured rows against the measured references. */
export function ratioTable(rows: PathRow[]): string {
  const refs = rows.filter((r) => r.reference && r.result);
  const ours = rows.filter((r) => !r.reference && r.result);
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

/** The control-plane table. */
export function controlPlaneTable(results: CpResult[]): string {
  const rows = results.flatMap((c) => [
    ...c.rounds.map((r) => [
      c.backend,
      String(r.peers),
      r.parallel === 1 ? "one by one" : `${r.parallel} in flight`,
      r.allProgrammedMs === null ? `incomplete (${r.missing} missing)` : num(r.allProgrammedMs, 1),
      num(r.p50Ms, 2),
      num(r.p99Ms, 2),
      num(r.writeMs, 0),
      r.lagMs === null ? "-" : num(r.lagMs, 1),
    ]),
    [
      `  ${c.backend}: programmed = ${c.method}; daemon RSS idle ${fmtMiB(c.rssIdleKiB)}, ` +
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
