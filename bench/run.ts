/**
 * `deno task bench`: data-path and control-plane benchmarks in the namespace test cluster.
 * Measures, one after the other, the hand-built references (raw underlay, kernel VXLAN) and
 * our backends (those the registry has), then the control plane; prints tables to stdout,
 * progress to stderr, and writes `bench/results/<date>-<host>.json`. Needs root.
 * @module
 */

import { backendKind } from "../lib/daemon/backends.ts";
import type { BackendType } from "../tests/helpers/cluster.ts";
import { benchControlPlane, type CpResult } from "./control_plane.ts";
import { measurePath } from "./measure.ts";
import { type BenchOptions, parseOptions, selected } from "./options.ts";
import { PATHS, type PathSpec, upstreamUnavailable } from "./paths.ts";
import { UPSTREAM_FLANNELD } from "../tests/helpers/upstream.ts";
import {
  controlPlaneRatioTable,
  controlPlaneTable,
  lossTable,
  memoryTable,
  type PathRow,
  pathTable,
  ratios,
  ratioTable,
  upstreamPairs,
  upstreamRatios,
  upstreamTable,
} from "./report.ts";

function progress(scope: string): (what: string) => void {
  return (what) =>
    console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${scope}: ${what}`);
}

function message(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

/** Opens, measures and destroys one path; failures become the row's status. */
async function measureRow(spec: PathSpec, o: BenchOptions): Promise<PathRow> {
  const row: PathRow = {
    id: spec.id,
    label: spec.label,
    kind: spec.kind,
    counterpart: spec.counterpart,
    status: "ok",
  };
  const na = spec.unavailable();
  if (na) return { ...row, status: na };
  const note = progress(spec.id);
  try {
    note("building cluster and path");
    const path = await spec.open();
    await using _cluster = path.cluster;
    row.result = await measurePath(path, o, note);
  } catch (e) {
    row.status = `failed: ${message(e)}`;
    note(row.status);
  }
  return row;
}

/** Control-plane backends: as asked, else every kernel-programming one we have, else udp. */
function cpBackends(o: BenchOptions): BackendType[] {
  if (o.cpBackends) return o.cpBackends as BackendType[];
  const kernel = (["vxlan", "host-gw"] as const).filter((b) => backendKind(b));
  return kernel.length ? [...kernel] : ["udp"];
}

async function main(): Promise<void> {
  const o = parseOptions(Deno.args);
  const started = new Date();
  const rows: PathRow[] = [];
  for (const spec of PATHS) if (selected(o, spec.id)) rows.push(await measureRow(spec, o));

  const cp: (CpResult | { backend: string; error: string })[] = [];
  const cpSkipped: string[] = [];
  const runCp = async (b: BackendType, upstream: boolean) => {
    const name = upstream ? `upstream ${b}` : b;
    const note = progress(`control plane (${name})`);
    try {
      const cmd = upstream ? [UPSTREAM_FLANNELD] : undefined;
      cp.push(await benchControlPlane(b, o.peerCounts, o.cpParallel, note, cmd));
    } catch (e) {
      note(`failed: ${message(e)}`);
      cp.push({ backend: name, error: message(e) });
    }
  };
  if (selected(o, "control-plane")) {
    for (const b of cpBackends(o)) await runCp(b, false);
  }
  if (selected(o, "upstream-control-plane")) {
    const na = upstreamUnavailable();
    if (na) cpSkipped.push(`upstream control plane: ${na}`);
    else for (const b of cpBackends(o)) if (b !== "udp") await runCp(b, true);
  }

  const host = Deno.hostname();
  console.log(
    `\nflanneld benchmark — ${started.toISOString()} on ${host}, ${navigator.hardwareConcurrency} CPUs, ` +
      `kernel ${Deno.osRelease()}, Deno ${Deno.version.deno}; ${o.seconds} s per iperf3 run, ` +
      `UDP target ${o.udpRate}, ${o.pings} pings at 10 ms\n`,
  );
  if (rows.length) {
    console.log(pathTable(rows));
    console.log(
      `\ndaemon ÷ reference (RTT: daemon ÷ reference, > 1 is slower)\n${ratioTable(rows)}`,
    );
    if (rows.some((r) => r.kind === "upstream")) {
      console.log(
        `\nours ÷ upstream flanneld (TCP, pps: > 1 is faster; RTT, CPU, RSS: < 1 is better)\n${
          upstreamTable(rows)
        }`,
      );
    }
    if (rows.some((r) => r.result)) {
      console.log(`\nwhere the ${o.udpRate} 64-byte UDP run lost packets\n${lossTable(rows)}`);
    }
    if (rows.some((r) => r.result?.daemon)) {
      console.log(
        `\ndaemon memory after the TCP runs, MiB (bench/memory.ts)\n${memoryTable(rows)}`,
      );
    }
  }
  const measured = cp.filter((c): c is CpResult => "rounds" in c);
  if (cp.length || cpSkipped.length) {
    console.log(
      `\ncontrol plane (1 daemon host; N peer leases put into etcd; latency = put sent → programmed)`,
    );
    if (measured.length) console.log(controlPlaneTable(measured));
    for (const c of cp) if ("error" in c) console.log(`${c.backend}: failed: ${c.error}`);
    for (const line of cpSkipped) console.log(line);
    if (measured.some((c) => c.daemon === "upstream")) {
      console.log(
        `\ncontrol plane, ours ÷ upstream (< 1 is faster / smaller)\n${
          controlPlaneRatioTable(measured)
        }`,
      );
    }
  }

  const refs = rows.filter((r) => r.kind === "reference");
  const doc = {
    date: started.toISOString(),
    host,
    cpus: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    options: { ...o, only: o.only ? [...o.only] : null },
    paths: rows.map((r) => ({
      ...r,
      ratios: r.kind === "reference" ? undefined : ratios(r, refs),
    })),
    oursOverUpstream: Object.fromEntries(
      upstreamPairs(rows).map(([u, o]) => [o.id, upstreamRatios(o.result!, u.result!)]),
    ),
    controlPlane: cp,
  };
  await Deno.mkdir(o.outDir, { recursive: true });
  const file = `${o.outDir}/${started.toISOString().replace(/[:.]/g, "-")}-${host}.json`;
  await Deno.writeTextFile(file, JSON.stringify(doc, null, 2) + "\n");
  console.log(`\nresults: ${file}`);
}

await main();
