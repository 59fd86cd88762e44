/**
 * A batch of datagram slots for `sendmmsg`/`recvmmsg`: the mmsghdr array, one iovec and one
 * sockaddr_in per slot, and the packet buffers, all in ONE long-lived ArrayBuffer. The
 * kernel structs hold raw addresses into it, so it is allocated once, filled once, and
 * must stay referenced for as long as it is used: the garbage collector may move or free
 * what only the kernel still points at.
 *
 * Layout (x86_64/aarch64 LP64): mmsghdr 64 bytes = msghdr 56 (name ptr @0, namelen u32 @8,
 * iov ptr @16, iovlen @24, control @32, controllen @40, flags i32 @48) + msg_len u32 @56.
 * @module
 */

import { addressOf, AF_INET, SOL_UDP } from "../../../ffi/libc.ts";

/** Size of `struct mmsghdr`. */
export const MMSGHDR_SIZE = 64;
/** Size of `struct iovec`. */
export const IOVEC_SIZE = 16;
/** Size of `struct sockaddr_in`. */
export const SOCKADDR_IN_SIZE = 16;
/** msghdr field offsets. */
export const MSG_NAMELEN = 8;
export const MSG_CONTROL = 32;
export const MSG_CONTROLLEN = 40;
const MSG_FLAGS = 48;
const MSG_LEN = 56;
/** `UDP_SEGMENT` (send: GSO segment size) and `UDP_GRO` (receive) options and cmsg types. */
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
/** CMSG_SPACE of a u16 or int payload: 16-byte cmsghdr + data, 8-aligned. */
export const CMSG_SPACE_INT = 24;
const CMSG_LEN_U16 = 18;

/**
 * Base address of a long-lived buffer, split in two u32 halves so that pointers into it
 * can be written into kernel structs without allocating a BigInt per packet.
 */
export class BaseAddress {
  readonly #lo: number;
  readonly #hi: number;

  constructor(b: Uint8Array<ArrayBuffer>) {
    const a = addressOf(b);
    this.#lo = Number(a & 0xffffffffn);
    this.#hi = Number(a >> 32n);
  }

  /** Writes the 64-bit address of byte `off` of the buffer at `at` in `v` (little-endian). */
  write(v: DataView, at: number, off: number): void {
    const lo = this.#lo + off;
    const carry = lo >= 0x1_0000_0000 ? 1 : 0;
    v.setUint32(at, lo - carry * 0x1_0000_0000, true);
    v.setUint32(at + 4, this.#hi + carry, true);
  }
}

/**
 * One `struct iovec` in its own long-lived buffer, re-aimed at any range of `target` per
 * call: lets readv()/writev() move bytes at any offset of `target` without a subarray
 * (an allocation) per packet.
 */
export class IoVec {
  /** Pass this to readv/writev with count 1. */
  readonly iov = new Uint8Array(IOVEC_SIZE);
  readonly #v = new DataView(this.iov.buffer);
  readonly #base: BaseAddress;
  /** Keeps the target alive as long as pointers to it may be in use. */
  readonly target: Uint8Array<ArrayBuffer>;

  constructor(target: Uint8Array<ArrayBuffer>) {
    this.target = target;
    this.#base = new BaseAddress(target);
  }

  /** Points the iovec at `len` bytes from `off` of the target. */
  aim(off: number, len: number): void {
    this.#base.write(this.#v, 0, off);
    this.#v.setUint32(8, len, true);
    this.#v.setUint32(12, 0, true);
  }
}

/** Writes a `UDP_SEGMENT` cmsg (GSO segment size) at `at`. */
export function writeSegmentCmsg(v: DataView, at: number, gsoSize: number): void {
  v.setUint32(at, CMSG_LEN_U16, true);
  v.setUint32(at + 4, 0, true);
  v.setInt32(at + 8, SOL_UDP, true);
  v.setInt32(at + 12, UDP_SEGMENT, true);
  v.setUint16(at + 16, gsoSize, true);
}

/** Options of {@link MsgBatch}. */
export interface MsgBatchOptions {
  /** Bytes free in front of each packet (e.g. for a virtio_net_hdr), multiple of 16. */
  headroom?: number;
  /** Bytes of ancillary data per slot (receive: room for a UDP_GRO cmsg). */
  controlSize?: number;
  /** Allocates the block (default: a plain Uint8Array; e.g. allocSummable for SIMD checksums). */
  alloc?: (size: number) => Uint8Array<ArrayBuffer>;
}

/** `n` datagram slots of `slotSize` bytes each, ready for sendmmsg/recvmmsg. */
export class MsgBatch {
  /** The whole block; pass {@link headers}[i] to the kernel, not this. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** DataView over the whole block: packets are at {@link packetOffset}. */
  readonly view: DataView;
  /** `headers[i]` starts at mmsghdr i: resumes a partially sent batch without allocating. */
  readonly headers: Uint8Array<ArrayBuffer>[];
  /** `packets[i]` is slot i's buffer, for read()/write() on the TUN. */
  readonly packets: Uint8Array<ArrayBuffer>[];
  readonly #iovBase: number;
  readonly #nameBase: number;
  readonly #ctlBase: number;
  readonly #ctlSize: number;
  readonly #pktBase: number;
  /** Distance between consecutive packets (slot size plus headroom). */
  readonly #stride: number;

  constructor(readonly count: number, readonly slotSize: number, opts: MsgBatchOptions = {}) {
    slotSize = Math.ceil(slotSize / 64) * 64; // cache-line aligned packets
    this.slotSize = slotSize;
    const headroom = opts.headroom ?? 0;
    this.#ctlSize = opts.controlSize ?? 0;
    this.#stride = slotSize + Math.ceil(headroom / 64) * 64;
    this.#iovBase = count * MMSGHDR_SIZE;
    this.#nameBase = this.#iovBase + count * IOVEC_SIZE;
    this.#ctlBase = this.#nameBase + count * SOCKADDR_IN_SIZE;
    this.#pktBase = Math.ceil((this.#ctlBase + count * this.#ctlSize) / 64) * 64 +
      (this.#stride - slotSize);
    this.bytes = (opts.alloc ?? ((n) => new Uint8Array(n)))(this.#pktBase + count * this.#stride);
    this.view = new DataView(this.bytes.buffer);
    const base = addressOf(this.bytes);
    const v = this.view;
    this.headers = [];
    this.packets = [];
    for (let i = 0; i < count; i++) {
      const h = i * MMSGHDR_SIZE;
      const iov = this.#iovBase + i * IOVEC_SIZE;
      const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
      const pkt = this.#pktBase + i * this.#stride;
      v.setBigUint64(h, base + BigInt(name), true);
      v.setUint32(h + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      v.setBigUint64(h + 16, base + BigInt(iov), true);
      v.setBigUint64(h + 24, 1n, true);
      v.setBigUint64(iov, base + BigInt(pkt), true);
      v.setBigUint64(iov + 8, BigInt(slotSize), true);
      v.setUint16(name, AF_INET, true);
      if (this.#ctlSize > 0) {
        v.setBigUint64(h + MSG_CONTROL, base + BigInt(this.#ctlBase + i * this.#ctlSize), true);
      }
      this.headers.push(this.bytes.subarray(h));
      this.packets.push(this.bytes.subarray(pkt, pkt + slotSize));
    }
  }

  /** Offset of slot i's packet in {@link view}. */
  packetOffset(i: number): number {
    return this.#pktBase + i * this.#stride;
  }

  /**
   * The UDP_GRO segment size the kernel reported for slot i after recvmmsg, or 0 when the
   * slot holds a single datagram.
   */
  groSize(i: number): number {
    const v = this.view;
    const ctl = this.#ctlBase + i * this.#ctlSize;
    if (v.getUint32(i * MMSGHDR_SIZE + MSG_CONTROLLEN, true) < 20) return 0;
    if (v.getInt32(ctl + 8, true) !== SOL_UDP || v.getInt32(ctl + 12, true) !== UDP_GRO) return 0;
    return v.getInt32(ctl + 16, true);
  }

  /** Sets how many bytes of slot i to send. */
  setLength(i: number, len: number): void {
    this.view.setUint32(this.#iovBase + i * IOVEC_SIZE + 8, len, true);
  }

  /** Bytes received into slot i by recvmmsg (msg_len). */
  receivedLength(i: number): number {
    return this.view.getUint32(i * MMSGHDR_SIZE + MSG_LEN, true);
  }

  /** msg_flags of slot i after recvmmsg (MSG_TRUNC…). */
  flags(i: number): number {
    return this.view.getInt32(i * MMSGHDR_SIZE + MSG_FLAGS, true);
  }

  /** Sets slot i's destination address (u32) and port. */
  setPeer(i: number, ip: number, port: number): void {
    const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
    this.view.setUint16(name + 2, port);
    this.view.setUint32(name + 4, ip);
  }

  /** Source address (u32) of the datagram received into slot i. */
  peerAddress(i: number): number {
    return this.view.getUint32(this.#nameBase + i * SOCKADDR_IN_SIZE + 4);
  }

  /**
   * Restores every slot's msg_namelen and msg_controllen, which recvmmsg overwrites with
   * the lengths actually used.
   */
  prepareReceive(): void {
    for (let i = 0; i < this.count; i++) {
      this.view.setUint32(i * MMSGHDR_SIZE + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      this.view.setUint32(i * MMSGHDR_SIZE + MSG_CONTROLLEN, this.#ctlSize, true);
    }
  }
}
