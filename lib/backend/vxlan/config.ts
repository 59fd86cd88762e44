/**
 * The vxlan backend's options from the config's `Backend` object, keys
 * case-insensitive as Go's JSON decoding, and the VTEP MAC of remote leases. Pure.
 * @module
 */

import { ConfigError, optBool, optUint } from "../../values/config.ts";
import { field } from "../../core/json.ts";
import { parseMAC } from "../../core/mac.ts";

/** VXLAN header (8) + UDP (8) + outer IPv4 (20) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** The same with an outer IPv6 header (40): the IPv6 device's MTU is this far below the underlay's. */
export const VXLAN6_OVERHEAD = 70;
/** The largest 24-bit VNI. */
const MAX_VNI = 0xffffff;

/** Parsed vxlan options. */
export interface VxlanConfig {
  /** VXLAN network identifier (default 1). */
  vni: number;
  /** UDP destination port; 0 = kernel default (8472). */
  port: number;
  /** Underlay MTU to derive the device MTU from; 0 = the external interface's. */
  mtu: number;
  gbp: boolean;
  learning: boolean;
  directRouting: boolean;
  /**
   * Turn TX checksum offload off on the device (ours): the known cause of "bad checksum"
   * drops of vxlan traffic. null (default): only where it is needed, see
   * {@link needsChecksumWorkaround}.
   */
  disableTxChecksum: boolean | null;
}

/** What the checksum default depends on. */
export interface ChecksumContext {
  /** `uname -r`, e.g. `6.18.44-fc`. */
  kernelRelease: string;
  /** Public IP differs from the interface address (NAT between the hosts). */
  behindNAT: boolean;
}

/**
 * Whether the device needs TX checksum offload off: kernels before 5.7 corrupt the outer
 * UDP checksum of VXLAN packets that iptables NAT touches (fixed by "netfilter: nat: never
 * update the UDP checksum when it's 0"; flannel#1279, Calico disables offload below 5.7 for
 * the same reason), and behind NAT the checksum is corrupted on any kernel (flannel#1929,
 * #2152). Elsewhere the offload is kept: turning it off costs ~4× single-stream throughput.
 * An unparseable release counts as old (safe side).
 */
export function needsChecksumWorkaround(c: ChecksumContext): boolean {
  if (c.behindNAT) return true;
  const m = /^(\d+)\.(\d+)/.exec(c.kernelRelease);
  if (!m) return true;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major < 5 || (major === 5 && minor < 7);
}

/** Parses the Backend object (keys case-insensitive); throws ConfigError naming the field. */
export function parseVxlanConfig(backend: Record<string, unknown>): VxlanConfig {
  const vni = optUint(backend, "Backend.VNI") || 1;
  if (vni > MAX_VNI) {
    throw new ConfigError("Backend.VNI", `Backend.VNI must be at most ${MAX_VNI}, got ${vni}`);
  }
  const port = optUint(backend, "Backend.Port");
  if (port > 65535) {
    throw new ConfigError("Backend.Port", `Backend.Port must be at most 65535, got ${port}`);
  }
  return {
    vni,
    port,
    mtu: optUint(backend, "Backend.MTU"),
    gbp: optBool(backend, "Backend.GBP", false),
    learning: optBool(backend, "Backend.Learning", false),
    directRouting: optBool(backend, "Backend.DirectRouting", false),
    disableTxChecksum: optBoolOrNull(backend, "Backend.DisableTxChecksumOffload"),
  };
}

/** An optional boolean that stays null when absent. */
function optBoolOrNull(o: Record<string, unknown>, name: string): boolean | null {
  const v = field(o, name.slice(name.lastIndexOf(".") + 1));
  return v === undefined || v === null ? null : optBool(o, name, false);
}

/** Whether to turn TX checksum offload off: the config's choice, else where it is needed. */
export function checksumWorkaround(cfg: VxlanConfig, c: ChecksumContext): boolean {
  return cfg.disableTxChecksum ?? needsChecksumWorkaround(c);
}

/** Device name for a VNI: `flannel.<VNI>`, or `flannel-v6.<VNI>` for the IPv6 device. */
export function vxlanDeviceName(vni: number, family: 4 | 6 = 4): string {
  return family === 6 ? `flannel-v6.${vni}` : `flannel.${vni}`;
}

/**
 * The VTEP MAC of a vxlan lease's BackendData, or null when the data is unusable: no
 * VtepMAC in a form Go's ParseMAC reads, or a VNI that is not an unsigned 32-bit number
 * (upstream's decoding fails on e.g. `"VNI":"1"` and skips the lease). The VNI itself is
 * not compared with ours, as upstream.
 */
export function leaseVtepMAC(backendData: unknown): Uint8Array | null {
  if (typeof backendData !== "object" || backendData === null) return null;
  const bd = backendData as Record<string, unknown>;
  const vni = field(bd, "VNI");
  if (vni !== undefined && vni !== null) {
    if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffffffff) {
      return null;
    }
  }
  const mac = field(bd, "VtepMAC");
  return typeof mac === "string" ? parseMAC(mac) : null;
}
