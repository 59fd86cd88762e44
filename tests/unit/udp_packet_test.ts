import { assert, assertEquals } from "../helpers/assert.ts";
import {
  buildNetUnreachable,
  decrementTTL,
  ICMP_UNREACH_MAX,
  internetChecksum,
  ipv4Dst,
  ipv4Src,
  isValidIPv4,
} from "../../lib/backend/udp/packet.ts";
import { parseIP4 } from "../../lib/core/ip.ts";

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Full header checksum recomputation, independent of the code under test. */
function recompute(b: Uint8Array, hlen: number): number {
  let sum = 0;
  for (let i = 0; i < hlen; i += 2) if (i !== 10) sum += (b[i] << 8) | b[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A random well-formed IPv4 packet (random options, fields, payload). */
function randomPacket(
  r: () => number,
  opts: { proto?: number; frag?: number; ttl?: number } = {},
): Uint8Array {
  const ihl = 5 + Math.floor(r() * 11);
  const payload = Math.floor(r() * 64);
  const total = ihl * 4 + payload;
  const b = new Uint8Array(total);
  for (let i = 0; i < total; i++) b[i] = Math.floor(r() * 256);
  const v = new DataView(b.buffer);
  b[0] = 0x40 | ihl;
  v.setUint16(2, total);
  v.setUint16(6, opts.frag ?? (Math.floor(r() * 2) << 14));
  b[8] = opts.ttl ?? 2 + Math.floor(r() * 254);
  if (opts.proto !== undefined) b[9] = opts.proto;
  v.setUint16(10, recompute(b, ihl * 4));
  return b;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// A textbook header (Wikipedia "IPv4 header checksum"): UDP 192.168.0.1 → 192.168.0.199.
const REAL_HEADER = [
  0x45,
  0x00,
  0x00,
  0x73,
  0x00,
  0x00,
  0x40,
  0x00,
  0x40,
  0x11,
  0xb8,
  0x61,
  0xc0,
  0xa8,
  0x00,
  0x01,
  0xc0,
  0xa8,
  0x00,
  0xc7,
];

function realPacket(): Uint8Array {
  const b = new Uint8Array(0x73);
  b.set(REAL_HEADER);
  return b;
}

Deno.test("validation accepts a real packet and reads its addresses", () => {
  const b = realPacket();
  assert(isValidIPv4(dv(b), 0, b.length));
  assertEquals(ipv4Src(dv(b), 0), parseIP4("192.168.0.1"));
  assertEquals(ipv4Dst(dv(b), 0), parseIP4("192.168.0.199"));
  // at an offset inside a bigger buffer, with trailing bytes past the total length
  const big = new Uint8Array(300);
  big.set(b, 100);
  assert(isValidIPv4(new DataView(big.buffer), 100, 150));
});

Deno.test("validation accepts random well-formed packets", () => {
  const r = rng(1);
  for (let i = 0; i < 2000; i++) {
    const b = randomPacket(r);
    assert(isValidIPv4(dv(b), 0, b.length), `packet ${i}`);
  }
});

Deno.test("validation rejects truncated, garbage and bad-checksum packets", () => {
  const b = realPacket();
  const v = dv(b);
  assert(!isValidIPv4(v, 0, 19), "shorter than a header");
  assert(!isValidIPv4(v, 0, 0x72), "shorter than total length");
  assert(!isValidIPv4(v, 0, 0), "empty");
  const mutate = (f: (c: Uint8Array) => void) => {
    const c = b.slice();
    f(c);
    return isValidIPv4(dv(c), 0, c.length);
  };
  assert(!mutate((c) => c[11] ^= 1), "bad checksum");
  assert(!mutate((c) => c[15] ^= 0x80), "address flipped");
  assert(!mutate((c) => c[0] = 0x65), "version 6");
  assert(!mutate((c) => c[0] = 0x44), "IHL 4");
  assert(
    !mutate((c) => {
      c[2] = 0;
      c[3] = 16; // total length below the header length
    }),
    "total < IHL*4",
  );
  const r = rng(2);
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    const g = new Uint8Array(20 + Math.floor(r() * 100));
    for (let j = 0; j < g.length; j++) g[j] = Math.floor(r() * 256);
    if (isValidIPv4(dv(g), 0, g.length)) accepted++;
  }
  assert(accepted < 5, `random garbage accepted ${accepted} times`);
});

Deno.test("TTL decrement patches the checksum exactly as a full recomputation", () => {
  const r = rng(3);
  for (let i = 0; i < 20000; i++) {
    const b = randomPacket(r);
    const ttl = b[8];
    assert(decrementTTL(dv(b), 0));
    assertEquals(b[8], ttl - 1);
    assertEquals(dv(b).getUint16(10), recompute(b, (b[0] & 15) * 4), `packet ${i}`);
    assert(isValidIPv4(dv(b), 0, b.length));
  }
  // every checksum value, including the 0x0000/0xffff edges
  for (let c = 0; c <= 0xffff; c += 1) {
    const b = realPacket();
    dv(b).setUint16(12, c); // source address high word moves the checksum over all values
    dv(b).setUint16(10, recompute(b, 20));
    assert(decrementTTL(dv(b), 0));
    assertEquals(dv(b).getUint16(10), recompute(b, 20));
  }
});

Deno.test("TTL 1 and 0 are dropped and the packet left alone", () => {
  for (const ttl of [0, 1]) {
    const b = randomPacket(rng(4), { ttl });
    const before = b.slice();
    assert(!decrementTTL(dv(b), 0));
    assertEquals(b, before);
  }
});

const TUN_ADDR = parseIP4("10.5.52.0")!;

Deno.test("ICMP net-unreachable reply, field by field", () => {
  const off = realPacket();
  off[9] = 6; // TCP
  dv(off).setUint16(10, recompute(off, 20));
  for (let i = 20; i < 28; i++) off[i] = 0xa0 + i;
  const out = new Uint8Array(ICMP_UNREACH_MAX + 10);
  const ov = dv(out);
  const n = buildNetUnreachable(dv(off), 0, off.length, ov, TUN_ADDR);
  assertEquals(n, 20 + 8 + 20 + 8);
  assertEquals(out[0], 0x45, "version/IHL");
  assertEquals(out[1], 0, "TOS");
  assertEquals(ov.getUint16(2), n, "total length");
  assertEquals(ov.getUint32(4), 0, "id, flags, fragment offset");
  assertEquals(out[8], 8, "TTL");
  assertEquals(out[9], 1, "protocol ICMP");
  assertEquals(ov.getUint32(12), TUN_ADDR, "source = TUN address");
  assertEquals(ov.getUint32(16), parseIP4("192.168.0.1"), "destination = offender's source");
  assertEquals(internetChecksum(ov, 0, 20), 0, "IP checksum verifies");
  assertEquals(out[20], 3, "type destination unreachable");
  assertEquals(out[21], 0, "code net unreachable");
  assertEquals(ov.getUint32(24), 0, "unused word");
  assertEquals(internetChecksum(ov, 20, n - 20), 0, "ICMP checksum verifies");
  assertEquals(out.subarray(28, n), off.subarray(0, 28), "offender header + 8 bytes");
  assert(isValidIPv4(ov, 0, n));
});

Deno.test("ICMP reply quotes IP options and zero-pads a short offender", () => {
  const r = rng(5);
  for (let i = 0; i < 500; i++) {
    const off = randomPacket(r, { proto: 17, frag: 0 });
    const hlen = (off[0] & 15) * 4;
    const out = new Uint8Array(ICMP_UNREACH_MAX);
    const n = buildNetUnreachable(dv(off), 0, off.length, dv(out), TUN_ADDR);
    assertEquals(n, 28 + hlen + 8);
    const quoted = out.subarray(28, n);
    const have = Math.min(off.length, hlen + 8);
    assertEquals(quoted.subarray(0, have), off.subarray(0, have));
    assert(quoted.subarray(have).every((x) => x === 0));
    assertEquals(internetChecksum(dv(out), 20, n - 20), 0);
    assertEquals(internetChecksum(dv(out), 0, 20), 0);
  }
});

Deno.test("no ICMP reply about ICMP, non-first fragments, or runts", () => {
  const out = dv(new Uint8Array(ICMP_UNREACH_MAX));
  const r = rng(6);
  const icmp = randomPacket(r, { proto: 1, frag: 0 });
  assertEquals(buildNetUnreachable(dv(icmp), 0, icmp.length, out, TUN_ADDR), 0);
  const frag = randomPacket(r, { proto: 6, frag: 0x2000 | 185 });
  assertEquals(buildNetUnreachable(dv(frag), 0, frag.length, out, TUN_ADDR), 0);
  const first = randomPacket(r, { proto: 6, frag: 0x2000 }); // MF set, offset 0: first fragment
  assert(buildNetUnreachable(dv(first), 0, first.length, out, TUN_ADDR) > 0);
  assertEquals(buildNetUnreachable(dv(first), 0, 12, out, TUN_ADDR), 0);
});
