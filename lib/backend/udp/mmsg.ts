/**
 * A batch of datagram slots for `sendmmsg`/`recvmmsg`: the mmsghdr array, one iovec and one
 * sockaddr_in per slot, and the packet buffers, all in ONE long-lived ArrayBuffer. The
 * kernel structs hold raw addresses into it, so it is allocated once, filled once, and
 * must stay referenced for as long as it is used (DATAPATH.md).
 *
 * Layout (x86_64/aarch64 LP64): mmsghdr 64 bytes = msghdr 56 (name ptr @0, namelen u32 @8,
 * iov ptr @16, iovlen @24, control @32, controllen @40, flags i32 @48) + msg_len u32 @56.
 * @module
 */

import { addressOf, AF_INET } from "../../../ffi/libc.ts";

/** Size of `struct mmsghdr`. */
export const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
const SOCKADDR_IN_SIZE = 16;
const MSG_NAMELEN = 8;
const MSG_FLAGS = 48;
const MSG_LEN = 56;

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
  readonly #pktBase: number;

  constructor(readonly count: number, readonly slotSize: number) {
    slotSize = Math.ceil(slotSize / 64) * 64; // cache-line aligned packets
    this.slotSize = slotSize;
    this.#iovBase = count * MMSGHDR_SIZE;
    this.#nameBase = this.#iovBase + count * IOVEC_SIZE;
    this.#pktBase = Math.ceil((this.#nameBase + count * SOCKADDR_IN_SIZE) / 64) * 64;
    this.bytes = new Uint8Array(this.#pktBase + count * slotSize);
    this.view = new DataView(this.bytes.buffer);
    const base = addressOf(this.bytes);
    const v = this.view;
    this.headers = [];
    this.packets = [];
    for (let i = 0; i < count; i++) {
      const h = i * MMSGHDR_SIZE;
      const iov = this.#iovBase + i * IOVEC_SIZE;
      const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
      const pkt = this.#pktBase + i * slotSize;
      v.setBigUint64(h, base + BigInt(name), true);
      v.setUint32(h + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      v.setBigUint64(h + 16, base + BigInt(iov), true);
      v.setBigUint64(h + 24, 1n, true);
      v.setBigUint64(iov, base + BigInt(pkt), true);
      v.setBigUint64(iov + 8, BigInt(slotSize), true);
      v.setUint16(name, AF_INET, true);
      this.headers.push(this.bytes.subarray(h));
      this.packets.push(this.bytes.subarray(pkt, pkt + slotSize));
    }
  }

  /** Offset of slot i's packet in {@link view}. */
  packetOffset(i: number): number {
    return this.#pktBase + i * this.slotSize;
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

  /** Restores every slot's msg_namelen, which recvmmsg overwrites with the source's length. */
  prepareReceive(): void {
    for (let i = 0; i < this.count; i++) {
      this.view.setUint32(i * MMSGHDR_SIZE + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
    }
  }
}
