/**
 * TUN devices through `/dev/net/tun`: raw IP packets in and out of a file descriptor.
 *
 * `Deno.open` never exposes its fd and `node:fs` refuses raw fds, so the device is opened
 * with FFI `open()` + `ioctl(TUNSETIFF)` (`IFF_TUN | IFF_NO_PI`; struct ifreq is 40 bytes,
 * name at 0, flags u16 at 16) and the raw fd is used for everything.
 * A non-persistent device (the only kind made here) disappears with its last fd, together
 * with its addresses and routes, even when the process is killed.
 * @module
 */

import {
  AF_INET,
  close,
  cstr,
  ioctl,
  ioctlValue,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  open,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  socket,
} from "./libc.ts";

/** `_IOW('T', 202, int)`: attach the fd to a (new) device. */
export const TUNSETIFF = 0x400454ca;
/** `_IOR('T', 210, unsigned int)`: read back name and flags. */
export const TUNGETIFF = 0x800454d2;
/** `_IOW('T', 208, unsigned int)`: enable offloads (argument by value; needs IFF_VNET_HDR). */
export const TUNSETOFFLOAD = 0x400454d0;
/** `_IOW('T', 216, int)`: size of the virtio-net header in front of each packet. */
export const TUNSETVNETHDRSZ = 0x400454d8;
/** Sets an interface's transmit queue length (struct ifreq with `ifr_qlen`). */
export const SIOCSIFTXQLEN = 0x8943;
/** Reads an interface's transmit queue length. */
export const SIOCGIFTXQLEN = 0x8942;

/** Layer-3 device: packets are raw IP. */
export const IFF_TUN = 0x0001;
/** Layer-2 device: packets are Ethernet frames. */
export const IFF_TAP = 0x0002;
/** No 4-byte packet-information header in front of each packet. */
export const IFF_NO_PI = 0x1000;
/** A `struct virtio_net_hdr` in front of each packet (for offloads). */
export const IFF_VNET_HDR = 0x4000;
/** One device, several queues (one fd each). */
export const IFF_MULTI_QUEUE = 0x0100;

/** TUNSETOFFLOAD bits. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** `IFNAMSIZ`: interface names are at most 15 bytes plus NUL. */
export const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

/** How to open a TUN device. */
export interface TunOptions {
  /** Name or kernel template such as `flannel%d` (default `tun%d`). */
  name?: string;
  /** Extra IFF_* flags on top of IFF_TUN | IFF_NO_PI (e.g. {@link IFF_VNET_HDR}). */
  extraFlags?: number;
  /** Open the fd with O_NONBLOCK (reads return EAGAIN instead of waiting). */
  nonBlocking?: boolean;
  /** Transmit queue length to set (kernel default 500); omitted: leave as is. */
  txQueueLen?: number;
  /**
   * TUN_F_* offloads to ask for (e.g. TUN_F_CSUM | TUN_F_TSO4): the device is opened with
   * IFF_VNET_HDR and a 10-byte virtio_net_hdr precedes every packet both ways. When the
   * kernel refuses, the device is reopened without them ({@link TunDevice.offloads} 0).
   */
  offloads?: number;
}

/** Size of the virtio_net_hdr in front of each packet when offloads are on. */
export const TUN_VNET_HDR_LEN = 10;

/** Builds a `struct ifreq` with the name filled in. */
function ifreq(name: string): { buf: Uint8Array<ArrayBuffer>; view: DataView } {
  const n = cstr(name);
  if (n.byteLength > IFNAMSIZ) {
    throw new Error(`interface name ${JSON.stringify(name)} longer than 15 bytes`);
  }
  const buf = new Uint8Array(IFREQ_SIZE);
  buf.set(n, 0);
  return { buf, view: new DataView(buf.buffer) };
}

function ifreqName(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? IFNAMSIZ : end));
}

/** An open TUN device: its fd and the name the kernel gave it. */
export class TunDevice {
  #fd: number;

  /** TUN_F_* offloads in effect (0: plain packets, no virtio_net_hdr). */
  offloads = 0;
  /** The error that made the kernel refuse offloads, if it did. */
  offloadError: Error | null = null;

  private constructor(fd: number, readonly name: string, readonly flags: number) {
    this.#fd = fd;
  }

  /** Whether packets carry a virtio_net_hdr. */
  get vnetHdr(): boolean {
    return (this.flags & IFF_VNET_HDR) !== 0;
  }

  /**
   * Creates (or attaches to) a TUN device carrying raw IP packets (IFF_TUN | IFF_NO_PI).
   * Throws a SyscallError (EPERM without CAP_NET_ADMIN, EBUSY when a non-multi-queue device
   * of that name is already attached).
   */
  static open(opts: TunOptions = {}): TunDevice {
    if (!opts.offloads) return TunDevice.#open(opts);
    let dev: TunDevice | null = null;
    try {
      dev = TunDevice.#open({ ...opts, extraFlags: (opts.extraFlags ?? 0) | IFF_VNET_HDR });
      const size = new Uint8Array(4);
      new DataView(size.buffer).setInt32(0, TUN_VNET_HDR_LEN, true);
      ioctl(dev.fd, TUNSETVNETHDRSZ, size, "TUNSETVNETHDRSZ");
      ioctlValue(dev.fd, TUNSETOFFLOAD, opts.offloads, "TUNSETOFFLOAD");
      dev.offloads = opts.offloads;
      return dev;
    } catch (e) {
      dev?.close(); // the device goes with its fd: reopen it plain
      const plain = TunDevice.#open({ ...opts, offloads: 0 });
      plain.offloadError = e instanceof Error ? e : new Error(String(e));
      return plain;
    }
  }

  static #open(opts: TunOptions): TunDevice {
    const flags = IFF_TUN | IFF_NO_PI | (opts.extraFlags ?? 0);
    const req = ifreq(opts.name ?? "tun%d");
    req.view.setUint16(16, flags, true);
    const fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | (opts.nonBlocking ? O_NONBLOCK : 0));
    try {
      ioctl(fd, TUNSETIFF, req.buf, `TUNSETIFF ${opts.name ?? "tun%d"}`);
      const dev = new TunDevice(fd, ifreqName(req.buf), flags);
      if (opts.txQueueLen !== undefined) setTxQueueLen(dev.name, opts.txQueueLen);
      return dev;
    } catch (e) {
      close(fd, true);
      throw e;
    }
  }

  /**
   * Whether the kernel knows the TUN_F_* bits `extra` (on a device with offloads): asks for
   * them on top of the current offloads, then puts those back. (TUN_F_USO4 | TUN_F_USO6,
   * only accepted together, are known from Linux 6.2, the release whose virtio_net_hdr
   * parsing also takes UDP super-packets written to the device.)
   */
  knowsOffload(extra: number): boolean {
    if (!this.vnetHdr) return false;
    try {
      ioctlValue(this.#fd, TUNSETOFFLOAD, this.offloads | extra, "TUNSETOFFLOAD");
    } catch {
      return false;
    }
    ioctlValue(this.#fd, TUNSETOFFLOAD, this.offloads, "TUNSETOFFLOAD");
    return true;
  }

  /** The raw fd; -1 after {@link close}. */
  get fd(): number {
    return this.#fd;
  }

  /** Closes the fd; the device goes away with it. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    close(fd, true);
  }
}

/** Runs an interface ioctl (SIOC*) on a throwaway datagram socket, as the kernel requires. */
function ifaceIoctl(name: string, req: number, fill: (v: DataView) => void): DataView {
  const r = ifreq(name);
  fill(r.view);
  const fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    ioctl(fd, req, r.buf, `${name}`);
  } finally {
    close(fd, true);
  }
  return r.view;
}

/** Sets an interface's transmit queue length (TUN overflows turn into TCP retransmits). */
export function setTxQueueLen(name: string, qlen: number): void {
  ifaceIoctl(name, SIOCSIFTXQLEN, (v) => v.setInt32(16, qlen, true));
}

/** Reads an interface's transmit queue length. */
export function getTxQueueLen(name: string): number {
  return ifaceIoctl(name, SIOCGIFTXQLEN, () => {}).getInt32(16, true);
}
