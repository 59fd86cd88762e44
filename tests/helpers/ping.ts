/**
 * `ping` from inside a namespace, with its summary parsed into loss and RTTs.
 * @module
 */

import { nsExec } from "./netns.ts";

/** Options for {@link ping}. */
export interface PingOptions {
  /** Echo requests to send (default 3). */
  count?: number;
  /** Seconds to wait for each reply (default 2). */
  timeout?: number;
  /** Seconds between requests (default 0.2; below that needs root). */
  interval?: number;
  /** Keep every reply's RTT in {@link PingResult.samples} (default false: summary only). */
  samples?: boolean;
}

/** What one `ping` run saw. */
export interface PingResult {
  /** At least one reply arrived. */
  ok: boolean;
  sent: number;
  received: number;
  /** Fraction of requests lost, 0..1. */
  loss: number;
  /** Round-trip times in ms, null without replies. */
  rtt: { min: number; avg: number; max: number } | null;
  /** Each reply's RTT in ms, in arrival order; empty unless asked for with `samples`. */
  samples: number[];
  /** ping's own output, for failure messages. */
  output: string;
}

/**
 * Parses the summary lines of `ping` and the `time=` of any per-reply lines: iputils'
 * ("3 received", "rtt min/avg/max/mdev = a/b/c/d ms") or BusyBox's, as in a container
 * ("3 packets received", "round-trip min/avg/max = a/b/c ms").
 */
export function parsePing(output: string): Omit<PingResult, "output"> {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  const sent = counts ? Number(counts[1]) : 0;
  const received = counts ? Number(counts[2]) : 0;
  const r = /= ([\d.]+)\/([\d.]+)\/([\d.]+)[/ ]/.exec(output);
  return {
    ok: received > 0,
    sent,
    received,
    loss: sent ? (sent - received) / sent : 1,
    rtt: r ? { min: Number(r[1]), avg: Number(r[2]), max: Number(r[3]) } : null,
    samples: [...output.matchAll(/ time=([\d.]+) ms/g)].map((m) => Number(m[1])),
  };
}

/** Pings `toIp` from namespace `fromNs`; bounded by a deadline, never throws on loss. */
export async function ping(
  fromNs: string,
  toIp: string,
  opts: PingOptions = {},
): Promise<PingResult> {
  const count = opts.count ?? 3;
  const timeout = opts.timeout ?? 2;
  const interval = opts.interval ?? 0.2;
  const deadline = Math.ceil(count * interval + timeout);
  const r = await nsExec(fromNs, "ping", [
    "-n",
    ...(opts.samples ? [] : ["-q"]),
    "-c",
    String(count),
    "-i",
    String(interval),
    "-W",
    String(timeout),
    "-w",
    String(deadline),
    toIp,
  ], { timeoutMs: (deadline + 5) * 1000 });
  const output = r.stdout + r.stderr;
  return { ...parsePing(output), output };
}

/** Maps `fn` over `items` with at most `limit` calls in flight; results keep input order. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Something to ping from and to: a namespace and an address in it. */
export interface Endpoint {
  name: string;
  ns: string;
  ip: string;
}

/** The result of pinging `to` from `from`. */
export interface PingPair {
  from: Endpoint;
  to: Endpoint;
  result: PingResult;
}

/** Pings `toIp` from endpoint `from`: {@link ping} in its namespace, or another way in. */
export type Pinger = (from: Endpoint, toIp: string, opts?: PingOptions) => Promise<PingResult>;

/**
 * Pings every endpoint from every other one, a few at a time; `pinger` says how (default
 * iputils `ping` in the endpoint's namespace).
 */
export function pingPairs(
  eps: Endpoint[],
  opts?: PingOptions,
  limit = 8,
  pinger: Pinger = (from, toIp, o) => ping(from.ns, toIp, o),
): Promise<PingPair[]> {
  const pairs = eps.flatMap((from) => eps.filter((to) => to !== from).map((to) => ({ from, to })));
  return mapLimit(
    pairs,
    limit,
    async (p) => ({ ...p, result: await pinger(p.from, p.to.ip, opts) }),
  );
}

/** A from × to table of average RTTs (ms), `FAIL` for pairs without any reply. */
export function formatPingMatrix(pairs: PingPair[]): string {
  const names = [...new Set(pairs.flatMap((p) => [p.from.name, p.to.name]))];
  const cell = (from: string, to: string) => {
    const p = pairs.find((x) => x.from.name === from && x.to.name === to);
    if (!p) return "-";
    const { result: r } = p;
    if (!r.ok) return "FAIL";
    return `${r.rtt!.avg.toFixed(3)}${r.loss > 0 ? `(${Math.round(r.loss * 100)}%)` : ""}`;
  };
  const rows = [["from\\to", ...names], ...names.map((f) => [f, ...names.map((t) => cell(f, t))])];
  const w = Math.max(...rows.flat().map((s) => s.length)) + 1;
  return rows.map((r) => r.map((s) => s.padStart(w)).join("")).join("\n");
}

/** One line: pairs answered, pairs with loss, mean RTT over the pairs that answered. */
export function formatPingSummary(pairs: PingPair[]): string {
  const failed = pairs.filter((p) => !p.result.ok).length;
  const lossy = pairs.filter((p) => p.result.ok && p.result.loss > 0).length;
  const rtts = pairs.filter((p) => p.result.rtt).map((p) => p.result.rtt!.avg);
  const avg = rtts.reduce((a, b) => a + b, 0) / (rtts.length || 1);
  return `${pairs.length - failed}/${pairs.length} pairs answered` +
    (lossy ? `, ${lossy} with some loss` : "") + `; mean RTT ${avg.toFixed(3)} ms`;
}
