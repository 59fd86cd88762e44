/**
 * The cloud route backends (aws-vpc, gce) as the daemon creates them, for tests that drive
 * one in-process against a stand-in: the backend from a config's Backend object, our lease
 * and remote lease events.
 * @module
 */

import type { Backend } from "../../lib/backend/backend.ts";
import { parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";
import { chooseBackend } from "../../lib/daemon/backends.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import type { Lease, LeaseEvent } from "../../lib/values/lease.ts";
import { captureLogs } from "./logs.ts";

/** The backend for `{"Network":"10.5.0.0/16","Backend":backend}` on eth0 with address `ip`. */
export function makeCloudBackend(
  backend: Record<string, unknown>,
  ip: string,
  intervalSeconds = 3600,
): Backend {
  const network = parseNetworkConfig(JSON.stringify({ Network: "10.5.0.0/16", Backend: backend }));
  const { kind, options } = chooseBackend(network);
  const addr = parseIP4(ip)!;
  return kind.create({
    network,
    ext: {
      name: "eth0",
      index: 2,
      mtu: 1460,
      ifaceAddr: addr,
      extAddr: addr,
      ifaceAddr6: null,
      extAddr6: null,
    },
    options,
    reconcileIntervalSeconds: intervalSeconds,
  });
}

/** Our lease on `subnet`. */
export function ownLease(subnet: string, ip: string): Lease {
  return { subnet: parseCIDR4(subnet)!, attrs: { publicIP: parseIP4(ip)!, publicIPv6: null } };
}

/** A remote lease added or removed. */
export function leaseEvent(type: "added" | "removed", subnet: string): LeaseEvent {
  return { type, lease: { subnet: parseCIDR4(subnet)!, attrs: { publicIP: 1, publicIPv6: null } } };
}

/** A port on 127.0.0.1 where nothing listens, and one where a listener never answers. */
export function deadEndpoints(): { refused: number; silent: number; close: () => void } {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const c of silent) held.push(c);
    } catch { /* closed */ }
  })();
  return {
    refused,
    silent: (silent.addr as Deno.NetAddr).port,
    close: () => {
      silent.close();
      for (const c of held) c.close();
    },
  };
}

/**
 * Runs `fn` and then puts the environment back as it was: the tests point the SDKs at
 * stand-ins through environment variables, which later test files (and the daemons they
 * spawn) must not inherit.
 */
export async function restoringEnv(fn: () => Promise<void>): Promise<void> {
  const before = Deno.env.toObject();
  try {
    await fn();
  } finally {
    for (const k of Object.keys(Deno.env.toObject())) if (!(k in before)) Deno.env.delete(k);
    for (const [k, v] of Object.entries(before)) if (Deno.env.get(k) !== v) Deno.env.set(k, v);
  }
}

/**
 * Runs `fn` with a stand-in from `make` and the daemon's log lines captured (printed when
 * `fn` fails); the stand-in is closed and the environment restored afterwards.
 */
export function withCapturedLogs<S extends { close(): Promise<void> }>(
  make: () => S,
  fn: (standIn: S, lines: string[]) => Promise<void>,
): Promise<void> {
  return restoringEnv(async () => {
    const standIn = make();
    try {
      await captureLogs((lines) => fn(standIn, lines));
    } finally {
      await standIn.close();
    }
  });
}
