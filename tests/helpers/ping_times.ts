/**
 * A timestamped ping (`ping -D`) for measuring outages: when each reply came, so a test can
 * tell when traffic stopped and when it was back, to the ping interval.
 * @module
 */

import { nsExec } from "./netns.ts";

/** Reply times of one `ping -D` run. */
export interface PingTimes {
  sent: number;
  /** Arrival of each reply, ms since epoch (the same clock as Date.now()). */
  replies: number[];
  /** icmp_seq of each reply, in arrival order. */
  seqs: number[];
  output: string;
}

/** Pings `toIp` from `ns` every `intervalS` for `seconds`; never throws on loss. */
export async function pingTimes(
  ns: string,
  toIp: string,
  seconds: number,
  intervalS = 0.05,
): Promise<PingTimes> {
  const r = await nsExec(ns, "ping", [
    "-n",
    "-D",
    "-i",
    String(intervalS),
    "-W",
    "1",
    "-w",
    String(seconds),
    toIp,
  ], {
    timeoutMs: (seconds + 5) * 1000,
  });
  const output = r.stdout + r.stderr;
  const sent = Number(/(\d+) packets transmitted/.exec(output)?.[1] ?? 0);
  const lines = [...output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)/gm)];
  const replies = lines.map((m) => Math.round(Number(m[1]) * 1000));
  const seqs = lines.map((m) => Number(m[2]));
  return { sent, replies, seqs, output };
}

/** The first reply at or after `t` (ms since epoch), or null. */
export function firstReplyAfter(p: PingTimes, t: number): number | null {
  return p.replies.find((x) => x >= t) ?? null;
}

/** The longest time without a reply between the first and the last one (ms). */
export function longestGap(p: PingTimes): number {
  let gap = 0;
  for (let i = 1; i < p.replies.length; i++) gap = Math.max(gap, p.replies[i] - p.replies[i - 1]);
  return gap;
}

/**
 * Echoes lost between the first and the last reply (their icmp_seq): loss in mid-run,
 * unlike `sent - replies`, which also counts the echoes cut off by the deadline.
 */
export function missingSeqs(p: PingTimes): number[] {
  if (p.seqs.length === 0) return [];
  const got = new Set(p.seqs);
  const out = [];
  for (let s = Math.min(...p.seqs); s <= Math.max(...p.seqs); s++) if (!got.has(s)) out.push(s);
  return out;
}
