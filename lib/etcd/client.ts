/**
 * The etcd v3 client (`npm:etcd3`), configured from flanneld's `--etcd-*` flags: endpoints,
 * TLS (used only when both key and cert are given, as upstream; the CA is optional),
 * username/password auth, and a deadline on every unary call so that a dead etcd turns
 * into an error within seconds instead of a hang.
 * @module
 */

import { Etcd3, type IOptions } from "etcd3";
import { Buffer } from "node:buffer";
import { logger } from "../log.ts";

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
      throw new Error(`--etcd-endpoints: ${JSON.stringify(e)} is not a URL (want http://host:port)`);
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
    opts.credentials = { rootCertificate: o.caFile ? read(o.caFile, "--etcd-cafile") : undefined as unknown as Buffer };
  } else if (o.keyFile || o.certFile) {
    log.warn("both --etcd-keyfile and --etcd-certfile are needed for TLS; connecting without client certificate");
  }
  if (o.username) opts.auth = { username: o.username, password: o.password ?? "" };
  return new Etcd3(opts);
}
