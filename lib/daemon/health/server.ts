/**
 * The health server (`--healthz-ip`/`--healthz-port`; upstream answers
 * `/healthz` with 200 `flanneld is running`, and since v0.28.9 `/readyz`): `/healthz` says the
 * process runs (as upstream: any method), `/readyz` says the node is actually usable and
 * otherwise why not, `/metrics` serves Prometheus text.
 * @module
 */

import { logger } from "../../core/log.ts";
import { renderMetrics } from "./metrics.ts";
import type { HealthMonitor } from "./monitor.ts";
import { CONTENT_TYPE } from "./prometheus.ts";

const log = logger("health");
const TEXT = { "content-type": "text/plain; charset=utf-8" };

/** Answers one request; exported for tests that skip the socket. */
export function handle(req: Request, m: HealthMonitor): Response {
  const path = new URL(req.url).pathname;
  switch (path) {
    case "/healthz":
      return new Response("flanneld is running", { headers: TEXT });
    case "/readyz": {
      const problems = m.problems();
      if (problems.length === 0) return new Response("flanneld is ready", { headers: TEXT });
      return new Response(`flanneld is not ready yet\n${problems.join("\n")}\n`, {
        status: 503,
        headers: TEXT,
      });
    }
    case "/metrics":
      return new Response(renderMetrics(m), { headers: { "content-type": CONTENT_TYPE } });
    default:
      return new Response("not found; try /healthz, /readyz or /metrics\n", {
        status: 404,
        headers: TEXT,
      });
  }
}

/** Listens on `hostname:port` until the returned server is shut down. */
export function startHealthServer(
  hostname: string,
  port: number,
  m: HealthMonitor,
): Deno.HttpServer {
  return Deno.serve({
    hostname,
    port,
    onListen: (addr) =>
      log.info("health server listening", { addr: `${addr.hostname}:${addr.port}` }),
    onError: (e) => {
      log.error("health request failed", { error: e });
      return new Response("internal error\n", { status: 500, headers: TEXT });
    },
  }, (req) => handle(req, m));
}
