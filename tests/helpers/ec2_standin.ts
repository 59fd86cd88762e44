/**
 * A local stand-in for the two AWS services the aws-vpc backend talks to, following their
 * published interfaces closely enough that the real AWS SDK works against it unchanged:
 *
 * - the EC2 Query API (POST form `Action=…&Version=2016-11-15`, XML answers in the shapes of
 *   the EC2 API reference, errors as `<Response><Errors><Error><Code>`): DescribeInstances,
 *   DescribeRouteTables (with its filters), CreateRoute, ReplaceRoute, DeleteRoute,
 *   ModifyNetworkInterfaceAttribute. Every request's SigV4 signature is verified against the
 *   credentials its instance profile handed out, and its region against the instance's.
 * - one instance metadata service per instance (IMDSv2: `PUT /latest/api/token`, then GETs
 *   with `X-aws-ec2-metadata-token`; IMDSv1 GETs unless refused): instance-id, region and the
 *   instance profile's temporary credentials.
 *
 * Faults on demand: throttling (HTTP 503 `RequestLimitExceeded`), any error code for an
 * action, a route limit per table, IMDSv2 tokens refused, an instance terminated (its routes
 * turn `blackhole`). Every API call is recorded. Listens on the given address: loopback, or
 * inside a test namespace (tests/helpers/standin_main.ts).
 * @module
 */

/** An ENI of a stand-in instance. */
export interface StandInEni {
  id: string;
  subnetId: string;
  vpcId: string;
  ips: string[];
  sourceDestCheck: boolean;
}

/** A route in a stand-in table. */
export interface StandInRoute {
  dest: string;
  eni?: string;
  instanceId?: string;
  gateway?: string;
  state: "active" | "blackhole";
  origin: "CreateRouteTable" | "CreateRoute";
}

/** A stand-in route table. */
export interface StandInTable {
  id: string;
  vpcId: string;
  main: boolean;
  subnets: string[];
  routes: StandInRoute[];
  /** CreateRoute fails with RouteLimitExceeded at this many routes (EC2's default: 50). */
  limit: number;
}

/** One recorded API call. */
export interface Ec2Call {
  action: string;
  params: Record<string, string>;
  status: number;
  code?: string;
  instanceId?: string;
}

interface Instance {
  id: string;
  region: string;
  enis: StandInEni[];
  imds: Deno.HttpServer<Deno.NetAddr>;
  imdsRequests: { method: string; path: string; token: boolean }[];
  refuseTokens: boolean;
  creds: { akid: string; secret: string; token: string };
  terminated: boolean;
}

const XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/";
const enc = new TextEncoder();

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** `<tag>…</tag>` from a string (escaped), an array of items (`<item>`s) or nested fields. */
type X = string | number | boolean | X[] | { [k: string]: X | undefined };
function xml(tag: string, v: X): string {
  if (Array.isArray(v)) return `<${tag}>${v.map((i) => xml("item", i)).join("")}</${tag}>`;
  if (typeof v === "object") {
    const inner = Object.entries(v).filter(([, x]) => x !== undefined)
      .map(([k, x]) => xml(k, x!)).join("");
    return `<${tag}>${inner}</${tag}>`;
  }
  return `<${tag}>${esc(String(v))}</${tag}>`;
}

function hex(buf: ArrayBuffer): string {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function hmac(key: Uint8Array | ArrayBuffer, data: string): Promise<ArrayBuffer> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as BufferSource,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return await crypto.subtle.sign("HMAC", k, enc.encode(data));
}

async function sha256hex(data: string): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", enc.encode(data)));
}

/** A recorded, raised error: the EC2 error XML with its HTTP status. */
class Ec2Error extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** An id in EC2's form: prefix and 17 hex digits. */
const newId = (prefix: string) => `${prefix}-${crypto.randomUUID().replace(/-/g, "").slice(0, 17)}`;

/** The stand-in: EC2 API plus one IMDS per instance. */
export class Ec2StandIn {
  readonly calls: Ec2Call[] = [];
  readonly tables: StandInTable[] = [];
  readonly #instances = new Map<string, Instance>();
  readonly #byKey = new Map<string, Instance>();
  #api: Deno.HttpServer<Deno.NetAddr>;
  #faults: { action?: string; status: number; code: string; message: string; left: number }[] = [];

  readonly hostname: string;

  /** Starts the EC2 API on `hostname` (default loopback) and `port` (default a free one). */
  constructor(o: { hostname?: string; port?: number } = {}) {
    this.hostname = o.hostname ?? "127.0.0.1";
    this.#api = Deno.serve(
      { hostname: this.hostname, port: o.port ?? 0, onListen: () => {} },
      (req) => this.#handleApi(req),
    );
  }

  /** `AWS_ENDPOINT_URL_EC2` for clients. */
  get endpoint(): string {
    return `http://${this.hostname}:${this.#api.addr.port}`;
  }

  /** Adds a VPC with a main route table holding the local route; returns the table. */
  addVpc(vpcId: string, cidr: string): StandInTable {
    const t: StandInTable = {
      id: newId("rtb"),
      vpcId,
      main: true,
      subnets: [],
      routes: [{ dest: cidr, gateway: "local", state: "active", origin: "CreateRouteTable" }],
      limit: 50,
    };
    this.tables.push(t);
    return t;
  }

  /** Adds a non-main table in `vpcId`, associated with `subnets`. */
  addTable(vpcId: string, subnets: string[] = []): StandInTable {
    const main = this.tables.find((t) => t.vpcId === vpcId && t.main);
    const t: StandInTable = {
      id: newId("rtb"),
      vpcId,
      main: false,
      subnets,
      routes: main ? [main.routes[0]] : [],
      limit: 50,
    };
    this.tables.push(t);
    return t;
  }

  /** A table by id. */
  table(id: string): StandInTable {
    const t = this.tables.find((x) => x.id === id);
    if (!t) throw new Error(`no table ${id}`);
    return t;
  }

  /** Adds an instance with one ENI holding `ip`; starts its IMDS (on `imdsPort`, default a free one). */
  addInstance(
    o: {
      region?: string;
      ip: string;
      subnetId?: string;
      vpcId: string;
      sourceDestCheck?: boolean;
      imdsPort?: number;
    },
  ): { instanceId: string; eniId: string; imds: string } {
    const id = newId("i");
    const eni: StandInEni = {
      id: newId("eni"),
      subnetId: o.subnetId ?? "subnet-0a",
      vpcId: o.vpcId,
      ips: [o.ip],
      sourceDestCheck: o.sourceDestCheck ?? true,
    };
    const creds = {
      akid: `ASIA${id.replace(/\W/g, "").toUpperCase()}`,
      secret: crypto.randomUUID(),
      token: btoa(crypto.randomUUID()),
    };
    const inst: Instance = {
      id,
      region: o.region ?? "eu-west-1",
      enis: [eni],
      imdsRequests: [],
      refuseTokens: false,
      creds,
      terminated: false,
      imds: null as unknown as Deno.HttpServer<Deno.NetAddr>,
    };
    inst.imds = Deno.serve(
      { hostname: this.hostname, port: o.imdsPort ?? 0, onListen: () => {} },
      (req) => this.#handleImds(inst, req),
    );
    this.#instances.set(id, inst);
    this.#byKey.set(creds.akid, inst);
    return { instanceId: id, eniId: eni.id, imds: this.imdsEndpoint(id) };
  }

  /** `AWS_EC2_METADATA_SERVICE_ENDPOINT` of an instance. */
  imdsEndpoint(instanceId: string): string {
    return `http://${this.hostname}:${this.#inst(instanceId).imds.addr.port}`;
  }

  /** The IMDS requests an instance received (method, path, whether it carried a token). */
  imdsRequests(instanceId: string): { method: string; path: string; token: boolean }[] {
    return this.#inst(instanceId).imdsRequests;
  }

  /** Makes the instance's IMDS refuse IMDSv2 tokens (HTTP 403), as with tokens turned off. */
  refuseImdsTokens(instanceId: string): void {
    this.#inst(instanceId).refuseTokens = true;
  }

  /** An ENI by id. */
  eni(eniId: string): StandInEni {
    for (const i of this.#instances.values()) {
      const e = i.enis.find((x) => x.id === eniId);
      if (e) return e;
    }
    throw new Error(`no ENI ${eniId}`);
  }

  /** Terminates an instance: its ENIs go away and routes through them turn blackhole. */
  terminate(instanceId: string): void {
    const inst = this.#inst(instanceId);
    inst.terminated = true;
    const enis = new Set(inst.enis.map((e) => e.id));
    for (const t of this.tables) {
      for (const r of t.routes) if (r.eni && enis.has(r.eni)) r.state = "blackhole";
    }
  }

  /** The next `n` calls (of `action`, or any) fail with HTTP 503 RequestLimitExceeded. */
  throttle(n: number, action?: string): void {
    this.fail(n, "RequestLimitExceeded", 503, "Request limit exceeded.", action);
  }

  /** The next `n` calls (of `action`, or any) fail with `code`. */
  fail(n: number, code: string, status: number, message: string, action?: string): void {
    this.#faults.push({ action, status, code, message, left: n });
  }

  /** Removes every pending fault. */
  clearFaults(): void {
    this.#faults = [];
  }

  /** Routes of a table as `dest → eni|gateway (state)` lines, sorted. */
  routeLines(tableId: string): string[] {
    return this.table(tableId).routes
      .map((r) =>
        `${r.dest} → ${r.eni ?? r.gateway ?? r.instanceId}${
          r.state === "active" ? "" : ` (${r.state})`
        }`
      )
      .sort();
  }

  /** Puts a route straight into a table (as another tool or a person would). */
  putRoute(tableId: string, route: StandInRoute): void {
    const t = this.table(tableId);
    t.routes = t.routes.filter((r) => r.dest !== route.dest);
    t.routes.push(route);
  }

  /** Deletes a route straight from a table; returns whether there was one. */
  dropRoute(tableId: string, dest: string): boolean {
    const t = this.table(tableId);
    const n = t.routes.length;
    t.routes = t.routes.filter((r) => r.dest !== dest);
    return t.routes.length !== n;
  }

  /** Calls of `action` recorded so far. */
  callsOf(action: string): Ec2Call[] {
    return this.calls.filter((c) => c.action === action);
  }

  /** Stops every server. */
  async close(): Promise<void> {
    await this.#api.shutdown();
    for (const i of this.#instances.values()) await i.imds.shutdown();
  }

  #inst(id: string): Instance {
    const i = this.#instances.get(id);
    if (!i) throw new Error(`no instance ${id}`);
    return i;
  }

  // ------------------------------------------------------------------ IMDS

  readonly #imdsTokens = new Set<string>();

  #handleImds(inst: Instance, req: Request): Response {
    const path = new URL(req.url).pathname;
    const token = req.headers.get("x-aws-ec2-metadata-token");
    inst.imdsRequests.push({ method: req.method, path, token: token !== null });
    const text = (s: string, status = 200) =>
      new Response(s, { status, headers: { "content-type": "text/plain" } });
    if (req.method === "PUT" && path === "/latest/api/token") {
      if (inst.refuseTokens) return text("Forbidden", 403);
      const ttl = Number(req.headers.get("x-aws-ec2-metadata-token-ttl-seconds"));
      if (!(ttl >= 1 && ttl <= 21600)) return text("Bad Request", 400);
      const t = btoa(crypto.randomUUID());
      this.#imdsTokens.add(t);
      return text(t);
    }
    if (req.method !== "GET") return text("Method Not Allowed", 405);
    if (token !== null && !this.#imdsTokens.has(token)) return text("Unauthorized", 401);
    const role = "flannel-node";
    const creds = inst.creds;
    const answers: Record<string, string> = {
      "/latest/meta-data/instance-id": inst.id,
      "/latest/meta-data/placement/region": inst.region,
      "/latest/meta-data/placement/availability-zone": `${inst.region}a`,
      "/latest/meta-data/iam/security-credentials/": role,
      [`/latest/meta-data/iam/security-credentials/${role}`]: JSON.stringify({
        Code: "Success",
        LastUpdated: new Date().toISOString(),
        Type: "AWS-HMAC",
        AccessKeyId: creds.akid,
        SecretAccessKey: creds.secret,
        Token: creds.token,
        Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
      }),
    };
    return path in answers ? text(answers[path]) : text("Not Found", 404);
  }

  // ------------------------------------------------------------------ EC2 API

  async #handleApi(req: Request): Promise<Response> {
    const body = await req.text();
    const params = Object.fromEntries(new URLSearchParams(body));
    const action = params.Action ?? "";
    const call: Ec2Call = { action, params, status: 200 };
    this.calls.push(call);
    try {
      if (req.method !== "POST" || params.Version !== "2016-11-15") {
        throw new Ec2Error(400, "InvalidAction", `The action ${action} is not valid.`);
      }
      const inst = await this.#authenticate(req, body);
      call.instanceId = inst.id;
      const fault = this.#faults.find((f) => f.left > 0 && (!f.action || f.action === action));
      if (fault) {
        fault.left--;
        throw new Ec2Error(fault.status, fault.code, fault.message);
      }
      const inner = this.#dispatch(action, params);
      return new Response(
        `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${XMLNS}">` +
          `<requestId>${crypto.randomUUID()}</requestId>${inner}</${action}Response>`,
        { headers: { "content-type": "text/xml;charset=UTF-8" } },
      );
    } catch (e) {
      const err = e instanceof Ec2Error ? e : new Ec2Error(500, "InternalError", String(e));
      call.status = err.status;
      call.code = err.code;
      return new Response(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${err.code}</Code>` +
          `<Message>${esc(err.message)}</Message></Error></Errors>` +
          `<RequestID>${crypto.randomUUID()}</RequestID></Response>`,
        { status: err.status, headers: { "content-type": "text/xml;charset=UTF-8" } },
      );
    }
  }

  /** Verifies the SigV4 signature with the credentials of the instance that owns the key. */
  async #authenticate(req: Request, body: string): Promise<Instance> {
    const auth = req.headers.get("authorization") ?? "";
    const m =
      /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/ec2\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/
        .exec(auth);
    if (!m) {
      throw new Ec2Error(
        401,
        "AuthFailure",
        "AWS was not able to validate the provided access credentials",
      );
    }
    const [, akid, date, region, signed, signature] = m;
    const inst = this.#byKey.get(akid);
    if (!inst || inst.terminated) {
      throw new Ec2Error(
        401,
        "AuthFailure",
        "AWS was not able to validate the provided access credentials",
      );
    }
    if (region !== inst.region) {
      throw new Ec2Error(
        401,
        "AuthFailure",
        `credential scope region ${region} is not ${inst.region}`,
      );
    }
    if (req.headers.get("x-amz-security-token") !== inst.creds.token) {
      throw new Ec2Error(
        400,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
      );
    }
    const url = new URL(req.url);
    const names = signed.split(";");
    const canonical = [
      req.method,
      url.pathname,
      url.search.slice(1),
      ...names.map((n) => `${n}:${(req.headers.get(n) ?? "").trim().replace(/\s+/g, " ")}`),
      "",
      signed,
      await sha256hex(body),
    ].join("\n");
    const amzDate = req.headers.get("x-amz-date") ?? "";
    const scope = `${date}/${region}/ec2/aws4_request`;
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${await sha256hex(canonical)}`;
    let key = await hmac(enc.encode(`AWS4${inst.creds.secret}`), date);
    for (const part of [region, "ec2", "aws4_request"]) key = await hmac(key, part);
    if (hex(await hmac(key, toSign)) !== signature || !names.includes("host")) {
      throw new Ec2Error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
      );
    }
    return inst;
  }

  #dispatch(action: string, p: Record<string, string>): string {
    switch (action) {
      case "DescribeInstances":
        return this.#describeInstances(p);
      case "DescribeRouteTables":
        return this.#describeRouteTables(p);
      case "CreateRoute":
        return this.#createRoute(p);
      case "ReplaceRoute":
        return this.#replaceRoute(p);
      case "DeleteRoute":
        return this.#deleteRoute(p);
      case "ModifyNetworkInterfaceAttribute":
        return this.#modifyEni(p);
    }
    throw new Ec2Error(
      400,
      "InvalidAction",
      `The action ${action} is not valid for this web service.`,
    );
  }

  #describeInstances(p: Record<string, string>): string {
    const ids = list(p, "InstanceId");
    const found = ids.map((id) => {
      const i = this.#instances.get(id);
      if (!i || i.terminated) {
        throw new Ec2Error(
          400,
          "InvalidInstanceID.NotFound",
          `The instance ID '${id}' does not exist`,
        );
      }
      return i;
    });
    return xml(
      "reservationSet",
      found.map((i) => ({
        reservationId: `r-${i.id.slice(2)}`,
        ownerId: "123456789012",
        instancesSet: [{
          instanceId: i.id,
          instanceState: { code: 16, name: "running" },
          privateIpAddress: i.enis[0].ips[0],
          subnetId: i.enis[0].subnetId,
          vpcId: i.enis[0].vpcId,
          sourceDestCheck: i.enis[0].sourceDestCheck,
          networkInterfaceSet: i.enis.map((e, n) => ({
            networkInterfaceId: e.id,
            subnetId: e.subnetId,
            vpcId: e.vpcId,
            ownerId: "123456789012",
            status: "in-use",
            privateIpAddress: e.ips[0],
            sourceDestCheck: e.sourceDestCheck,
            attachment: { attachmentId: `eni-attach-${n}`, deviceIndex: n, status: "attached" },
            privateIpAddressesSet: e.ips.map((ip, k) => ({
              privateIpAddress: ip,
              primary: k === 0,
            })),
          })),
        }],
      })),
    );
  }

  #describeRouteTables(p: Record<string, string>): string {
    const ids = list(p, "RouteTableId");
    for (const id of ids) {
      if (!this.tables.some((t) => t.id === id)) {
        throw new Ec2Error(
          400,
          "InvalidRouteTableID.NotFound",
          `The routeTable ID '${id}' does not exist`,
        );
      }
    }
    const filters: [string, string[]][] = [];
    for (let i = 1; p[`Filter.${i}.Name`]; i++) {
      filters.push([p[`Filter.${i}.Name`], list(p, `Filter.${i}.Value`)]);
    }
    const match = (t: StandInTable, name: string, values: string[]) => {
      const any = (xs: string[]) => xs.some((x) => values.includes(x));
      switch (name) {
        case "route-table-id":
          return any([t.id]);
        case "vpc-id":
          return any([t.vpcId]);
        case "association.main":
          return any([String(t.main)]);
        case "association.subnet-id":
          return any(t.subnets);
        case "route.state":
          return any(t.routes.map((r) => r.state));
        case "route.destination-cidr-block":
          return any(t.routes.map((r) => r.dest));
      }
      throw new Ec2Error(400, "InvalidParameterValue", `The filter '${name}' is invalid`);
    };
    const hits = this.tables.filter((t) =>
      (!ids.length || ids.includes(t.id)) && filters.every(([n, v]) => match(t, n, v))
    );
    return xml(
      "routeTableSet",
      hits.map((t) => ({
        routeTableId: t.id,
        vpcId: t.vpcId,
        ownerId: "123456789012",
        routeSet: t.routes.map((r) => ({
          destinationCidrBlock: r.dest,
          gatewayId: r.gateway,
          instanceId: r.eni ? this.#ownerOf(r.eni) : r.instanceId,
          instanceOwnerId: r.eni ? "123456789012" : undefined,
          networkInterfaceId: r.eni,
          state: r.state,
          origin: r.origin,
        })),
        associationSet: [
          ...(t.main
            ? [{
              routeTableAssociationId: `rtbassoc-${t.id.slice(4)}`,
              routeTableId: t.id,
              main: true,
              associationState: { state: "associated" },
            }]
            : []),
          ...t.subnets.map((s) => ({
            routeTableAssociationId: `rtbassoc-${s.slice(7)}`,
            routeTableId: t.id,
            subnetId: s,
            main: false,
            associationState: { state: "associated" },
          })),
        ],
        propagatingVgwSet: [],
        tagSet: [],
      })),
    );
  }

  #ownerOf(eniId: string): string | undefined {
    for (const i of this.#instances.values()) if (i.enis.some((e) => e.id === eniId)) return i.id;
    return undefined;
  }

  #routeArgs(p: Record<string, string>): { t: StandInTable; dest: string; eni: string } {
    const t = this.tables.find((x) => x.id === p.RouteTableId);
    if (!t) {
      throw new Ec2Error(
        400,
        "InvalidRouteTableID.NotFound",
        `The routeTable ID '${p.RouteTableId}' does not exist`,
      );
    }
    const dest = p.DestinationCidrBlock ?? "";
    if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(dest)) {
      throw new Ec2Error(
        400,
        "InvalidParameterValue",
        `Value (${dest}) for parameter destinationCidrBlock is invalid.`,
      );
    }
    return { t, dest, eni: p.NetworkInterfaceId ?? "" };
  }

  #checkEni(eni: string): void {
    const owner = this.#ownerOf(eni);
    if (!owner || this.#instances.get(owner)!.terminated) {
      throw new Ec2Error(
        400,
        "InvalidNetworkInterfaceID.NotFound",
        `The networkInterface ID '${eni}' does not exist`,
      );
    }
  }

  #createRoute(p: Record<string, string>): string {
    const { t, dest, eni } = this.#routeArgs(p);
    this.#checkEni(eni);
    if (t.routes.some((r) => r.dest === dest)) {
      throw new Ec2Error(
        400,
        "RouteAlreadyExists",
        `The route identified by ${dest} already exists.`,
      );
    }
    if (t.routes.length >= t.limit) {
      throw new Ec2Error(
        400,
        "RouteLimitExceeded",
        `The maximum number of routes has been reached.`,
      );
    }
    t.routes.push({ dest, eni, state: "active", origin: "CreateRoute" });
    return xml("return", true);
  }

  #replaceRoute(p: Record<string, string>): string {
    const { t, dest, eni } = this.#routeArgs(p);
    this.#checkEni(eni);
    const r = t.routes.find((x) => x.dest === dest);
    if (!r) {
      throw new Ec2Error(
        400,
        "InvalidParameterValue",
        `There is no route defined for '${dest}' in the route table. Use CreateRoute instead.`,
      );
    }
    Object.assign(r, { eni, gateway: undefined, instanceId: undefined, state: "active" });
    return xml("return", true);
  }

  #deleteRoute(p: Record<string, string>): string {
    const { t, dest } = this.#routeArgs(p);
    const i = t.routes.findIndex((x) => x.dest === dest && x.origin === "CreateRoute");
    if (i < 0) {
      throw new Ec2Error(
        400,
        "InvalidRoute.NotFound",
        `no route with destination-cidr-block ${dest} in route table ${t.id}`,
      );
    }
    t.routes.splice(i, 1);
    return xml("return", true);
  }

  #modifyEni(p: Record<string, string>): string {
    const e = (() => {
      try {
        return this.eni(p.NetworkInterfaceId);
      } catch {
        throw new Ec2Error(
          400,
          "InvalidNetworkInterfaceID.NotFound",
          `The networkInterface ID '${p.NetworkInterfaceId}' does not exist`,
        );
      }
    })();
    if (p["SourceDestCheck.Value"] !== undefined) {
      e.sourceDestCheck = p["SourceDestCheck.Value"] === "true";
    }
    return xml("return", true);
  }
}

/** `Name.1`, `Name.2`, … of the Query protocol's lists. */
function list(p: Record<string, string>, name: string): string[] {
  const out: string[] = [];
  for (let i = 1; p[`${name}.${i}`] !== undefined; i++) out.push(p[`${name}.${i}`]);
  return out;
}
