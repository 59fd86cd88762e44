/**
 * Reference computations and random packets for the offload unit tests: deliberately
 * simple (byte loops, plain arrays) so that they check the optimized code independently.
 */

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One's-complement sum of big-endian 16-bit words (odd length padded), folded. */
export function refSum(b: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Whether the TCP checksum of the IPv4 packet `p` verifies (pseudo header + segment). */
export function refTcpValid(p: Uint8Array): boolean {
  const ihl = (p[0] & 15) * 4;
  const tcpLen = ((p[2] << 8) | p[3]) - ihl;
  let pseudo = 6 + tcpLen;
  for (let i = 12; i < 20; i += 2) pseudo += (p[i] << 8) | p[i + 1];
  return refSum(p.subarray(ihl, ihl + tcpLen), pseudo) === 0xffff;
}

/** Sets `p`'s IP header checksum and TCP checksum (reference way). */
export function refFinish(p: Uint8Array): void {
  const ihl = (p[0] & 15) * 4;
  p[10] = p[11] = 0;
  const ic = ~refSum(p.subarray(0, ihl)) & 0xffff;
  p[10] = ic >> 8;
  p[11] = ic & 0xff;
  p[ihl + 16] = p[ihl + 17] = 0;
  const tcpLen = p.length - ihl;
  let pseudo = 6 + tcpLen;
  for (let i = 12; i < 20; i += 2) pseudo += (p[i] << 8) | p[i + 1];
  const tc = ~refSum(p.subarray(ihl), pseudo) & 0xffff;
  p[ihl + 16] = tc >> 8;
  p[ihl + 17] = tc & 0xff;
}

/** Options of {@link tcpPacket}. */
export interface TcpPacketOptions {
  payloadLen: number;
  flags: number;
  /** IP header length (default: random 20..60 for odd tests, else 20). */
  ihl?: number;
  /** TCP header length (default: random 20..60). */
  thl?: number;
  src?: number;
  dst?: number;
  seq?: number;
  id?: number;
  ttl?: number;
  ports?: number;
  /** Word at TCP offset 8 (ack number). */
  ack?: number;
  /** TCP options bytes (default random); length must be thl − 20. */
  options?: Uint8Array;
}

/** A random, valid IPv4/TCP packet (checksums correct). */
export function tcpPacket(r: () => number, o: TcpPacketOptions): Uint8Array {
  const ihl = o.ihl ?? (r() < 0.2 ? 20 + 4 * Math.floor(r() * 11) : 20);
  const thl = o.thl ?? (o.options ? 20 + o.options.length : 20 + 4 * Math.floor(r() * 11));
  const payloadLen = Math.min(o.payloadLen, 65535 - ihl - thl);
  const p = new Uint8Array(ihl + thl + payloadLen);
  for (let i = 0; i < p.length; i++) p[i] = Math.floor(r() * 256);
  const v = new DataView(p.buffer);
  v.setUint8(0, 0x40 | (ihl >> 2));
  v.setUint16(2, p.length);
  v.setUint16(4, o.id ?? Math.floor(r() * 65536));
  v.setUint16(6, 0x4000); // DF
  v.setUint8(8, o.ttl ?? 64);
  v.setUint8(9, 6);
  if (o.src !== undefined) v.setUint32(12, o.src);
  if (o.dst !== undefined) v.setUint32(16, o.dst);
  if (o.ports !== undefined) v.setUint32(ihl, o.ports);
  if (o.seq !== undefined) v.setUint32(ihl + 4, o.seq);
  if (o.ack !== undefined) v.setUint32(ihl + 8, o.ack);
  v.setUint8(ihl + 12, (thl >> 2) << 4);
  v.setUint8(ihl + 13, o.flags);
  if (o.options) p.set(o.options, ihl + 20);
  refFinish(p);
  return p;
}
