/**
 * Coalescing for the UDP→TUN side: consecutive in-order segments of one TCP flow, or
 * consecutive equal-sized datagrams of one UDP flow, received back to back (one UDP GRO
 * buffer), become one super-packet written to a TUN with IFF_VNET_HDR (gso_type TCPV4 or
 * UDP_L4, gso_size = the segment payload): one write and one pass through the kernel's
 * forwarding instead of dozens. The kernel cuts it up again where it must (at the latest
 * when delivering to a socket), each segment as it was, IP ids counting up from the first.
 *
 * TCP rules follow Linux's tcp_gro_receive: same addresses, ports, TOS, TTL, DF, IP id +1,
 * sequence contiguous, same ack, window, data offset and options; only ACK (and PSH, which
 * ends the packet) set; every segment but the last exactly MSS long. UDP rules follow
 * udp_gro_receive: same addresses, ports, TOS, TTL, DF set, IP id +1, every datagram but
 * the last of the first one's size (a shorter one ends the group), at most
 * {@link UDP_MAX_SEGMENTS}. Because the written packet carries NEEDS_CSUM the kernel will
 * not verify its checksum, so each segment's checksum is verified here first; a bad one
 * (and a UDP datagram without checksum) is written alone for the kernel to judge.
 *
 * In place and without allocation: the group's payloads are moved down right behind the
 * first packet, and the virtio_net_hdr goes into the 10 bytes in front of it (headroom, or
 * the tail of packets already written).
 * @module
 */

import { pseudoHeaderSum, same32, sumBytes, type SumViews } from "./checksum.ts";
import { IPPROTO_TCP } from "./tso.ts";
import { internetChecksum } from "./packet.ts";
import { VNET_HDR_LEN, writeVnetNone, writeVnetTcp4, writeVnetUdp4 } from "./vnet.ts";

const ACK = 0x10;
const PSH = 0x08;
/** IPv4 header without options: the only kind coalesced (the id/TTL/TOS checks assume it). */
const IHL = 20;
const IPPROTO_UDP = 17;
const UDP_HDR = 8;
/** IPv4 flags/fragment word: DF set, no MF, offset 0. */
const DF_ONLY = 0x4000;
/** Datagrams per UDP super-packet: the kernel's UDP_MAX_SEGMENTS before Linux 6.9. */
export const UDP_MAX_SEGMENTS = 64;

/** Writes `len` bytes from `off` of the buffer to the TUN; false when it could not. */
export type Emit = (off: number, len: number) => boolean;

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

/** Whether the UDP checksum of the IPv4 packet at `off` (`len` bytes) is present and verifies. */
export function udpChecksumValid(v: DataView, s: SumViews, off: number, len: number): boolean {
  if (v.getUint16(off + IHL + 6) === 0) return false; // no checksum: nothing to vouch for
  const sum = pseudoHeaderSum(v, off, IPPROTO_UDP, len - IHL) + sumBytes(s, off + IHL, len - IHL);
  return sum !== 0 && sum % 0xffff === 0;
}

/** Coalesces packets of one buffer; {@link flush} before the buffer is reused. */
export class Coalescer {
  /** Start of the open group's first packet; -1 when none. */
  #start = -1;
  /** Its protocol: TCP or UDP. */
  #proto = 0;
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
  /** UDP flows are coalesced too (the kernel takes UDP_L4 super-packets: Linux ≥ 6.2). */
  udp: boolean;
  readonly #onUdpRefused: () => void;

  /**
   * With `udp`, UDP flows are coalesced as well; when the TUN refuses the first UDP
   * super-packet written (an older kernel), that stops and `onUdpRefused` is called.
   */
  constructor(
    private readonly v: DataView,
    private readonly s: SumViews,
    private readonly emit: Emit,
    { udp = false, onUdpRefused = () => {} }: { udp?: boolean; onUdpRefused?: () => void } = {},
  ) {
    this.udp = udp;
    this.#onUdpRefused = onUdpRefused;
  }

  /**
   * Takes the valid IPv4 packet at `off` (`len` = its total length; VNET_HDR_LEN bytes in
   * front of it free once earlier packets are written): joins it to the open group, or
   * writes the group and starts a new one with it, or writes it alone.
   */
  push(off: number, len: number): void {
    if (this.#start >= 0) {
      if (this.#proto === IPPROTO_TCP ? this.#join(off, len) : this.#joinUdp(off, len)) return;
    }
    this.flush();
    const v = this.v;
    if (this.#startable(off, len)) {
      this.#open(off, len, IPPROTO_TCP, IHL + ((v.getUint8(off + IHL + 12) >>> 4) << 2));
      this.#advanceSeq(off + IHL, this.#mss);
      return;
    }
    if (this.udp && this.#startableUdp(off, len)) {
      this.#open(off, len, IPPROTO_UDP, IHL + UDP_HDR);
      return;
    }
    writeVnetNone(this.v, off - VNET_HDR_LEN);
    this.emit(off - VNET_HDR_LEN, len + VNET_HDR_LEN);
  }

  /** Opens a group with the packet at `off`. */
  #open(off: number, len: number, proto: number, hdr: number): void {
    this.#start = off;
    this.#proto = proto;
    this.#hdr = hdr;
    this.#mss = len - hdr;
    this.#end = off + len;
    this.#segments = 1;
    this.#nextId = (this.v.getUint16(off + 4) + 1) & 0xffff;
    this.#closed = false;
    this.#psh = false;
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
    this.superPackets++;
    this.coalescedSegments += this.#segments;
    if (this.#proto === IPPROTO_UDP) {
      // Length and the pseudo-header sum of the whole; the kernel rewrites both per datagram.
      v.setUint16(start + IHL + 4, len - IHL);
      v.setUint16(start + IHL + 6, pseudoHeaderSum(v, start, IPPROTO_UDP, len - IHL));
      writeVnetUdp4(v, start - VNET_HDR_LEN, this.#mss, IHL);
      if (!this.emit(start - VNET_HDR_LEN, len + VNET_HDR_LEN) && this.udp) {
        this.udp = false;
        this.#onUdpRefused();
      }
      return;
    }
    if (this.#psh) v.setUint8(start + IHL + 13, v.getUint8(start + IHL + 13) | PSH);
    // NEEDS_CSUM: the field holds the pseudo-header sum; the kernel adds header and payload.
    v.setUint16(
      start + IHL + 16,
      pseudoHeaderSum(v, start, IPPROTO_TCP, len - IHL),
    );
    writeVnetTcp4(v, start - VNET_HDR_LEN, this.#hdr, this.#mss, IHL);
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

  /** Whether the packet can open a UDP group: plain IP header, DF, data, checksum ok. */
  #startableUdp(off: number, len: number): boolean {
    const v = this.v;
    if (v.getUint8(off) !== 0x45 || v.getUint8(off + 9) !== IPPROTO_UDP) return false;
    if (v.getUint16(off + 6) !== DF_ONLY || len <= IHL + UDP_HDR) return false;
    if (v.getUint16(off + IHL + 4) !== len - IHL) return false;
    return udpChecksumValid(v, this.s, off, len);
  }

  /** Appends the UDP datagram's payload to the open group if it continues it. */
  #joinUdp(off: number, len: number): boolean {
    if (this.#closed || this.#segments >= UDP_MAX_SEGMENTS) return false;
    const v = this.v;
    const g = this.#start;
    const plen = len - IHL - UDP_HDR;
    if (plen <= 0 || plen > this.#mss || this.#end - g + plen > 0xffff) return false;
    // Version/IHL/TOS, flags/fragment, TTL/protocol, addresses, ports, UDP length.
    if (v.getUint16(off) !== v.getUint16(g) || v.getUint16(off + 6) !== v.getUint16(g + 6)) {
      return false;
    }
    if (v.getUint16(off + 8) !== v.getUint16(g + 8)) return false;
    if (!same32(v, off + 12, g + 12) || !same32(v, off + 16, g + 16)) return false;
    if (!same32(v, off + IHL, g + IHL)) return false;
    if (v.getUint16(off + IHL + 4) !== len - IHL) return false;
    if (v.getUint16(off + 4) !== this.#nextId) return false;
    if (!udpChecksumValid(v, this.s, off, len)) return false;
    this.s.u8.copyWithin(this.#end, off + IHL + UDP_HDR, off + len);
    this.#end += plen;
    this.#segments++;
    this.#nextId = (this.#nextId + 1) & 0xffff;
    if (plen < this.#mss) this.#closed = true;
    return true;
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
