/**
 * IPv4 header work for the udp data path: validation, addresses, TTL decrement with an
 * incremental checksum update, and ICMP net-unreachable replies. Pure and allocation-free:
 * every function works on a DataView at an offset, so a Worker can keep all packets in one
 * long-lived ArrayBuffer.
 * @module
 */

/** Smallest IPv4 header (IHL 5). */
export const IPV4_MIN_HEADER = 20;
/** Largest IPv4 header (IHL 15). */
export const IPV4_MAX_HEADER = 60;
/** Protocol number of ICMP. */
export const IPPROTO_ICMP = 1;
/** ICMP destination unreachable. */
export const ICMP_DEST_UNREACH = 3;
/** ICMP code "net unreachable". */
export const ICMP_NET_UNREACH = 0;
/** TTL of generated ICMP errors (as upstream's C proxy). */
export const ICMP_REPLY_TTL = 8;
const ICMP_HEADER = 8;
/** Bytes of the offender's payload quoted after its header (RFC 792). */
const QUOTED_PAYLOAD = 8;
/** Room an ICMP net-unreachable reply can need: IP + ICMP + largest quoted header + 8. */
export const ICMP_UNREACH_MAX = IPV4_MIN_HEADER + ICMP_HEADER + IPV4_MAX_HEADER + QUOTED_PAYLOAD;

/** Folds a sum of 16-bit words into 16 bits with end-around carry. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** One's-complement sum (folded, not inverted) of `len` bytes at `off`; `len` even. */
export function onesSum(v: DataView, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i < len; i += 2) sum += v.getUint16(off + i);
  return fold(sum);
}

/** Internet checksum (RFC 1071) of `len` bytes at `off`; `len` even. */
export function internetChecksum(v: DataView, off: number, len: number): number {
  return ~onesSum(v, off, len) & 0xffff;
}

/** Header length in bytes (IHL × 4). */
export function ipv4HeaderLength(v: DataView, off: number): number {
  return (v.getUint8(off) & 0x0f) << 2;
}

/** Total length field. */
export function ipv4TotalLength(v: DataView, off: number): number {
  return v.getUint16(off + 2);
}

/** Source address as u32. */
export function ipv4Src(v: DataView, off: number): number {
  return v.getUint32(off + 12);
}

/** Destination address as u32. */
export function ipv4Dst(v: DataView, off: number): number {
  return v.getUint32(off + 16);
}

/** Protocol field. */
export function ipv4Protocol(v: DataView, off: number): number {
  return v.getUint8(off + 9);
}

/**
 * Whether `len` bytes at `off` start with a well-formed IPv4 packet: version 4, IHL ≥ 5,
 * IHL×4 ≤ total length ≤ `len`, and a valid header checksum. Trailing bytes past the
 * total length are allowed (use {@link ipv4TotalLength} to trim).
 */
export function isValidIPv4(v: DataView, off: number, len: number): boolean {
  if (len < IPV4_MIN_HEADER) return false;
  const b0 = v.getUint8(off);
  if (b0 >>> 4 !== 4) return false;
  const hlen = (b0 & 0x0f) << 2;
  if (hlen < IPV4_MIN_HEADER) return false;
  const total = v.getUint16(off + 2);
  if (total < hlen || total > len) return false;
  return onesSum(v, off, hlen) === 0xffff;
}

/**
 * Decrements the TTL and patches the header checksum incrementally (RFC 1624 eqn. 3:
 * HC' = ~(~HC + ~m + m'), where the TTL/protocol word m drops by 0x100, so ~m + m' = 0xfeff).
 * Returns false, leaving the packet untouched, when the TTL would reach 0: drop it.
 */
export function decrementTTL(v: DataView, off: number): boolean {
  const ttl = v.getUint8(off + 8);
  if (ttl <= 1) return false;
  v.setUint8(off + 8, ttl - 1);
  const sum = fold((~v.getUint16(off + 10) & 0xffff) + 0xfeff);
  v.setUint16(off + 10, ~sum & 0xffff);
  return true;
}

/**
 * Writes an ICMP destination-unreachable / net-unreachable reply to the offending packet
 * at `off` into `out` at offset 0, byte for byte as upstream's C proxy does: IP header
 * (TTL 8, src `tunAddr`, dst = offender's src, id/flags 0), ICMP type 3 code 0, then the
 * offender's IP header plus the first 8 payload bytes (zero-padded if the offender is
 * shorter). `out` needs {@link ICMP_UNREACH_MAX} bytes.
 *
 * Returns the reply length, or 0 when no reply is due: offender too short to quote, an
 * ICMP packet (RFC 792: no ICMP errors about ICMP), or a non-first fragment.
 */
export function buildNetUnreachable(
  v: DataView,
  off: number,
  len: number,
  out: DataView,
  tunAddr: number,
): number {
  if (len < IPV4_MIN_HEADER) return 0;
  const hlen = ipv4HeaderLength(v, off);
  if (hlen < IPV4_MIN_HEADER) return 0;
  if (v.getUint8(off + 9) === IPPROTO_ICMP) return 0;
  if ((v.getUint16(off + 6) & 0x1fff) !== 0) return 0;
  const quoted = hlen + QUOTED_PAYLOAD;
  const total = IPV4_MIN_HEADER + ICMP_HEADER + quoted;

  out.setUint32(0, (0x45 << 24) | total); // version/IHL, TOS 0, total length
  out.setUint32(4, 0); // id, flags, fragment offset
  out.setUint32(8, (ICMP_REPLY_TTL << 24) | (IPPROTO_ICMP << 16)); // TTL, protocol, checksum 0
  out.setUint32(12, tunAddr);
  out.setUint32(16, ipv4Src(v, off));
  out.setUint16(10, internetChecksum(out, 0, IPV4_MIN_HEADER));

  const icmp = IPV4_MIN_HEADER;
  out.setUint32(icmp, (ICMP_DEST_UNREACH << 24) | (ICMP_NET_UNREACH << 16)); // checksum 0
  out.setUint32(icmp + 4, 0);
  const data = icmp + ICMP_HEADER;
  // quoted is a multiple of 4; copy whole words, zero-filling what the offender lacks.
  for (let i = 0; i < quoted; i += 4) {
    if (i + 4 <= len) {
      out.setUint32(data + i, v.getUint32(off + i));
    } else {
      out.setUint32(data + i, 0);
      for (let j = i; j < len; j++) out.setUint8(data + j, v.getUint8(off + j));
    }
  }
  out.setUint16(icmp + 2, internetChecksum(out, icmp, ICMP_HEADER + quoted));
  return total;
}
