/**
 * One VXLAN tunnel endpoint of the vxlan backend: `flannel.<VNI>` carrying IPv4 over an
 * IPv4 underlay, or `flannel-v6.<VNI>` carrying IPv6 over an IPv6 underlay (source address
 * the public IPv6, MTU 70 below the underlay's). Creates or reuses the device, gives it
 * our subnet's address (`/32` or `/128`), and puts back whatever was changed or deleted.
 * @module
 */

import { setTxChecksum } from "../../../ffi/ethtool.ts";
import {
  addrDel,
  addrList,
  addrReplace,
  type Link,
  linkByName,
  linkSetMAC,
  linkSetMTU,
  linkSetUp,
  type Requester,
  type VxlanSpec,
} from "../../../ffi/netlink/mod.ts";
import { containsIP, familyOf, formatIP, formatNet, type IP, type IPNet } from "../../core/ip.ts";
import type { Logger } from "../../core/log.ts";
import { formatMAC, sameMAC } from "../../core/mac.ts";
import { ensureDevice, incompatibility } from "./device.ts";

/** A local repair (the reconciler's `Repair`): counter kind and log text. */
export interface DeviceRepair {
  kind: string;
  what: string;
}

/**
 * Ensures our subnet's network address as the device's only address inside `network`
 * (`10.5.52.0/32`, `fd42:0:0:52::/128`: a host route, no broadcast or prefix route) and
 * brings the link up; returns what it had to change. Addresses of other families and
 * outside `network` (the IPv6 link-local one) are left alone.
 */
export function configureDeviceAddress(
  nl: Requester,
  link: Link,
  own: IPNet,
  network: IPNet,
): DeviceRepair[] {
  const done: DeviceRepair[] = [];
  const family = familyOf(own.ip);
  const prefix = family === 6 ? 128 : 32;
  const addrs = addrList(nl, { index: link.index, family });
  if (!addrs.some((a) => a.ip === own.ip && a.prefix === prefix)) {
    addrReplace(nl, link.index, { ip: own.ip, prefix });
    done.push({ kind: "address", what: `address ${formatIP(own.ip)}/${prefix} on ${link.name}` });
  }
  for (const a of addrs) {
    if (a.ip !== own.ip && containsIP(network, a.ip)) {
      addrDel(nl, link.index, { ip: a.ip, prefix: a.prefix });
      done.push({
        kind: "address",
        what: `removed foreign address ${formatNet(a)} from ${link.name}`,
      });
    }
  }
  if (!link.up) {
    linkSetUp(nl, link.index);
    done.push({ kind: "link", what: `${link.name} set up` });
  }
  return done;
}

/** What a {@link Vtep} is built from. */
export interface VtepOptions {
  /** The device to create (name, VNI, port, local address, underlay, MTU…). */
  spec: VxlanSpec & { local: IP; mtu: number };
  /** The flannel network of this family (`Network` or `IPv6Network`). */
  network: IPNet;
  /** Turn TX checksum offload off on the device. */
  disableTxChecksum: boolean;
  log: Logger;
}

/** One VXLAN device of the backend, for one address family. */
export class Vtep {
  readonly family: 4 | 6;
  #link: Link | null = null;
  #mac: Uint8Array | null = null;

  constructor(readonly opts: VtepOptions) {
    this.family = familyOf(opts.spec.local);
  }

  get name(): string {
    return this.opts.spec.name;
  }

  /** The device's MTU: the underlay's (or Backend.MTU) minus the encapsulation. */
  get mtu(): number {
    return this.opts.spec.mtu;
  }

  /** The flannel network carried by this device. */
  get network(): IPNet {
    return this.opts.network;
  }

  /** Current device index; 0 before {@link prepare}. */
  get index(): number {
    return this.#link?.index ?? 0;
  }

  /** The device's MAC (the VtepMAC of our lease); null before {@link prepare}. */
  get mac(): Uint8Array | null {
    return this.#mac;
  }

  /** Creates or reuses the device; returns its MAC for the lease. */
  prepare(nl: Requester): Uint8Array {
    const { link, action } = ensureDevice(nl, this.opts.spec);
    this.#adopt(link);
    this.opts.log.info(`${action} ${this.name}`, {
      vni: this.opts.spec.vni,
      mac: formatMAC(this.#mac!),
      local: formatIP(this.opts.spec.local),
      mtu: link.mtu,
    });
    return this.#mac!;
  }

  /** Records a (re)created device and applies the per-device settings. */
  #adopt(link: Link): void {
    this.#link = link;
    this.#mac = link.mac;
    try {
      // Router advertisements on the overlay would add routes and addresses of their own.
      Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${link.name}/accept_ra`, "0");
    } catch { /* IPv6 disabled: nothing to turn off */ }
    if (!this.opts.disableTxChecksum) return;
    try {
      setTxChecksum(link.name, false);
      this.opts.log.info(
        `turned TX checksum offload off on ${link.name} (avoids "bad checksum" drops on kernels < 5.7 and behind NAT)`,
      );
    } catch (e) {
      this.opts.log.warn(`cannot turn TX checksum offload off on ${link.name}`, { error: e });
    }
  }

  /** Gives the device our subnet's address and brings it up (after the lease). */
  configure(nl: Requester, own: IPNet): DeviceRepair[] {
    return configureDeviceAddress(nl, this.#link!, own, this.opts.network);
  }

  /**
   * Puts the device back as it should be: recreated (same MAC) when deleted or
   * incompatible, MAC and MTU restored, and with `own` its address and up state.
   */
  ensure(nl: Requester, own: IPNet | undefined): DeviceRepair[] {
    const done: DeviceRepair[] = [];
    const spec = this.opts.spec;
    let link = linkByName(nl, this.name);
    const why = link ? incompatibility(link, spec) : "deleted";
    if (why !== null) {
      link = ensureDevice(nl, { ...spec, mac: this.#mac ?? undefined }).link;
      done.push({
        kind: "device",
        what: `recreated ${this.name} (${why}) with MAC ${formatMAC(link.mac!)}`,
      });
      this.#adopt(link);
    } else if (this.#mac && !sameMAC(link!.mac, this.#mac)) {
      linkSetMAC(nl, link!.index, this.#mac);
      done.push({
        kind: "device",
        what: `MAC of ${this.name} set back to ${formatMAC(this.#mac)}`,
      });
    }
    if (link!.mtu !== spec.mtu) {
      linkSetMTU(nl, link!.index, spec.mtu);
      done.push({ kind: "mtu", what: `MTU of ${this.name} set back to ${spec.mtu}` });
    }
    this.#link = link;
    if (own) done.push(...configureDeviceAddress(nl, link!, own, this.opts.network));
    return done;
  }
}
