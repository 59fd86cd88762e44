/**
 * The routing backends (vxlan, host-gw) on the in-memory kernel, for unit tests: a host
 * kernel with `eth0` (192.168.7.1/24 and, dual-stack, 2001:db8:7::1/64), backends built
 * from a network config, a started backend per test, the log lines it wrote, and a wait
 * until its reconciles have settled. No root, no namespace.
 * @module
 */

import { assertEquals } from "./assert.ts";
import { sleep, until } from "./wait.ts";
import { MemoryKernel } from "./memory_kernel.ts";
import { addrAdd, IFA_F_NODAD } from "../../ffi/netlink/mod.ts";
import { parseCIDR4, parseCIDR6, parseIP6 } from "../../lib/core/ip.ts";
import { setSink } from "../../lib/core/log.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import type { ExternalInterface } from "../../lib/values/iface.ts";
import type { Lease, LeaseEvent } from "../../lib/values/lease.ts";
import { HostGwBackend } from "../../lib/backend/hostgw.ts";
import { VxlanBackend } from "../../lib/backend/vxlan.ts";
import { parseVxlanConfig } from "../../lib/backend/vxlan/config.ts";
import type { PeerBackend } from "../../lib/backend/peer_backend.ts";
import type { PeerDataPath } from "../../lib/backend/reconcile.ts";
import { ip4 as ip } from "./addr.ts";

/** A VNI whose device names exist on no real host: the vxlan backend writes sysctls by name. */
export const VNI = 4242, DEVICE = "flannel.4242", DEVICE6 = "flannel-v6.4242";
export const HOST_IP = "192.168.7.1", HOST_IP6 = "2001:db8:7::1";
/** The backends' debounce here: short, so that a test takes milliseconds. */
export const DEBOUNCE_MS = 10;

/** IPv4 Network; dual stack adds IPv6Network fd42::/56 (subnets /64). */
const NETWORK4 = { Network: "10.5.0.0/16" };
const NETWORK6 = { EnableIPv6: true, IPv6Network: "fd42::/56" };

/** Which families the network (and the host) has. */
export type Stack = "v4" | "dual" | "v6";

/** The network config JSON for `type` on `stack`. */
export function networkJSON(type: string, stack: Stack = "v4"): string {
  const fams = stack === "v4"
    ? NETWORK4
    : stack === "dual"
    ? { ...NETWORK4, ...NETWORK6 }
    : { EnableIPv4: false, ...NETWORK6 };
  return JSON.stringify({ ...fams, Backend: { Type: type, VNI } });
}

/** A remote lease; `v6` adds its IPv6 subnet, PublicIPv6 and (vxlan) BackendV6Data. */
export function lease(
  subnet: string,
  publicIP: string,
  backendType: string,
  vtepMAC?: string,
  v6?: { subnet: string; publicIP?: string; vtepMAC?: string },
): Lease {
  const l: Lease = {
    subnet: parseCIDR4(subnet || "0.0.0.0/0")!,
    attrs: { publicIP: publicIP ? ip(publicIP) : 0, publicIPv6: null, backendType },
  };
  if (vtepMAC) l.attrs.backendData = { VNI, VtepMAC: vtepMAC };
  if (v6) {
    l.ipv6Subnet = parseCIDR6(v6.subnet)!;
    if (v6.publicIP) l.attrs.publicIPv6 = parseIP6(v6.publicIP)!;
    if (v6.vtepMAC) l.attrs.backendV6Data = { VNI, VtepMAC: v6.vtepMAC };
  }
  return l;
}

/** Our own lease on each stack. */
export function ownLease(stack: Stack = "v4"): Lease {
  const v6 = stack === "v4" ? undefined : { subnet: "fd42:0:0:1::/64", publicIP: HOST_IP6 };
  return lease(stack === "v6" ? "" : "10.5.1.0/24", stack === "v6" ? "" : HOST_IP, "", "", v6);
}

export const added = (l: Lease): LeaseEvent => ({ type: "added", lease: l });
export const removed = (l: Lease): LeaseEvent => ({ type: "removed", lease: l });

/** The log lines written while a test runs (the backends log through the global sink). */
export class Lines {
  readonly lines: string[] = [];
  #prev = setSink((l) => this.lines.push(l));
  /** Lines containing every one of `parts`. */
  count(...parts: string[]): number {
    return this.lines.filter((l) => parts.every((p) => l.includes(p))).length;
  }
  restore(): void {
    setSink(this.#prev);
  }
}

/** A memory kernel and its external interface. */
export interface KernelHost {
  kernel: MemoryKernel;
  ext: ExternalInterface;
}

/** A kernel with `eth0` up (192.168.7.1/24; not on a v6-only stack), the external interface. */
export function hostKernel(stack: Stack = "v4"): KernelHost {
  const kernel = new MemoryKernel();
  const eth = kernel.addLink({ name: "eth0" });
  const v4 = stack !== "v6", v6 = stack !== "v4";
  if (v4) addrAdd(kernel, eth.index, { ip: ip(HOST_IP), prefix: 24 });
  if (v6) {
    addrAdd(kernel, eth.index, { ip: parseIP6(HOST_IP6)!, prefix: 64, flags: IFA_F_NODAD });
  }
  const ext: ExternalInterface = {
    name: "eth0",
    index: eth.index,
    mtu: 1500,
    ifaceAddr: v4 ? ip(HOST_IP) : 0,
    extAddr: v4 ? ip(HOST_IP) : 0,
    ifaceAddr6: v6 ? parseIP6(HOST_IP6)! : null,
    extAddr6: v6 ? parseIP6(HOST_IP6)! : null,
  };
  return { kernel, ext };
}

/** A started backend with its kernel and log. */
export interface Fixture<B extends PeerBackend> extends KernelHost {
  backend: B;
  log: Lines;
}

/**
 * Runs `fn` with a backend made by `make` on a memory kernel of `stack`, prepared and
 * started with our own lease (`before` runs in between); stops it and restores logging.
 */
export async function withBackend<B extends PeerBackend>(
  make: (ctx: KernelHost) => B,
  fn: (f: Fixture<B>) => Promise<void>,
  before?: (f: Fixture<B>) => void,
  stack: Stack = "v4",
): Promise<void> {
  const log = new Lines();
  const { kernel, ext } = hostKernel(stack);
  const backend = make({ kernel, ext });
  try {
    await backend.prepare();
    before?.({ kernel, backend, ext, log });
    await backend.start(ownLease(stack));
    await fn({ kernel, backend, ext, log });
  } finally {
    await backend.stop();
    log.restore();
  }
  assertEquals(kernel.subscriptions, 0, "stop() ends the notification subscription");
}

/** A vxlan backend on `ctx` for `stack`, its periodic check every `interval` s. */
export function vxlan(ctx: KernelHost, interval = 3600, stack: Stack = "v4"): VxlanBackend {
  const network = parseNetworkConfig(networkJSON("vxlan", stack));
  // Checksum offload stays as it is: there is no device for ethtool to talk to.
  const options = { ...parseVxlanConfig(network.backend), disableTxChecksum: false };
  return new VxlanBackend(
    { network, ext: ctx.ext, options, reconcileIntervalSeconds: interval },
    { nl: ctx.kernel, notifications: ctx.kernel },
    DEBOUNCE_MS,
  );
}

/** A host-gw backend on `ctx` for `stack`, its periodic check every `interval` s. */
export function hostGw(ctx: KernelHost, interval = 3600, stack: Stack = "v4"): HostGwBackend {
  const network = parseNetworkConfig(networkJSON("host-gw", stack));
  return new HostGwBackend(
    { network, ext: ctx.ext, options: {}, reconcileIntervalSeconds: interval },
    { nl: ctx.kernel, notifications: ctx.kernel },
    DEBOUNCE_MS,
  );
}

/**
 * Waits until no reconcile is pending: a window of a few debounce periods without a
 * reconcile. Timers fire in deadline order, so a reconcile scheduled before the window
 * starts runs inside it, and any reconcile restarts the window.
 */
export async function settle(b: { stats(): Record<string, number> }): Promise<void> {
  await until(
    "reconciles to settle",
    async () => {
      const before = b.stats().reconciles;
      await sleep(5 * DEBOUNCE_MS);
      return b.stats().reconciles === before;
    },
    10_000,
    0,
  );
}

/**
 * A host-gw-like data path for testing the engine alone: one route per lease via its
 * PublicIP on device `dev`, Network 10.5.0.0/16; with `entries`, neighbours and FDB entries
 * on `dev` count as ours too.
 */
export function routeOnlyPath(dev: number, entries = true): PeerDataPath {
  return {
    leaseType: "test",
    deviceNames: [],
    ensureLocal: () => [],
    entriesFor: (_nl, l) => [{ route: { dst: l.subnet, gw: l.attrs.publicIP, dev } }],
    ownership: () => ({
      networks: [parseCIDR4("10.5.0.0/16")!],
      own: [],
      routeDevs: [dev],
      entryDevs: entries ? [dev] : [],
    }),
  };
}
