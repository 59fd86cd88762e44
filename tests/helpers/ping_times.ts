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
  const replies = [...output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) =>
    Math.round(Number(m[1]) * 1000)
  );
  return { sent, replies, output };
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
