/**
 * The daemon's health server seen from inside its host namespace (curl there): any path,
 * and `/metrics` parsed strictly.
 * @module
 */

import { assertEquals } from "./assert.ts";
import type { Host } from "./cluster.ts";
import { nsExec } from "./netns.ts";
import { type ParsedFamily, parsePrometheus } from "./prometheus.ts";

/** GET `path` from the host's health server on `port`; status 0 when it does not answer. */
export async function healthGet(
  h: Host,
  port: number,
  path: string,
): Promise<{ status: number; body: string }> {
  const r = await nsExec(h.ns, "curl", [
    "-sS",
    "-m",
    "3",
    "-w",
    "\n%{http_code}",
    `http://127.0.0.1:${port}${path}`,
  ], { timeoutMs: 5000 });
  if (r.code !== 0) return { status: 0, body: r.stderr };
  const i = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

/** The host's `/metrics`, parsed; throws unless it answers 200. */
export async function scrapeMetrics(h: Host, port: number): Promise<Map<string, ParsedFamily>> {
  const r = await healthGet(h, port, "/metrics");
  assertEquals(r.status, 200, r.body);
  return parsePrometheus(r.body);
}
