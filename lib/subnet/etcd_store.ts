/**
 * The etcd v3 client (`npm:etcd3`), configured from flanneld's `--etcd-*` flags: endpoints,
 * TLS (used only when both key and cert are given, as upstream; the CA is optional),
 * username/password auth, and a deadline on every unary call so that a dead etcd turns
 * into an error within seconds instead of a hang.
 * @module
 */

import { Etcd3, type IOptions } from "etcd3";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { logger } from "../core/log.ts";

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

/** Creates the client. Reads TLS files synchronously so a bad path fails at start, clearly. */
export function createEtcdClient(o: EtcdClientOptions): Etcd3 {
  const timeout = o.callTimeoutMs ?? 5000;
  const opts: IOptions = {
    // grpc-js wants host:port; the scheme only selects TLS.
    hosts: o.endpoints.map((e) => new URL(e).host),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
  };
  const read = (p: string, what: string) => {
    try {
      return Buffer.from(Deno.readFileSync(p));
    } catch (e) {
      throw new Error(`cannot read ${what} ${p}: ${(e as Error).message}`);
    }
  };
  const wantsTLS = o.endpoints.some((e) => e.startsWith("https:"));
  if (o.keyFile && o.certFile) {
    opts.credentials = {
      rootCertificate: o.caFile ? read(o.caFile, "--etcd-cafile") : undefined as unknown as Buffer,
      privateKey: read(o.keyFile, "--etcd-keyfile"),
      certChain: read(o.certFile, "--etcd-certfile"),
    };
  } else if (wantsTLS) {
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
