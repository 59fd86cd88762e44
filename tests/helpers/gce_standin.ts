/**
 * A local stand-in for the two Google Compute Engine services the gce backend talks to,
 * following their published REST interfaces:
 *
 * - the compute API v1 (`/compute/v1/projects/{project}/…`, JSON): networks.get,
 *   instances.get, routes.list (with `filter` `name eq "<RE2>"`, `maxResults`, `pageToken`),
 *   routes.get, routes.insert and routes.delete returning global Operations that finish
 *   after a delay, globalOperations.get and .wait; errors as `{"error":{"code","message",
 *   "errors":[{"reason"}]}}`. Every call needs `Authorization: Bearer <token>` with a token
 *   the metadata server handed out and that has not expired (else 401).
 * - one metadata server per instance (`/computeMetadata/v1/…`, `Metadata-Flavor: Google`
 *   required and answered): project id, zone, instance name, network and address of
 *   interface 0, and the default service account's access token with its lifetime.
 *
 * Faults on demand: throttling (429 or 403 `rateLimitExceeded`), any HTTP error for an
 * operation, the ROUTES quota, short token lifetimes, an instance deleted (routes through
 * it get the NEXT_HOP_INSTANCE_NOT_FOUND warning). Every API call is recorded.
 * @module
 */

/** A route in the stand-in project. */
export interface GceRoute {
  name: string;
  network: string;
  destRange: string;
  nextHopInstance?: string;
  nextHopGateway?: string;
  priority: number;
  warnings?: { code: string; message: string }[];
}

/** One recorded API call. */
export interface GceCall {
  method: string;
  path: string;
  status: number;
  reason?: string;
}

interface Instance {
  name: string;
  zone: string;
  ip: string;
  canIpForward: boolean;
  metadata: Deno.HttpServer<Deno.NetAddr>;
  tokenLifetime: number;
  tokensIssued: number;
  deleted: boolean;
}

interface Op {
  name: string;
  operationType: string;
  targetLink: string;
  doneAt: number;
  apply: () => { code: string; message: string } | null;
  error?: { code: string; message: string };
  done: boolean;
}

const LINK = "https://www.googleapis.com/compute/v1/";

class ApiError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

/** The stand-in: one project with one network, instances with their metadata servers. */
export class GceStandIn {
  readonly calls: GceCall[] = [];
  readonly routes: GceRoute[] = [];
  /** Delay before an operation is DONE (ms). */
  opDelayMs = 150;
  /** routes.insert fails (in its operation) with QUOTA_EXCEEDED at this many routes. */
  routeQuota = 250;
  readonly #instances = new Map<string, Instance>();
  readonly #tokens = new Map<string, number>(); // token → expiry
  readonly #ops = new Map<string, Op>();
  #api: Deno.HttpServer<Deno.NetAddr>;
  #faults: { match?: RegExp; status: number; reason: string; message: string; left: number }[] = [];
  #opSerial = 0;

  readonly hostname: string;
  readonly project = "flannel-test";
  readonly network = "default";

  /** Starts the compute API on `hostname` (default loopback) and `port` (default a free one). */
  constructor(o: { hostname?: string; port?: number } = {}) {
    this.hostname = o.hostname ?? "127.0.0.1";
    const project = this.project;
    this.#api = Deno.serve(
      { hostname: this.hostname, port: o.port ?? 0, onListen: () => {} },
      (req) => this.#handleApi(req),
    );
    // The default route every VPC network has; never ours to touch.
    this.routes.push({
      name: "default-route-0123456789abcdef",
      network: this.networkLink,
      destRange: "0.0.0.0/0",
      nextHopGateway: `${LINK}projects/${project}/global/gateways/default-internet-gateway`,
      priority: 1000,
    });
  }

  /** `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE` for clients. */
  get endpoint(): string {
    return `http://${this.hostname}:${this.#api.addr.port}/compute/v1/`;
  }

  /** selfLink of the network. */
  get networkLink(): string {
    return `${LINK}projects/${this.project}/global/networks/${this.network}`;
  }

  /** selfLink of an instance. */
  instanceLink(name: string): string {
    const i = this.#inst(name);
    return `${LINK}projects/${this.project}/zones/${i.zone}/instances/${name}`;
  }

  /** Adds an instance and starts its metadata server (on `metadataPort`, default a free one); returns `GCE_METADATA_HOST`. */
  addInstance(
    o: {
      name: string;
      ip: string;
      zone?: string;
      canIpForward?: boolean;
      tokenLifetime?: number;
      metadataPort?: number;
    },
  ): string {
    const inst: Instance = {
      name: o.name,
      zone: o.zone ?? "europe-west1-b",
      ip: o.ip,
      canIpForward: o.canIpForward ?? true,
      tokenLifetime: o.tokenLifetime ?? 3599,
      tokensIssued: 0,
      deleted: false,
      metadata: null as unknown as Deno.HttpServer<Deno.NetAddr>,
    };
    inst.metadata = Deno.serve(
      { hostname: this.hostname, port: o.metadataPort ?? 0, onListen: () => {} },
      (req) => this.#handleMetadata(inst, req),
    );
    this.#instances.set(o.name, inst);
    return this.metadataHost(o.name);
  }

  /** `GCE_METADATA_HOST` (host:port) of an instance's metadata server. */
  metadataHost(name: string): string {
    return `${this.hostname}:${this.#inst(name).metadata.addr.port}`;
  }

  /** Access tokens the instance's metadata server handed out. */
  tokensIssued(name: string): number {
    return this.#inst(name).tokensIssued;
  }

  /** Deletes an instance: routes through it get the NEXT_HOP_INSTANCE_NOT_FOUND warning. */
  deleteInstance(name: string): void {
    const link = this.instanceLink(name);
    this.#inst(name).deleted = true;
    for (const r of this.routes) {
      if (r.nextHopInstance === link) {
        r.warnings = [{
          code: "NEXT_HOP_INSTANCE_NOT_FOUND",
          message: `Next hop instance '${link}' does not exist.`,
        }];
      }
    }
  }

  /** The next `n` calls whose "METHOD path" matches `match` (or any) fail with `status`. */
  fail(n: number, status: number, reason: string, message: string, match?: string): void {
    this.#faults.push({
      match: match ? new RegExp(match) : undefined,
      status,
      reason,
      message,
      left: n,
    });
  }

  /** The next `n` calls (matching `match`) are throttled: 429, or 403 rateLimitExceeded. */
  throttle(n: number, status: 429 | 403 = 429, match?: string): void {
    this.fail(n, status, "rateLimitExceeded", "Rate Limit Exceeded", match);
  }

  /** Removes every pending fault. */
  clearFaults(): void {
    this.#faults = [];
  }

  /** Routes as `name destRange → instance name|gateway` lines, sorted. */
  routeLines(): string[] {
    return this.routes.map((r) =>
      `${r.name} ${r.destRange} → ${
        r.nextHopInstance?.split("/").pop() ?? r.nextHopGateway?.split("/").pop()
      }${r.warnings?.length ? " (no next hop)" : ""}`
    ).sort();
  }

  /** Puts a route straight into the project (as another tool or a person would). */
  putRoute(r: { name: string; destRange: string; instance: string }): void {
    this.dropRoute(r.name);
    this.routes.push({
      name: r.name,
      network: this.networkLink,
      destRange: r.destRange,
      nextHopInstance: `${LINK}projects/${this.project}/zones/${
        this.#instances.get(r.instance)?.zone ?? "europe-west1-b"
      }/instances/${r.instance}`,
      priority: 1000,
    });
  }

  /** Deletes a route straight from the project; returns whether there was one. */
  dropRoute(name: string): boolean {
    const i = this.routes.findIndex((r) => r.name === name);
    if (i >= 0) this.routes.splice(i, 1);
    return i >= 0;
  }

  /** Recorded calls whose "METHOD path" matches `re`. */
  callsMatching(re: string): GceCall[] {
    const r = new RegExp(re);
    return this.calls.filter((c) => r.test(`${c.method} ${c.path}`));
  }

  /** Stops every server. */
  async close(): Promise<void> {
    await this.#api.shutdown();
    for (const i of this.#instances.values()) await i.metadata.shutdown();
  }

  #inst(name: string): Instance {
    const i = this.#instances.get(name);
    if (!i) throw new Error(`no instance ${name}`);
    return i;
  }

  // ------------------------------------------------------------------ metadata

  #handleMetadata(inst: Instance, req: Request): Response {
    const headers = { "Metadata-Flavor": "Google", "content-type": "application/text" };
    if (req.headers.get("Metadata-Flavor") !== "Google") {
      return new Response("Missing Metadata-Flavor:Google header.", { status: 403, headers });
    }
    const path = new URL(req.url).pathname.replace(/^\/computeMetadata\/v1\//, "");
    const answers: Record<string, () => string> = {
      "project/project-id": () => this.project,
      "project/numeric-project-id": () => "123456789012",
      "instance/zone": () => `projects/123456789012/zones/${inst.zone}`,
      "instance/name": () => inst.name,
      "instance/hostname": () => `${inst.name}.${inst.zone}.c.${this.project}.internal`,
      "instance/network-interfaces/0/network": () =>
        `projects/123456789012/networks/${this.network}`,
      "instance/network-interfaces/0/ip": () => inst.ip,
      "instance/service-accounts/default/token": () => {
        const token = `ya29.${crypto.randomUUID()}`;
        this.#tokens.set(token, Date.now() + inst.tokenLifetime * 1000);
        inst.tokensIssued++;
        return JSON.stringify({
          access_token: token,
          expires_in: inst.tokenLifetime,
          token_type: "Bearer",
        });
      },
    };
    const f = answers[path];
    if (!f) return new Response("Not Found", { status: 404, headers });
    return new Response(f(), { headers });
  }

  // ------------------------------------------------------------------ compute API

  async #handleApi(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const call: GceCall = { method: req.method, path: url.pathname + url.search, status: 200 };
    this.calls.push(call);
    try {
      const auth = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
      const exp = auth ? this.#tokens.get(auth) : undefined;
      if (exp === undefined || exp <= Date.now()) {
        throw new ApiError(
          401,
          "authError",
          "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
      }
      const line = `${req.method} ${url.pathname}`;
      const fault = this.#faults.find((f) => f.left > 0 && (!f.match || f.match.test(line)));
      if (fault) {
        fault.left--;
        throw new ApiError(fault.status, fault.reason, fault.message);
      }
      const prefix = `/compute/v1/projects/${this.project}/`;
      if (!url.pathname.startsWith(prefix)) {
        throw new ApiError(404, "notFound", `The resource '${url.pathname}' was not found`);
      }
      const rest = url.pathname.slice(prefix.length).split("/").map(decodeURIComponent);
      const body = req.method === "POST" ? await req.text() : "";
      const out = await this.#dispatch(req.method, rest, url.searchParams, body);
      return Response.json(out);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, "backendError", String(e));
      call.status = err.status;
      call.reason = err.reason;
      return Response.json({
        error: {
          code: err.status,
          message: err.message,
          errors: [{ message: err.message, domain: "global", reason: err.reason }],
        },
      }, { status: err.status });
    }
  }

  async #dispatch(
    method: string,
    p: string[],
    q: URLSearchParams,
    body: string,
  ): Promise<unknown> {
    const notFound = (what: string) =>
      new ApiError(404, "notFound", `The resource '${what}' was not found`);
    // Names in the path become "*": "GET zones/*/instances/*", "POST global/operations/*/wait".
    const isName = (i: number) => p[0] === "zones" ? i === 1 || i === 3 : i === 2;
    const shape = p.map((seg, i) => isName(i) ? "*" : seg);
    const key = `${method} ${shape.join("/")}`;
    switch (key) {
      case "GET global/networks/*":
        if (p[2] !== this.network) {
          throw notFound(`projects/${this.project}/global/networks/${p[2]}`);
        }
        return { kind: "compute#network", name: this.network, selfLink: this.networkLink };
      case "GET zones/*/instances/*": {
        const i = this.#instances.get(p[3]);
        if (!i || i.deleted || i.zone !== p[1]) {
          throw notFound(`projects/${this.project}/zones/${p[1]}/instances/${p[3]}`);
        }
        return {
          kind: "compute#instance",
          name: i.name,
          zone: `${LINK}projects/${this.project}/zones/${i.zone}`,
          selfLink: this.instanceLink(i.name),
          canIpForward: i.canIpForward,
          networkInterfaces: [{ network: this.networkLink, networkIP: i.ip, name: "nic0" }],
        };
      }
      case "GET global/routes":
        return this.#listRoutes(q);
      case "GET global/routes/*": {
        const r = this.routes.find((x) => x.name === p[2]);
        if (!r) throw notFound(`projects/${this.project}/global/routes/${p[2]}`);
        return this.#routeJson(r);
      }
      case "POST global/routes":
        return this.#insertRoute(JSON.parse(body));
      case "DELETE global/routes/*": {
        const name = p[2];
        if (!this.routes.some((x) => x.name === name)) {
          throw notFound(`projects/${this.project}/global/routes/${name}`);
        }
        return this.#operation("delete", `global/routes/${name}`, () => {
          this.dropRoute(name);
          return null;
        });
      }
      case "GET global/operations/*":
        return this.#opJson(this.#op(p[2]));
      case "POST global/operations/*/wait": {
        // Waits until DONE or about 2 minutes, as the API does.
        const op = this.#op(p[2]);
        const until = Date.now() + 120_000;
        while (!op.done && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
          this.#progress(op);
        }
        return this.#opJson(op);
      }
    }
    throw notFound(p.join("/"));
  }

  #listRoutes(q: URLSearchParams): unknown {
    const filter = q.get("filter") ?? "";
    let match = (_r: GceRoute) => true;
    if (filter) {
      // The regex form: `field eq literal`, the literal quoted or not, matching the whole field.
      const m = /^(\w+) (eq|ne) (?:"(.*)"|'(.*)'|(\S+))$/.exec(filter.trim());
      if (!m) throw new ApiError(400, "invalid", `Invalid value for field 'filter': '${filter}'.`);
      const re = new RegExp(`^(?:${m[3] ?? m[4] ?? m[5]})$`);
      const field = m[1] as keyof GceRoute;
      match = (r) => re.test(String(r[field] ?? "")) === (m[2] === "eq");
    }
    const all = this.routes.filter(match);
    const max = Math.min(Number(q.get("maxResults") ?? 500), 500);
    const start = Number(q.get("pageToken") || 0);
    const page = all.slice(start, start + max);
    return {
      kind: "compute#routeList",
      id: `projects/${this.project}/global/routes`,
      items: page.map((r) => this.#routeJson(r)),
      nextPageToken: start + max < all.length ? String(start + max) : undefined,
      selfLink: `${LINK}projects/${this.project}/global/routes`,
    };
  }

  #routeJson(r: GceRoute): unknown {
    return {
      kind: "compute#route",
      ...r,
      selfLink: `${LINK}projects/${this.project}/global/routes/${r.name}`,
    };
  }

  #insertRoute(r: Partial<GceRoute> & { tags?: string[] }): unknown {
    if (!r.name || !/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(r.name)) {
      throw new ApiError(400, "invalid", `Invalid value for field 'resource.name': '${r.name}'.`);
    }
    if (!r.destRange || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(r.destRange)) {
      throw new ApiError(400, "invalid", `Invalid value for field 'resource.destRange'.`);
    }
    if (r.network !== this.networkLink) {
      throw new ApiError(400, "invalid", `Invalid value for field 'resource.network'.`);
    }
    if (this.routes.some((x) => x.name === r.name)) {
      throw new ApiError(
        409,
        "alreadyExists",
        `The resource 'projects/${this.project}/global/routes/${r.name}' already exists`,
      );
    }
    const name = r.name;
    return this.#operation("insert", `global/routes/${name}`, () => {
      if (this.routes.length >= this.routeQuota) {
        return {
          code: "QUOTA_EXCEEDED",
          message: `Quota 'ROUTES' exceeded.  Limit: ${this.routeQuota}.0 globally.`,
        };
      }
      const hop = r.nextHopInstance ?? "";
      const inst = [...this.#instances.values()].find((i) =>
        this.instanceLink(i.name) === hop && !i.deleted
      );
      if (!inst) {
        return { code: "RESOURCE_NOT_FOUND", message: `The resource '${hop}' was not found` };
      }
      this.routes.push({
        name,
        network: r.network!,
        destRange: r.destRange!,
        nextHopInstance: hop,
        priority: r.priority ?? 1000,
      });
      return null;
    });
  }

  #operation(
    type: string,
    target: string,
    apply: () => { code: string; message: string } | null,
  ): unknown {
    const op: Op = {
      name: `operation-${Date.now()}-${++this.#opSerial}`,
      operationType: type,
      targetLink: `${LINK}projects/${this.project}/${target}`,
      doneAt: Date.now() + this.opDelayMs,
      apply,
      done: false,
    };
    this.#ops.set(op.name, op);
    return this.#opJson(op);
  }

  #op(name: string): Op {
    const op = this.#ops.get(name);
    if (!op) throw new ApiError(404, "notFound", `The resource 'operations/${name}' was not found`);
    this.#progress(op);
    return op;
  }

  #progress(op: Op): void {
    if (op.done || Date.now() < op.doneAt) return;
    op.done = true;
    const err = op.apply();
    if (err) op.error = err;
  }

  #opJson(op: Op): unknown {
    return {
      kind: "compute#operation",
      name: op.name,
      operationType: op.operationType,
      targetLink: op.targetLink,
      status: op.done ? "DONE" : "RUNNING",
      progress: op.done ? 100 : 0,
      error: op.error ? { errors: [op.error] } : undefined,
      selfLink: `${LINK}projects/${this.project}/global/operations/${op.name}`,
    };
  }
}
