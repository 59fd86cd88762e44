/**
 * Fast Internet checksums (RFC 1071) over bytes of one ArrayBuffer, for the offload paths
 * that checksum whole TCP payloads (64 KB per super-packet) in JavaScript.
 *
 * The sum is read 32 bits at a time through a Uint32Array (little-endian host, as on
 * x86_64 and aarch64) and added as 16-bit lanes: one's-complement addition is byte-order
 * independent (RFC 1071 §2(B)), so only the final fold swaps bytes. Nothing is allocated
 * per call. Buffers from allocSummable (checksum_wasm.ts) are summed with SIMD.
 * @module
 */

import { type BlockSum, blockSumOf, MAX_BLOCKS } from "./checksum_wasm.ts";

/** Views of one buffer that {@link sumBytes} reads; build once per buffer. */
export interface SumViews {
  u8: Uint8Array;
  u32: Uint32Array;
  /** SIMD block summer when the buffer came from allocSummable (checksum_wasm.ts). */
  blocks?: BlockSum;
}

/** Views for checksumming inside `buf`. */
export function sumViews(buf: ArrayBuffer | SharedArrayBuffer): SumViews {
  return {
    u8: new Uint8Array(buf),
    u32: new Uint32Array(buf, 0, buf.byteLength >>> 2),
    blocks: blockSumOf(buf),
  };
}

/** Folds a non-negative sum of 16-bit words into 16 bits, one's-complement style (0 only for 0). */
export function foldSum(s: number): number {
  return s === 0 ? 0 : (s % 0xffff) || 0xffff;
}

/** Byte-swaps a 16-bit value. */
function swap16(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8);
}

/** u32 words summed in int32 arithmetic before spilling: 2 × 2048 × 4 × 0xffff < 2^31. */
const CHUNK_WORDS = 8192;

/**
 * One's-complement sum (folded, not inverted) of `len` bytes at `off`, as big-endian 16-bit
 * words counted from `off` (an odd `len` pads a zero byte, as RFC 1071 does).
 */
export function sumBytes(v: SumViews, off: number, len: number): number {
  const { u8, u32 } = v;
  const end = off + len;
  let i = off;
  // Every byte is added at its absolute position's lane of a little-endian 16-bit word.
  let s = 0;
  while (i < end && (i & 3) !== 0) {
    s += (i & 1) ? u8[i] << 8 : u8[i];
    i++;
  }
  if ((i & 3) === 0) { // else the range ended before reaching a word boundary
    let w = i >>> 2;
    const wLast = end >>> 2;
    const blocks = v.blocks;
    if (blocks !== undefined && wLast - w >= 32) { // SIMD for the 16-byte blocks
      for (; (w & 3) !== 0; w++) s += (u32[w] & 0xffff) + (u32[w] >>> 16);
      for (let n = (wLast - w) >>> 2; n > 0;) {
        const k = Math.min(n, MAX_BLOCKS);
        s += blocks(w << 2, k);
        w += k << 2;
        n -= k;
      }
    }
    while (w < wLast - 3) {
      // Split into 16-bit lanes so that V8 stays in int32 arithmetic (twice as fast as
      // adding u32 values as doubles); two accumulators shorten the dependency chain.
      const stop = Math.min(wLast - 3, w + CHUNK_WORDS);
      let a = 0, b = 0;
      for (; w < stop; w += 4) {
        const x = u32[w], y = u32[w + 1], z = u32[w + 2], q = u32[w + 3];
        a = (a + (x & 0xffff) + (x >>> 16) + (y & 0xffff) + (y >>> 16)) | 0;
        b = (b + (z & 0xffff) + (z >>> 16) + (q & 0xffff) + (q >>> 16)) | 0;
      }
      s += a + b;
    }
    for (; w < wLast; w++) s += (u32[w] & 0xffff) + (u32[w] >>> 16);
    i = w << 2;
  }
  for (; i < end; i++) s += (i & 1) ? u8[i] << 8 : u8[i];
  // The little-endian lanes are byte-swapped big-endian words when `off` is even, and
  // exactly them when it is odd (RFC 1071 §2(B): the sum is byte-order independent).
  const f = foldSum(s);
  return (off & 1) ? f : swap16(f);
}

/**
 * One's-complement sum of the pseudo header of the IPv4 packet at `ip`: its source and
 * destination, zero, `proto`, `len`. Read as 16-bit words: a 32-bit address ≥ 64.0.0.0
 * does not fit V8's small integers and could be boxed (allocated) outside optimized code.
 */
export function pseudoHeaderSum(v: DataView, ip: number, proto: number, len: number): number {
  return foldSum(
    v.getUint16(ip + 12) + v.getUint16(ip + 14) + v.getUint16(ip + 16) + v.getUint16(ip + 18) +
      proto + len,
  );
}

/** Whether the 32-bit words at `a` and `b` are equal, compared as 16-bit halves (see above). */
export function same32(v: DataView, a: number, b: number): boolean {
  return v.getUint16(a) === v.getUint16(b) && v.getUint16(a + 2) === v.getUint16(b + 2);
}

/** Adds two folded one's-complement sums. */
export function addSums(a: number, b: number): number {
  return foldSum(a + b);
}
