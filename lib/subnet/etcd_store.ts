/**
 * The {@link LeaseStore} over etcd v3 (`npm:etcd3`), and everything that library needs from
 * us: the client configured from flanneld's `--etcd-*` flags (endpoints, TLS used only when
 * both key and cert are given as upstream, the CA optional; username/password; a deadline on
 * every unary call so that a dead etcd is an error within seconds, not a hang), TLS to IP
 * endpoints under Deno, raw gRPC watch streams, and etcd's errors turned into one plain line.
 * No other module imports `etcd3`.
 * @module
 */

import { noop } from "cockatiel";
import { Etcd3, type IOptions } from "etcd3";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { logger } from "../core/log.ts";
import type {
  KV,
  LeaseStore,
  Listing,
  ReadOptions,
  StoreEvent,
  Watch,
  WatchHandlers,
  Written,
} from "./store.ts";

const log = logger("etcd");

/** The etcd-related flags. */
export interface EtcdClientOptions {
  endpoints: string[];
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
  /** Deadline of each unary call in ms (default 5000). */
  callTimeoutMs?: number;
}

/** Splits `--etcd-endpoints` and rejects entries that are not http(s) URLs. */
export function parseEndpoints(s: string): string[] {
  const eps = s.split(",").map((e) => e.trim()).filter((e) => e !== "");
  if (eps.length === 0) throw new Error("--etcd-endpoints is empty");
  for (const e of eps) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new Error(
        `--etcd-endpoints: ${JSON.stringify(e)} is not a URL (want http://host:port)`,
      );
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new Error(`--etcd-endpoints: ${JSON.stringify(e)} must use http or https`);
    }
  }
  return eps;
}

/** Whether the client speaks TLS (an https endpoint or a client certificate) and how. */
function tlsUse(o: EtcdClientOptions): TLSUse | undefined {
  const clientCert = Boolean(o.keyFile && o.certFile);
  return clientCert || o.endpoints.some((e) => e.startsWith("https:")) ? { clientCert } : undefined;
}

/**
 * Creates the client. Reads TLS files synchronously so a bad path fails at start, clearly.
 * `ownConnection`: do not share TCP connections with other clients of this process
 * (grpc-js pools them by target), so that closing a wedged client really drops its
 * connection.
 */
function createEtcdClient(o: EtcdClientOptions, ownConnection = false): Etcd3 {
  const timeout = o.callTimeoutMs ?? 5000;
  const opts: IOptions = {
    // grpc-js wants host:port; the scheme only selects TLS.
    hosts: o.endpoints.map((e) => new URL(e).host),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    grpcOptions: ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : undefined,
    // No per-host circuit breaker (npm:etcd3's default stops calling a host for 5 s after 3
    // failures): every caller here retries with its own backoff, and the breaker only
    // delayed recovery after a partition and mixed its own error into the operator's log.
    // The global retry policy (3 attempts, each on the next endpoint) stays.
    faultHandling: { host: () => noop },
  };
  const read = (p: string, what: string) => {
    try {
      return Buffer.from(Deno.readFileSync(p));
    } catch (e) {
      throw new Error(`cannot read ${what} ${p}: ${(e as Error).message}`);
    }
  };
  const tls = tlsUse(o);
  if (o.keyFile && o.certFile) {
    opts.credentials = {
      rootCertificate: o.caFile ? read(o.caFile, "--etcd-cafile") : undefined as unknown as Buffer,
      privateKey: read(o.keyFile, "--etcd-keyfile"),
      certChain: read(o.certFile, "--etcd-certfile"),
    };
  } else if (tls) {
    // Server-authenticated TLS without a client certificate.
    opts.credentials = {
      rootCertificate: o.caFile ? read(o.caFile, "--etcd-cafile") : undefined as unknown as Buffer,
    };
  } else if (o.keyFile || o.certFile) {
    log.warn(
      "both --etcd-keyfile and --etcd-certfile are needed for TLS; connecting without client certificate",
    );
  }
  if (o.username) opts.auth = { username: o.username, password: o.password ?? "" };
  const client = new Etcd3(opts);
  if (opts.credentials) allowIPServerNames(client);
  return client;
}

/** The parts of npm:etcd3's pool and @grpc/grpc-js's credentials the TLS fix touches. */
interface PoolInternals {
  pool?: { hosts?: { channelCredentials?: SecureCredentials }[] };
}
interface SecureCredentials {
  _createSecureConnector?: (...args: unknown[]) => { connectionOptions?: { servername?: string } };
}

/**
 * grpc-js passes the endpoint's host to `tls.connect` as `servername`; Deno's node:tls
 * refuses an IP there (Node only warns), so `https://10.0.0.1:2379` never connected.
 * Dropping an IP servername lets node:tls use the host itself, which it verifies against
 * the certificate's IP SANs; SNI is not sent for IPs anyway (RFC 6066).
 * Patched on this client's credentials only (all hosts share one object).
 */
function allowIPServerNames(client: Etcd3): void {
  const hosts = (client as unknown as PoolInternals).pool?.hosts ?? [];
  const creds = hosts[0]?.channelCredentials;
  const make = creds?._createSecureConnector;
  if (!creds || !make) {
    log.warn("cannot adapt TLS to IP endpoints: unexpected etcd3/grpc-js internals");
    return;
  }
  creds._createSecureConnector = function (...args: unknown[]) {
    const connector = make.apply(this, args);
    const co = connector.connectionOptions;
    if (co?.servername && isIP(co.servername)) delete co.servername;
    return connector;
  };
}

// ---------------------------------------------------------------------------- errors

/** How a client uses TLS, for error lines: whether it presents a client certificate. */
export interface TLSUse {
  clientCert: boolean;
}

/** A store operation that failed; the message is one plain line. */
export class StoreError extends Error {
  constructor(msg: string, options?: ErrorOptions) {
    super(msg, options);
    this.name = "StoreError";
  }
}

/**
 * One plain line for an etcd client failure, naming the endpoint(s) and what failed. The
 * raw gRPC texts ("14 UNAVAILABLE: No connection established. Last error: … Resolution
 * note: ;", "Execution prevented because the circuit breaker is open") say little to
 * someone who only started flanneld without an etcd.
 */
export function plainEtcdError(e: unknown, where: string, tls?: TLSUse): string {
  const msg = String((e as Error)?.message ?? e);
  const name = String((e as Error)?.constructor?.name ?? "");
  const cause = /ECONNREFUSED|connection refused/i.test(msg)
    ? "connection refused"
    : /ENOTFOUND|EAI_AGAIN|getaddrinfo|Name resolution/i.test(msg)
    ? "host name not found"
    : /EHOSTUNREACH|ENETUNREACH|No route to host/i.test(msg)
    ? "host unreachable"
    : "";
  // gRPC wraps the real failure: "14 UNAVAILABLE: No connection established. Last error:
  // Error: self-signed certificate (<time>). Resolution note: ".
  const last = /Last error: (?:Error: )?(.*?)(?: \(\d{4}-[^)]*\))?\.?\s*(?:Resolution note|$)/
    .exec(msg)?.[1];
  const detail = last || msg.split("\n")[0];
  // A server that demands a client certificate we do not send ends the TLS 1.3 handshake
  // with an alert, which usually reaches us only as a dropped socket ("write EPIPE",
  // ECONNRESET) before gRPC ever had a connection: under TLS that is a TLS failure, not an
  // unreachable etcd (a stopped etcd refuses the connection instead).
  const dropped = tls !== undefined && /No connection established/.test(msg) &&
    /EPIPE|ECONNRESET|socket hang up|alert/i.test(msg);
  if (dropped || /certificate|SSL|TLS|handshake|self.signed|CERT_/i.test(msg)) {
    const what = dropped && !/certificate/i.test(detail)
      ? `the server closed the connection during the handshake (${detail})`
      : detail;
    const hint = tls?.clientCert === false
      ? "; it may require a client certificate (--etcd-certfile and --etcd-keyfile)"
      : "";
    return `TLS with etcd at ${where} failed: ${what}${hint}`;
  }
  if (name === "BrokenCircuitError" || /circuit breaker is open/i.test(msg)) {
    return `etcd at ${where} is not reachable (after 3 failed calls the client waits 5 s ` +
      `before trying again)`;
  }
  if (/UNAVAILABLE|No connection established|ECONNREFUSED|ECONNRESET|socket hang up/i.test(msg)) {
    return `etcd at ${where} is not reachable${cause ? ` (${cause})` : ""}`;
  }
  if (/DEADLINE_EXCEEDED|Deadline exceeded|no answer within/i.test(msg)) {
    return `etcd at ${where} did not answer in time`;
  }
  if (/authentication failed|invalid user ID or password/i.test(msg)) {
    return `etcd at ${where} refused the username or password (--etcd-username/--etcd-password)`;
  }
  if (/user name is empty|invalid auth token|UNAUTHENTICATED/i.test(msg)) {
    return `etcd at ${where} requires authentication (--etcd-username/--etcd-password)`;
  }
  if (/permission denied/i.test(msg)) {
    return `etcd at ${where} denied access: the etcd user lacks permission for flannel's prefix`;
  }
  if (/closed/i.test(msg) && name === "ClientClosedError") return "etcd client closed";
  return `etcd at ${where}: ${detail}`;
}

// ---------------------------------------------------------------------------- store

/** A gRPC watch stream as npm:etcd3 hands it over (its types are not exported). */
interface WatchStream {
  write(req: unknown): boolean;
  on(ev: string, fn: (arg: any) => void): unknown;
  removeAllListeners(): unknown;
  cancel(): void;
}

/** An etcd kv as npm:etcd3 decodes it. */
interface RawKV {
  key: Buffer;
  value: Buffer;
  lease: string;
  mod_revision: string;
}

function toKV(kv: RawKV): KV {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    modRevision: BigInt(kv.mod_revision),
    leaseId: String(kv.lease ?? "0"),
  };
}

/** Range end for a prefix watch: the prefix with its last byte incremented. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** flanneld's keys in etcd. */
export class EtcdStore implements LeaseStore {
  readonly where: string;
  readonly #client: Etcd3;
  readonly #options: EtcdClientOptions;
  /** TLS in use (and with a client certificate?), or undefined for plain http. */
  readonly #tls: TLSUse | undefined;
  /** A fresh client for watches after `resetWatchConnection()`; null: use the main one. */
  #watchClient: Etcd3 | null = null;

  /** Connects lazily; reads the TLS files now, so a bad path fails at start. */
  constructor(o: EtcdClientOptions) {
    this.#options = o;
    this.#client = createEtcdClient(o);
    this.where = o.endpoints.join(",");
    this.#tls = tlsUse(o);
  }

  /** Runs an etcd call, turning its failure into a {@link StoreError} with a plain line. */
  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new StoreError(plainEtcdError(e, this.where, this.#tls), { cause: e });
    }
  }

  get(key: string, opts: ReadOptions = {}): Promise<KV | null> {
    return this.#call(async () => {
      let q = this.#client.get(key);
      if (opts.timeoutMs) q = q.options({ deadline: Date.now() + opts.timeoutMs });
      const res = await q.exec();
      const kv = res.kvs[0] as unknown as RawKV | undefined;
      return kv ? toKV(kv) : null;
    });
  }

  list(prefix: string): Promise<Listing> {
    return this.#call(async () => {
      const res = await this.#client.getAll().prefix(prefix).exec();
      return {
        kvs: (res.kvs as unknown as RawKV[]).map(toKV),
        revision: BigInt(res.header.revision),
      };
    });
  }

  /** Grants an etcd lease; "0" (none) for a TTL of 0. */
  async #grant(ttl: number): Promise<string> {
    if (ttl <= 0) return "0";
    const r = await this.#client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 } as never);
    return String(r.ID);
  }

  /** Revokes an etcd lease; one that is already gone is not an error. */
  async revoke(id: string): Promise<void> {
    if (id === "0") return;
    await this.#call(async () => {
      try {
        await this.#client.leaseClient.leaseRevoke({ ID: id } as never);
      } catch (e) {
        if (!/not found/i.test(String((e as Error).message))) throw e;
      }
    });
  }

  /** Remaining TTL of an etcd lease in seconds; -1 when it does not exist (tests, tools). */
  timeToLive(id: string): Promise<number> {
    return this.#call(async () =>
      Number((await this.#client.leaseClient.leaseTimeToLive({ ID: id } as never)).TTL)
    );
  }

  /** A transaction: put `value` at `key` with a fresh lease if `cmp` holds. */
  async #putIf(
    key: string,
    value: string,
    ttl: number,
    cmp: ["Version", 0] | ["Mod", string],
  ): Promise<Written | null> {
    const id = await this.#grant(ttl);
    const put = this.#client.put(key).value(value);
    if (id !== "0") put.lease(id);
    const res = await this.#client.if(key, cmp[0], "==", cmp[1]).then(put).commit();
    if (!res.succeeded) {
      await this.revoke(id).catch(() => {});
      return null;
    }
    return { modRevision: BigInt(res.header.revision), leaseId: id };
  }

  create(key: string, value: string, ttlSeconds: number): Promise<Written | null> {
    return this.#call(() => this.#putIf(key, value, ttlSeconds, ["Version", 0]));
  }

  replace(
    key: string,
    value: string,
    ttlSeconds: number,
    expect: { modRevision: bigint; leaseId: string },
  ): Promise<Written | null> {
    return this.#call(async () => {
      const w = await this.#putIf(key, value, ttlSeconds, ["Mod", String(expect.modRevision)]);
      // Upstream lets the superseded lease expire; it holds no keys either way.
      if (w && expect.leaseId !== "0" && expect.leaseId !== w.leaseId) {
        await this.revoke(expect.leaseId).catch(() => {});
      }
      return w;
    });
  }

  delete(key: string): Promise<void> {
    return this.#call(async () => {
      await this.#client.delete().key(key).exec();
    });
  }

  watch(prefix: string, fromRevision: bigint, h: WatchHandlers): Watch {
    let closed = false;
    let stream: WatchStream | null = null;
    const close = () => {
      closed = true;
      const s = stream;
      stream = null;
      if (!s) return;
      s.removeAllListeners();
      s.on("error", () => {}); // a cancelled gRPC stream still emits an error
      try {
        s.cancel();
      } catch { /* already closed */ }
    };
    const fail = (e: unknown) => {
      if (closed) return;
      close();
      h.failed(new StoreError(plainEtcdError(e, this.where, this.#tls), { cause: e }));
    };
    const client = this.#watchClient ?? this.#client;
    client.watchClient.watch().then((raw) => {
      const s = raw as unknown as WatchStream;
      if (closed) {
        s.cancel();
        return;
      }
      stream = s;
      s.on("data", (res) => {
        if (!closed) this.#onWatchResponse(res, h, close);
      });
      s.on("error", fail);
      s.on("end", () => fail(new Error("watch stream ended")));
      s.write({
        create_request: {
          key: Buffer.from(prefix),
          range_end: prefixEnd(prefix),
          start_revision: String(fromRevision),
          progress_notify: true,
        },
      });
    }, fail);
    return {
      requestProgress: () => {
        try {
          stream?.write({ progress_request: {} });
        } catch (e) {
          fail(e);
        }
      },
      close,
    };
  }

  #onWatchResponse(res: any, h: WatchHandlers, close: () => void): void {
    if (res.compact_revision && res.compact_revision !== "0") {
      close();
      return h.compacted(BigInt(res.compact_revision));
    }
    if (res.canceled) {
      close();
      return h.failed(
        new StoreError(`etcd cancelled the watch: ${res.cancel_reason || "no reason"}`),
      );
    }
    if (res.created) return h.created();
    if (res.events?.length) {
      const events: StoreEvent[] = res.events.map((ev: any): StoreEvent =>
        String(ev.type).toLowerCase() === "delete"
          ? { type: "delete", key: ev.kv.key.toString(), modRevision: BigInt(ev.kv.mod_revision) }
          : { type: "put", kv: toKV(ev.kv) }
      );
      return h.events(events);
    }
    if (res.header?.revision) h.progress(BigInt(res.header.revision));
  }

  resetWatchConnection(): void {
    const old = this.#watchClient;
    this.#watchClient = createEtcdClient(this.#options, true);
    try {
      old?.close();
    } catch { /* already closed */ }
  }

  close(): void {
    for (const c of [this.#watchClient, this.#client]) {
      try {
        c?.close();
      } catch { /* already closed */ }
    }
    this.#watchClient = null;
  }
}
