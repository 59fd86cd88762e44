/**
 * TCP coalescing for the UDP→TUN side: consecutive in-order segments of one TCP flow,
 * received back to back (one UDP GRO buffer), become one super-packet written to a TUN
 * with IFF_VNET_HDR (gso_type TCPV4, gso_size = MSS): one write and one pass through the
 * kernel's stack instead of dozens. The kernel re-segments it if it forwards it on.
 *
 * Rules follow Linux's tcp_gro_receive: same addresses, ports, TOS, TTL, DF, IP id +1,
 * sequence contiguous, same ack, window, data offset and options; only ACK (and PSH, which
 * ends the packet) set; every segment but the last exactly MSS long. Because the written
 * packet carries NEEDS_CSUM the kernel will not verify its checksum, so each segment's TCP
 * checksum is verified here first; a bad one is written alone for the kernel to drop.
 *
 * In place and without allocation: the group's payloads are moved down right behind the
 * first packet, and the virtio_net_hdr goes into the 10 bytes in front of it (headroom, or
 * the tail of packets already written).
 * @module
 */

import { pseudoHeaderSum, same32, sumBytes, type SumViews } from "./checksum.ts";
import { IPPROTO_TCP } from "./tso.ts";
import { internetChecksum } from "./packet.ts";
import { VNET_HDR_LEN, writeVnetNone, writeVnetTcp4 } from "./vnet.ts";

const ACK = 0x10;
const PSH = 0x08;
/** IPv4 header without options: the only kind coalesced (the id/TTL/TOS checks assume it). */
const IHL = 20;

/** Writes `len` bytes from `off` of the buffer to the TUN. */
export type Emit = (off: number, len: number) => void;

/** Whether the TCP checksum of the IPv4 packet at `off` (`len` bytes, IP header `ihl`) verifies. */
export function tcpChecksumValid(
  v: DataView,
  s: SumViews,
  off: number,
  len: number,
  ihl: number,
): boolean {
  const pseudo = pseudoHeaderSum(v, off, IPPROTO_TCP, len - ihl);
  const sum = pseudo + sumBytes(s, off + ihl, len - ihl);
  return sum !== 0 && sum % 0xffff === 0;
}

/** Coalesces packets of one buffer; {@link flush} before the buffer is reused. */
export class Coalescer {
  /** Start of the open group's first packet; -1 when none. */
  #start = -1;
  /** Its header bytes (IP + TCP) and the MSS (its payload length). */
  #hdr = 0;
  #mss = 0;
  /** Where the next payload goes. */
  #end = 0;
  #segments = 0;
  /** Next expected sequence number, as 16-bit halves (see checksum.ts: same32). */
  #seqHi = 0;
  #seqLo = 0;
  #nextId = 0;
  /** The group takes no more (a short segment or PSH came). */
  #closed = false;
  #psh = false;
  /** Super-packets written and the segments they carried, for counters. */
  superPackets = 0;
  coalescedSegments = 0;

  constructor(
    private readonly v: DataView,
    private readonly s: SumViews,
    private readonly emit: Emit,
  ) {}

  /**
   * Takes the valid IPv4 packet at `off` (`len` = its total length; VNET_HDR_LEN bytes in
   * front of it free once earlier packets are written): joins it to the open group, or
   * writes the group and starts a new one with it, or writes it alone.
   */
  push(off: number, len: number): void {
    if (this.#start >= 0 && this.#join(off, len)) return;
    this.flush();
    if (this.#startable(off, len)) {
      this.#start = off;
      this.#hdr = IHL + ((this.v.getUint8(off + IHL + 12) >>> 4) << 2);
      this.#mss = len - this.#hdr;
      this.#end = off + len;
      this.#segments = 1;
      this.#advanceSeq(off + IHL, this.#mss);
      this.#nextId = (this.v.getUint16(off + 4) + 1) & 0xffff;
      this.#closed = false;
      this.#psh = false;
      return;
    }
    writeVnetNone(this.v, off - VNET_HDR_LEN);
    this.emit(off - VNET_HDR_LEN, len + VNET_HDR_LEN);
  }

  /** Writes the open group, if any. */
  flush(): void {
    const start = this.#start;
    if (start < 0) return;
    this.#start = -1;
    const v = this.v;
    const len = this.#end - start;
    if (this.#segments === 1) {
      writeVnetNone(v, start - VNET_HDR_LEN);
      this.emit(start - VNET_HDR_LEN, len + VNET_HDR_LEN);
      return;
    }
    v.setUint16(start + 2, len);
    v.setUint16(start + 10, 0);
    v.setUint16(start + 10, internetChecksum(v, start, IHL));
    if (this.#psh) v.setUint8(start + IHL + 13, v.getUint8(start + IHL + 13) | PSH);
    // NEEDS_CSUM: the field holds the pseudo-header sum; the kernel adds header and payload.
    v.setUint16(
      start + IHL + 16,
      pseudoHeaderSum(v, start, IPPROTO_TCP, len - IHL),
    );
    writeVnetTcp4(v, start - VNET_HDR_LEN, this.#hdr, this.#mss, IHL);
    this.superPackets++;
    this.coalescedSegments += this.#segments;
    this.emit(start - VNET_HDR_LEN, len + VNET_HDR_LEN);
  }

  /** Expects next the sequence number of the TCP header at `tcp` plus `plen`. */
  #advanceSeq(tcp: number, plen: number): void {
    const lo = this.v.getUint16(tcp + 6) + plen;
    this.#seqHi = (this.v.getUint16(tcp + 4) + Math.floor(lo / 0x10000)) & 0xffff;
    this.#seqLo = lo & 0xffff;
  }

  /** Whether the packet can open a group: TCP, plain IP header, ACK only, data, checksum ok. */
  #startable(off: number, len: number): boolean {
    const v = this.v;
    if (v.getUint8(off) !== 0x45 || v.getUint8(off + 9) !== IPPROTO_TCP) return false;
    if ((v.getUint16(off + 6) & 0x3fff) !== 0) return false; // fragment
    if (len < IHL + 20) return false;
    const hdr = IHL + ((v.getUint8(off + IHL + 12) >>> 4) << 2);
    if (hdr < IHL + 20 || hdr >= len) return false;
    if (v.getUint8(off + IHL + 13) !== ACK) return false;
    return tcpChecksumValid(v, this.s, off, len, IHL);
  }

  /** Appends the packet's payload to the open group if it continues it. */
  #join(off: number, len: number): boolean {
    if (this.#closed) return false;
    const v = this.v;
    const g = this.#start;
    const hdr = this.#hdr;
    const plen = len - hdr;
    if (plen <= 0 || plen > this.#mss || this.#end - g + plen > 0xffff) return false;
    // Version/IHL/TOS, flags/fragment, TTL/protocol, addresses, ports, ack.
    if (v.getUint16(off) !== v.getUint16(g) || v.getUint16(off + 6) !== v.getUint16(g + 6)) {
      return false;
    }
    if (v.getUint16(off + 8) !== v.getUint16(g + 8)) return false;
    if (!same32(v, off + 12, g + 12) || !same32(v, off + 16, g + 16)) return false;
    const t = off + IHL, gt = g + IHL;
    if (!same32(v, t, gt) || !same32(v, t + 8, gt + 8)) return false;
    if (v.getUint16(off + 4) !== this.#nextId) return false;
    if (v.getUint16(t + 4) !== this.#seqHi || v.getUint16(t + 6) !== this.#seqLo) return false;
    // Data offset, flags (PSH allowed), window.
    const flags = v.getUint8(t + 13);
    if ((flags & ~PSH) !== ACK || v.getUint8(t + 12) !== v.getUint8(gt + 12)) return false;
    if (v.getUint16(t + 14) !== v.getUint16(gt + 14)) return false;
    for (let i = 20; i < hdr - IHL; i += 4) {
      if (!same32(v, t + i, gt + i)) return false; // options (timestamps)
    }
    if (!tcpChecksumValid(v, this.s, off, len, IHL)) return false;
    this.#advanceSeq(t, plen); // before the move, which may overwrite this packet's header
    this.s.u8.copyWithin(this.#end, off + hdr, off + len);
    this.#end += plen;
    this.#segments++;
    this.#nextId = (this.#nextId + 1) & 0xffff;
    if (plen < this.#mss || (flags & PSH) !== 0) {
      this.#closed = true;
      this.#psh = (flags & PSH) !== 0;
    }
    return true;
  }
}
