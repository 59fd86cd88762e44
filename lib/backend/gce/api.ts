/**
 * The gce backend's calls: the metadata server (`Metadata-Flavor: Google`) for project,
 * zone, instance, network and the service account's access token, and the compute API v1
 * over REST with that token. A handful of calls with `fetch`: Google's client libraries
 * would cost ~26 MiB of memory for them (README "gce backend").
 * @module
 */

import { Backoff, sleep } from "../../core/async.ts";
import { formatIP4, formatNet4, type IP4Net } from "../../core/ip.ts";
import type { Logger } from "../../core/log.ts";
import type { ExternalInterface } from "../../values/iface.ts";
import type { RouteApi } from "../cloud/keeper.ts";
import type { CloudRoute } from "../cloud/routes.ts";
import {
  baseName,
  cloudRoute,
  computeBase,
  computeErrorLine,
  type ComputeRoute,
  errorReason,
  metadataBase,
  type Operation,
  operationError,
  refreshAt,
  resourcePath,
  retryable,
  ROUTE_FILTER,
  routeName,
} from "./model.ts";

const env = (k: string) => Deno.env.get(k);

/** Why a fetch got no answer, in a few words ("Connection refused (os error 111)"). */
function noAnswer(e: unknown, timeoutMs: number): string {
  const err = e as Error;
  if (err.name === "TimeoutError") return `no answer within ${timeoutMs} ms`;
  const text = ((err.cause as Error | undefined)?.message ?? err.message).split("\n")[0];
  return text.slice(text.lastIndexOf(": ") + 1).trim() || text;
}

/** Per metadata request; the server answers in milliseconds where it exists. */
const METADATA_TIMEOUT_MS = 1000;
const METADATA_ATTEMPTS = 3;
/** Per compute call; operations are waited for separately. */
const COMPUTE_TIMEOUT_MS = 30_000;
const COMPUTE_ATTEMPTS = 5;
/** How long an insert or delete may take before we give up on it. */
const OPERATION_DEADLINE_MS = 120_000;
/** Upstream's route priority. */
const ROUTE_PRIORITY = 1000;

/** The metadata server; every failure is one line naming it. */
export class Metadata {
  readonly base = metadataBase(env);
  #token = "";
  #refreshAt = 0;

  /** GETs `path` (below computeMetadata/v1/) as text. */
  async get(path: string): Promise<string> {
    const backoff = new Backoff({ minMs: 200, maxMs: 1000 });
    let cause = "";
    for (let attempt = 1; attempt <= METADATA_ATTEMPTS; attempt++) {
      try {
        const r = await fetch(this.base + path, {
          headers: { "Metadata-Flavor": "Google" },
          signal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
        });
        const text = await r.text();
        // Anything else at that address (a proxy, another cloud) is not the metadata server.
        if (r.headers.get("Metadata-Flavor") !== "Google") {
          cause = `HTTP ${r.status} without the Metadata-Flavor: Google header`;
          break;
        }
        if (r.ok) return text;
        cause = `HTTP ${r.status}${text ? `: ${text.trim().split("\n")[0]}` : ""}`;
        if (r.status === 404) break;
      } catch (e) {
        cause = noAnswer(e, METADATA_TIMEOUT_MS);
      }
      if (attempt < METADATA_ATTEMPTS) await sleep(backoff.next());
    }
    throw new Error(
      `cannot read ${path} from the GCE metadata server at ${this.base} (${cause}): ` +
        "not running on Google Compute Engine? (GCE_METADATA_HOST sets its address)",
    );
  }

  /** The default service account's access token, replaced before it expires. */
  async token(now = Date.now()): Promise<string> {
    if (this.#token && now < this.#refreshAt) return this.#token;
    const text = await this.get("instance/service-accounts/default/token");
    let tok: { access_token?: string; expires_in?: number };
    try {
      tok = JSON.parse(text);
    } catch {
      tok = {};
    }
    if (!tok.access_token || typeof tok.expires_in !== "number") {
      throw new Error(`the GCE metadata server gave no access token (${text.slice(0, 80)})`);
    }
    this.#token = tok.access_token;
    this.#refreshAt = refreshAt(now, tok.expires_in);
    return this.#token;
  }

  /** Forgets the token (the API refused it). */
  dropToken(): void {
    this.#token = "";
  }
}

/** The compute API v1 of one project. */
class Compute {
  readonly #base: string;

  constructor(private readonly md: Metadata, readonly project: string) {
    this.#base = `${computeBase(env)}projects/${encodeURIComponent(project)}/`;
  }

  /**
   * One call: retried with backoff on throttling, server errors and no answer; a refused
   * token is replaced once. Returns the parsed body, or null for 404 when `allow404`.
   */
  async call<T>(
    op: string,
    method: string,
    path: string,
    opts: { body?: unknown; allow404?: boolean; timeoutMs?: number } = {},
  ): Promise<T | null> {
    const backoff = new Backoff({ minMs: 250, maxMs: 4000 });
    let refreshed = false;
    for (let attempt = 1;; attempt++) {
      let status = 0;
      let body: unknown = null;
      let cause = "";
      try {
        const r = await fetch(this.#base + path, {
          method,
          headers: {
            "Authorization": `Bearer ${await this.md.token()}`,
            ...(opts.body ? { "Content-Type": "application/json" } : {}),
          },
          body: opts.body ? JSON.stringify(opts.body) : undefined,
          signal: AbortSignal.timeout(opts.timeoutMs ?? COMPUTE_TIMEOUT_MS),
        });
        status = r.status;
        const text = await r.text();
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          cause = text.slice(0, 120);
        }
        if (r.ok) return body as T;
        if (status === 404 && opts.allow404) return null;
        if (status === 401 && !refreshed) {
          refreshed = true;
          this.md.dropToken();
          continue;
        }
      } catch (e) {
        if ((e as Error).message.includes("GCE metadata server")) throw e;
        cause = noAnswer(e, opts.timeoutMs ?? COMPUTE_TIMEOUT_MS);
      }
      if (attempt >= COMPUTE_ATTEMPTS || !retryable(status, errorReason(body))) {
        throw new Error(computeErrorLine(op, status, body, attempt, cause));
      }
      await sleep(backoff.next() * (0.75 + Math.random() / 2));
    }
  }

  /** Waits until a global operation is DONE (bounded); throws its error. */
  async wait(op: Operation, what: string): Promise<void> {
    const deadline = Date.now() + OPERATION_DEADLINE_MS;
    while (op.status !== "DONE") {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`compute API ${what}: operation ${op.name} not DONE after 120 s`);
      }
      op = (await this.call<Operation>(
        "operations.wait",
        "POST",
        `global/operations/${encodeURIComponent(op.name ?? "")}/wait`,
        { timeoutMs: Math.min(left, 130_000) },
      ))!;
    }
    const err = operationError(op);
    if (err) throw new Error(`compute API ${what} failed: ${err}`);
  }
}

/**
 * Everything before the lease: project, zone, instance and network from the metadata
 * server, then the network and the instance (their selfLinks) from the compute API.
 */
export async function discover(ext: ExternalInterface, log: Logger): Promise<RouteApi> {
  const md = new Metadata();
  const project = (await md.get("project/project-id")).trim();
  const zone = baseName(await md.get("instance/zone"));
  const instanceName = (await md.get("instance/name")).trim();
  const networkName = baseName(await md.get("instance/network-interfaces/0/network"));
  const nic0 = (await md.get("instance/network-interfaces/0/ip")).trim();
  await md.token();
  log.info("GCE instance", { project, zone, instance: instanceName, network: networkName });
  if (nic0 !== formatIP4(ext.ifaceAddr)) {
    log.warn(
      `GCE routes deliver to the instance's first interface (${nic0}), but flannel uses ` +
        `${ext.name} (${formatIP4(ext.ifaceAddr)}); choose that interface with --iface`,
    );
  }
  const compute = new Compute(md, project);
  const network = (await compute.call<{ selfLink?: string }>(
    "networks.get",
    "GET",
    `global/networks/${encodeURIComponent(networkName)}`,
  ))!;
  const instance = (await compute.call<{ selfLink?: string; canIpForward?: boolean }>(
    "instances.get",
    "GET",
    `zones/${encodeURIComponent(zone)}/instances/${encodeURIComponent(instanceName)}`,
  ))!;
  if (!network.selfLink || !instance.selfLink) {
    throw new Error("compute API answered without selfLink for the network or the instance");
  }
  if (instance.canIpForward === false) {
    log.warn(
      `instance ${instanceName} has canIpForward off: GCE drops packets for containers on ` +
        "this host; recreate it with IP forwarding on (gcloud --can-ip-forward)",
    );
  }
  return new GceRoutes(compute, network.selfLink, instance.selfLink, networkName);
}

/** The project's flannel routes on our network as a {@link RouteApi}. */
class GceRoutes implements RouteApi {
  readonly ownTarget: string;
  readonly tables: readonly string[];
  readonly #networkPath: string;

  constructor(
    private readonly compute: Compute,
    private readonly networkLink: string,
    private readonly instanceLink: string,
    networkName: string,
  ) {
    this.ownTarget = resourcePath(instanceLink);
    this.#networkPath = resourcePath(networkLink);
    this.tables = [`network ${networkName}`];
  }

  async read(): Promise<Map<string, CloudRoute[]>> {
    const routes: CloudRoute[] = [];
    let pageToken = "";
    do {
      const q = new URLSearchParams({ filter: ROUTE_FILTER, maxResults: "500" });
      if (pageToken) q.set("pageToken", pageToken);
      const page = (await this.compute.call<{ items?: ComputeRoute[]; nextPageToken?: string }>(
        "routes.list",
        "GET",
        `global/routes?${q}`,
      ))!;
      for (const r of page.items ?? []) {
        if (r.network && resourcePath(r.network) === this.#networkPath) routes.push(cloudRoute(r));
      }
      pageToken = page.nextPageToken ?? "";
    } while (pageToken);
    return new Map([[this.tables[0], routes]]);
  }

  async create(table: string, subnet: IP4Net): Promise<void> {
    const name = routeName(subnet);
    try {
      await this.#insert(name, subnet);
    } catch (e) {
      // Inserted since our read: keep it when it is ours, else delete it and insert ours.
      if (!(e as Error).message.includes("HTTP 409")) throw e;
      const r = await this.compute.call<ComputeRoute>(
        "routes.get",
        "GET",
        `global/routes/${name}`,
        {
          allow404: true,
        },
      );
      if (r && cloudRoute(r).target === this.ownTarget) return;
      if (r) await this.remove(table, cloudRoute(r));
      await this.#insert(name, subnet);
    }
  }

  async #insert(name: string, subnet: IP4Net): Promise<void> {
    const op = (await this.compute.call<Operation>("routes.insert", "POST", "global/routes", {
      body: {
        name,
        network: this.networkLink,
        destRange: formatNet4(subnet),
        nextHopInstance: this.instanceLink,
        priority: ROUTE_PRIORITY,
        tags: [],
      },
    }))!;
    await this.compute.wait(op, `routes.insert ${name}`);
  }

  /** Routes cannot be changed in place: the old one is deleted, then ours inserted. */
  async replace(table: string, subnet: IP4Net, existing: CloudRoute): Promise<void> {
    await this.remove(table, existing);
    await this.create(table, subnet);
  }

  async remove(_table: string, route: CloudRoute): Promise<void> {
    const name = route.name ?? "";
    const op = await this.compute.call<Operation>(
      "routes.delete",
      "DELETE",
      `global/routes/${encodeURIComponent(name)}`,
      { allow404: true },
    );
    if (op) await this.compute.wait(op, `routes.delete ${name}`);
  }
}
