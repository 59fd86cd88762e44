/**
 * The TUN→UDP side's buffer: packets are read from the TUN straight into a data area (one
 * readv per packet, aimed anywhere in it), split there in place, and sent as entries of
 * one sendmmsg. An entry is one datagram, or, with UDP GSO, up to {@link GSO_MAX_SEGMENTS}
 * equal-sized datagrams (the last may be shorter) that the kernel cuts apart: on the wire
 * every datagram is still one plain IPv4 packet.
 *
 * Everything the kernel points into (mmsghdrs, iovecs, sockaddrs, cmsgs, data) lives in
 * one long-lived ArrayBuffer; per packet only numbers are written (no allocation, no GC).
 * @module
 */

import { AF_INET } from "../../../ffi/libc.ts";
import {
  BaseAddress,
  CMSG_SPACE_INT,
  IoVec,
  IOVEC_SIZE,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_NAMELEN,
  SOCKADDR_IN_SIZE,
  writeSegmentCmsg,
} from "./mmsg.ts";

/** Segments per UDP GSO send the kernel accepts everywhere (UDP_MAX_SEGMENTS before 6.x). */
export const GSO_MAX_SEGMENTS = 64;
/** Largest UDP payload of one send: 65535 − IPv4 header − UDP header. */
export const GSO_MAX_BYTES = 65535 - 20 - 8;

/** sendmmsg entries over a data area. */
export class SendArena {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly view: DataView;
  /** `headers[i]` starts at mmsghdr i (resume a partial sendmmsg without allocating). */
  readonly headers: Uint8Array<ArrayBuffer>[];
  /** Start and end of the data area in {@link bytes}. */
  readonly dataStart: number;
  readonly dataEnd: number;
  /** The iovec readv() fills: aim it with {@link aimRead}. */
  readonly reader: IoVec;
  /**
   * Two iovecs for readv() from a TUN with virtio_net_hdr: the header into a scratch area
   * (at {@link vnetScratch}), the packet at the offset given to {@link aimRead}, so that
   * packets lie back to back, as one GSO send needs them.
   */
  readonly readerVnet = new Uint8Array(2 * IOVEC_SIZE);
  /** Offset of the scratch area that receives the virtio_net_hdr. */
  readonly vnetScratch: number;
  /** Datagrams and bytes of each entry (for counters and for plain resends). */
  readonly segments: Uint16Array;
  readonly byteLengths: Uint32Array;
  /** Data offset of each entry. */
  readonly offsets: Uint32Array;
  /** Entries in use. */
  count = 0;
  readonly #iovBase: number;
  readonly #nameBase: number;
  readonly #ctlBase: number;
  readonly #base: BaseAddress;
  readonly #vnetView = new DataView(this.readerVnet.buffer);
  /** The last entry can take more datagrams of {@link #segSize} bytes (see {@link append}). */
  #extendable = false;
  #segSize = 0;

  /**
   * `entries` sendmmsg entries (plus one spare for plain resends) over `dataBytes`, in a
   * buffer from `alloc` (e.g. allocSummable, for SIMD checksums).
   */
  constructor(
    readonly entries: number,
    dataBytes: number,
    alloc: (size: number) => Uint8Array<ArrayBuffer> = (n) => new Uint8Array(n),
  ) {
    const n = entries + 1;
    this.#iovBase = n * MMSGHDR_SIZE;
    this.#nameBase = this.#iovBase + n * IOVEC_SIZE;
    this.#ctlBase = this.#nameBase + n * SOCKADDR_IN_SIZE;
    this.vnetScratch = this.#ctlBase + n * CMSG_SPACE_INT;
    this.dataStart = Math.ceil((this.vnetScratch + 16) / 64) * 64;
    this.dataEnd = this.dataStart + dataBytes;
    this.bytes = alloc(this.dataEnd);
    this.view = new DataView(this.bytes.buffer);
    this.#base = new BaseAddress(this.bytes);
    this.reader = new IoVec(this.bytes);
    this.#base.write(this.#vnetView, 0, this.vnetScratch);
    this.#vnetView.setUint32(8, 10, true); // sizeof(struct virtio_net_hdr)
    this.segments = new Uint16Array(n);
    this.byteLengths = new Uint32Array(n);
    this.offsets = new Uint32Array(n);
    this.headers = [];
    const v = this.view;
    for (let i = 0; i < n; i++) {
      const h = i * MMSGHDR_SIZE;
      this.#base.write(v, h, this.#nameBase + i * SOCKADDR_IN_SIZE);
      v.setUint32(h + MSG_NAMELEN, SOCKADDR_IN_SIZE, true);
      this.#base.write(v, h + 16, this.#iovBase + i * IOVEC_SIZE);
      v.setUint32(h + 24, 1, true);
      this.#base.write(v, h + MSG_CONTROL, this.#ctlBase + i * CMSG_SPACE_INT);
      writeSegmentCmsg(v, this.#ctlBase + i * CMSG_SPACE_INT, 0);
      v.setUint16(this.#nameBase + i * SOCKADDR_IN_SIZE, AF_INET, true);
      this.headers.push(this.bytes.subarray(h));
    }
  }

  /** Aims {@link reader} (and the packet part of {@link readerVnet}) at `len` bytes from `off`. */
  aimRead(off: number, len: number): void {
    this.reader.aim(off, len);
    this.#base.write(this.#vnetView, IOVEC_SIZE, off);
    this.#vnetView.setUint32(IOVEC_SIZE + 8, len, true);
  }

  /** Drops every entry (after a send). */
  clear(): void {
    this.count = 0;
    this.#extendable = false;
  }

  /**
   * Queues one datagram of `len` bytes at `off` to `peer`. With `gso`, it joins the last
   * entry when that one holds datagrams of the same size to the same peer right before
   * it (one shorter datagram may end the entry), so that bursts of equal packets (ACKs,
   * UDP streams) go out as one UDP GSO send. The caller checks {@link full}.
   */
  append(off: number, len: number, peer: Uint32Array, gso: boolean): void {
    const i = this.count - 1;
    if (
      this.#extendable && gso && this.offsets[i] + this.byteLengths[i] === off &&
      len <= this.#segSize && this.segments[i] < GSO_MAX_SEGMENTS &&
      this.byteLengths[i] + len <= GSO_MAX_BYTES && this.#samePeer(i, peer)
    ) {
      this.segments[i]++;
      this.byteLengths[i] += len;
      this.#set(i, this.offsets[i], this.byteLengths[i], this.#segSize);
      if (len < this.#segSize) this.#extendable = false;
      return;
    }
    this.add(off, len, len, 1, peer);
    this.#extendable = gso;
    this.#segSize = len;
  }

  /** Whether entry i goes to `peer`. */
  #samePeer(i: number, peer: Uint32Array): boolean {
    const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
    return this.view.getUint32(name + 4) === peer[0] && this.view.getUint16(name + 2) === peer[1];
  }

  /** Whether every entry is taken. */
  get full(): boolean {
    return this.count >= this.entries;
  }

  /**
   * Appends an entry (the caller checks {@link full}): `len` bytes at `off` to `peer`
   * ([0] IP, [1] port), cut by the kernel into `segments` datagrams of `gsoSize` bytes when
   * `segments` > 1. The peer comes as an array because an IP ≥ 128.0.0.0 passed as a
   * number may be boxed (allocated) at a call boundary.
   */
  add(off: number, len: number, gsoSize: number, segments: number, peer: Uint32Array): void {
    this.#extendable = false;
    const i = this.count++;
    this.#set(i, off, len, segments > 1 ? gsoSize : 0);
    const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
    this.view.setUint16(name + 2, peer[1]);
    this.view.setUint32(name + 4, peer[0]);
    this.segments[this.count - 1] = segments;
    this.byteLengths[this.count - 1] = len;
    this.offsets[this.count - 1] = off;
  }

  /** Points entry i at `len` bytes from `off`, as one GSO send when `gsoSize` > 0. */
  #set(i: number, off: number, len: number, gsoSize: number): void {
    const v = this.view;
    const iov = this.#iovBase + i * IOVEC_SIZE;
    this.#base.write(v, iov, off);
    v.setUint32(iov + 8, len, true);
    v.setUint32(i * MMSGHDR_SIZE + MSG_CONTROLLEN, gsoSize > 0 ? CMSG_SPACE_INT : 0, true);
    if (gsoSize > 0) v.setUint16(this.#ctlBase + i * CMSG_SPACE_INT + 16, gsoSize, true);
  }

  /** GSO segment size of entry i (0: a single datagram). */
  gsoSize(i: number): number {
    if (this.view.getUint32(i * MMSGHDR_SIZE + MSG_CONTROLLEN, true) === 0) return 0;
    return this.view.getUint16(this.#ctlBase + i * CMSG_SPACE_INT + 16, true);
  }

  /**
   * Aims the spare entry at datagram `k` of entry i, as a plain datagram, and returns its
   * header for a one-entry sendmmsg: the fallback when the kernel refuses GSO.
   */
  plainSegment(i: number, k: number): Uint8Array<ArrayBuffer> {
    const seg = this.gsoSize(i);
    const off = this.offsets[i] + k * seg;
    this.#set(this.entries, off, Math.min(seg, this.byteLengths[i] - k * seg), 0);
    const name = this.#nameBase + i * SOCKADDR_IN_SIZE;
    this.bytes.copyWithin(
      this.#nameBase + this.entries * SOCKADDR_IN_SIZE,
      name,
      name + SOCKADDR_IN_SIZE,
    );
    return this.headers[this.entries];
  }
}
