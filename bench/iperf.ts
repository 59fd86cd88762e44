/**
 * iperf3 inside network namespaces: bounded client runs (TCP with n streams, UDP at a fixed
 * packet size and target rate), each against its own one-test server, whose JSON report is
 * reduced to the few numbers the benchmark prints.
 * @module
 */

import { LineProcess } from "../tests/helpers/line_process.ts";
import { must, nsExec } from "../tests/helpers/netns.ts";

/** Where an iperf3 run goes: client namespace, server namespace and the server's address. */
export interface Endpoints {
  clientNs: string;
  serverNs: string;
  serverIp: string;
}

/** Starts a one-test server (`iperf3 -s -1`) in `ns` and waits until it listens. */
async function startServer(ns: string): Promise<LineProcess> {
  const server = new LineProcess(`iperf3 -s in ${ns}`, "ip", [
    "netns",
    "exec",
    ns,
    "iperf3",
    "-s",
    "-1",
    "--forceflush", // stdout is a pipe: without it the "listening" line sits in a buffer
  ]);
  try {
    await server.waitLine("Server listening", 10_000);
  } catch (e) {
    await server.kill();
    throw e;
  }
  return server;
}

/** One TCP run. */
export interface TcpResult {
  /** Received goodput, bits per second. */
  bps: number;
  /** Bytes the receiver got. */
  bytes: number;
  /** Sender-side TCP retransmissions. */
  retransmits: number;
}

/** One UDP run. */
export interface UdpResult {
  /** Datagrams per second sent by the client. */
  sentPps: number;
  /** Datagrams per second that arrived. */
  pps: number;
  /** Fraction lost, 0..1. */
  loss: number;
}

/**
 * Runs `iperf3 -c <server> -J <args>` against a fresh one-test server, bounded to the test
 * time plus 20 s; returns the report's `end`. Errors carry the server's output.
 */
async function client(e: Endpoints, seconds: number, args: string[]): Promise<any> {
  const argv = [
    "-c",
    e.serverIp,
    "-t",
    String(seconds),
    "-J",
    "--connect-timeout",
    "3000",
    ...args,
  ];
  const server = await startServer(e.serverNs);
  try {
    const r = await nsExec(e.clientNs, "iperf3", argv, { timeoutMs: (seconds + 20) * 1000 });
    let report: any;
    try {
      report = JSON.parse(r.stdout);
    } catch {
      must(r, `iperf3 ${argv.join(" ")}`);
    }
    if (!report?.end || report.error) {
      const out = server.takeLines().join("\n") + server.stderr;
      throw new Error(`iperf3 ${argv.join(" ")}: ${report?.error ?? "no report"}; server: ${out}`);
    }
    return report.end;
  } finally {
    await server.kill();
  }
}

/** TCP with `streams` parallel streams. */
export async function tcp(e: Endpoints, seconds: number, streams = 1): Promise<TcpResult> {
  const end = await client(e, seconds, ["-P", String(streams)]);
  return {
    bps: end.sum_received.bits_per_second,
    bytes: end.sum_received.bytes,
    retransmits: end.sum_sent.retransmits ?? 0,
  };
}

/** UDP with `size`-byte payloads at target `rate` (iperf3 `-b`, e.g. `100M`). */
export async function udp(
  e: Endpoints,
  seconds: number,
  size: number,
  rate: string,
): Promise<UdpResult> {
  const end = await client(e, seconds, ["-u", "-l", String(size), "-b", rate]);
  const sent = end.sum_sent;
  const got = end.sum_received ?? end.sum;
  return {
    sentPps: sent.packets / sent.seconds,
    pps: (got.packets - got.lost_packets) / got.seconds,
    loss: got.packets ? got.lost_packets / got.packets : 1,
  };
}
