/**
 * TCP segmentation in userspace: splits an IPv4/TCP super-packet handed over by a TUN with
 * TSO (virtio_net_hdr gso_type TCPV4) into MTU-sized packets, each a complete IPv4 packet
 * as upstream peers expect on the wire (one raw IPv4 packet per datagram), the way the kernel's
 * tcp4_gso_segment does: IP total length, id (+1 per segment) and header checksum; TCP
 * sequence number (+MSS per segment); FIN and PSH only on the last segment, CWR only on the
 * first; and a full TCP checksum for each.
 *
 * In place and without allocation: segment k is built at `pos + k × (headers + MSS)`,
 * last to first, so every payload moves forward (never over unread bytes) and the
 * original headers stay intact as the template until segment 0 is patched last.
 * @module
 */

import { pseudoHeaderSum, sumBytes, type SumViews } from "./checksum.ts";
import { internetChecksum } from "./packet.ts";

/** Protocol number of TCP. */
export const IPPROTO_TCP = 6;
/** Smallest MSS accepted for splitting (Linux's tcp_min_snd_mss default). */
export const MIN_MSS = 48;
/** Largest IPv4 + TCP header (both with full options). */
export const MAX_HEADERS = 120;
/** TCP flag bits (byte 13 of the TCP header). */
const FIN = 0x01;
const PSH = 0x08;
const CWR = 0x80;

/** Result of {@link splitTcp4} (reused, no allocation). */
export class Split {
  /** Number of segments. */
  count = 0;
  /** Bytes of every segment but the last (headers + MSS): the UDP GSO segment size. */
  segLen = 0;
  /** Bytes of the last segment. */
  lastLen = 0;
}

/** Bytes a super-packet of `len` bytes may need once split (`len` + headers of each extra segment). */
export function splitRoom(len: number, mss: number): number {
  return len + Math.ceil(len / Math.max(mss, MIN_MSS)) * MAX_HEADERS;
}

/**
 * Writes IPv4 and TCP checksums of the packet at `pos` (`len` bytes, IP header `ihl` bytes):
 * the IP header's from scratch, the TCP one over pseudo header + segment.
 */
export function finishTcp4Checksums(
  v: DataView,
  s: SumViews,
  pos: number,
  len: number,
  ihl: number,
): void {
  v.setUint16(pos + 10, 0);
  v.setUint16(pos + 10, internetChecksum(v, pos, ihl));
  const tcp = pos + ihl;
  v.setUint16(tcp + 16, 0);
  const pseudo = pseudoHeaderSum(v, pos, IPPROTO_TCP, len - ihl);
  const sum = pseudo + sumBytes(s, tcp, len - ihl);
  v.setUint16(tcp + 16, ~(sum === 0 ? 0 : (sum % 0xffff) || 0xffff) & 0xffff);
}

/**
 * Splits the IPv4/TCP super-packet at `pos` (`len` bytes, a valid IPv4 header) into
 * segments of at most `mss` payload bytes, in place; the buffer needs
 * {@link splitRoom}(len, mss) bytes from `pos`. Fills `out` and returns true; returns
 * false (packet untouched) when it is not TCP, is fragmented, or its headers do not fit.
 * A packet with no more than `mss` payload bytes becomes one segment with fresh checksums.
 */
export function splitTcp4(
  v: DataView,
  s: SumViews,
  pos: number,
  len: number,
  mss: number,
  out: Split,
): boolean {
  const u8 = s.u8;
  if (mss < MIN_MSS || len < 40) return false;
  if (v.getUint8(pos + 9) !== IPPROTO_TCP || (v.getUint16(pos + 6) & 0x3fff) !== 0) return false;
  const ihl = (v.getUint8(pos) & 0x0f) << 2;
  if (ihl + 20 > len) return false;
  const thl = (v.getUint8(pos + ihl + 12) >>> 4) << 2;
  const hdr = ihl + thl;
  if (thl < 20 || hdr > len) return false;
  const payload = len - hdr;
  const count = payload <= mss ? 1 : Math.ceil(payload / mss);
  const segLen = hdr + mss;
  const id0 = v.getUint16(pos + 4);
  // The sequence number as 16-bit halves: no 32-bit value ever leaves V8's small integers.
  const seqHi = v.getUint16(pos + ihl + 4);
  const seqLo = v.getUint16(pos + ihl + 6);
  const flags = v.getUint8(pos + ihl + 13);
  for (let k = count - 1; k >= 0; k--) {
    const at = pos + k * segLen;
    const plen = k === count - 1 ? payload - k * mss : mss;
    if (k > 0) {
      const src = pos + hdr + k * mss;
      u8.copyWithin(at + hdr, src, src + plen);
      u8.copyWithin(at, pos, pos + hdr);
    }
    v.setUint16(at + 2, hdr + plen);
    v.setUint16(at + 4, (id0 + k) & 0xffff);
    const lo = seqLo + k * mss;
    v.setUint16(at + ihl + 4, (seqHi + Math.floor(lo / 0x10000)) & 0xffff);
    v.setUint16(at + ihl + 6, lo & 0xffff);
    let f = flags;
    if (k !== count - 1) f &= ~(FIN | PSH);
    if (k !== 0) f &= ~CWR;
    v.setUint8(at + ihl + 13, f);
    finishTcp4Checksums(v, s, at, hdr + plen, ihl);
  }
  out.count = count;
  out.segLen = count === 1 ? len : segLen;
  out.lastLen = count === 1 ? len : hdr + payload - (count - 1) * mss;
  return true;
}
