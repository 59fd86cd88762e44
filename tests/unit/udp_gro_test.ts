import { assert, assertEquals } from "../helpers/assert.ts";
import { sumViews } from "../../lib/backend/udp/checksum.ts";
import { Coalescer } from "../../lib/backend/udp/gro.ts";
import { Split, splitRoom, splitTcp4 } from "../../lib/backend/udp/tso.ts";
import {
  VNET_F_NEEDS_CSUM,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_UDP_L4,
  VNET_HDR_LEN,
} from "../../lib/backend/udp/vnet.ts";
import { refSum, rng, tcpPacket } from "./udp_offload_fixtures.ts";

/**
 * Runs `pkts`, laid out back to back as in a UDP GRO buffer, through a Coalescer (UDP
 * coalescing on with `udp`; `refuseUdp`: the TUN refuses UDP super-packets).
 */
function coalesce(
  pkts: Uint8Array[],
  { udp = false, refuseUdp = false } = {},
): { out: Uint8Array[]; c: Coalescer; refused: number } {
  const buf = new ArrayBuffer(70_000 * Math.max(1, pkts.length) + 64);
  const v = new DataView(buf);
  const s = sumViews(buf);
  const out: Uint8Array[] = [];
  let refused = 0;
  const c = new Coalescer(v, s, (off, len) => {
    if (refuseUdp && s.u8[off + 1] === VNET_GSO_UDP_L4) return false;
    out.push(s.u8.slice(off, off + len));
    return true;
  }, { udp, onUdpRefused: () => refused++ });
  let at = 64;
  const offs = pkts.map((p) => {
    s.u8.set(p, at);
    at += p.length;
    return at - p.length;
  });
  offs.forEach((o, i) => c.push(o, pkts[i].length));
  c.flush();
  return { out, c, refused };
}

/**
 * Kernel-style UDP segmentation (__udp_gso_segment) of a UDP_L4 super-packet: datagrams of
 * `size` payload bytes, each with the first one's headers, IP ids counting up, lengths and
 * both checksums computed.
 */
function segmentUdp(pkt: Uint8Array, size: number): Uint8Array[] {
  const res: Uint8Array[] = [];
  const id0 = (pkt[4] << 8) | pkt[5];
  for (let off = 28, k = 0; off < pkt.length; off += size, k++) {
    const data = pkt.subarray(off, Math.min(pkt.length, off + size));
    const d = new Uint8Array(28 + data.length);
    d.set(pkt.subarray(0, 28));
    d.set(data, 28);
    const v = new DataView(d.buffer);
    v.setUint16(2, d.length);
    v.setUint16(4, (id0 + k) & 0xffff);
    v.setUint16(24, d.length - 20);
    res.push(fixUdp(d));
  }
  return res;
}

/** Expands what the Coalescer wrote back into plain packets (kernel-style segmentation). */
function expand(out: Uint8Array[]): Uint8Array[] {
  const res: Uint8Array[] = [];
  for (const w of out) {
    const hv = new DataView(w.buffer);
    const gso = w[1];
    const pkt = w.subarray(VNET_HDR_LEN);
    if (gso === VNET_GSO_NONE) {
      assertEquals(w[0], 0, "no flags on single packets");
      res.push(pkt);
      continue;
    }
    assertEquals(w[0], VNET_F_NEEDS_CSUM);
    if (gso === VNET_GSO_UDP_L4) {
      assertEquals([hv.getUint16(2, true), hv.getUint16(6, true), hv.getUint16(8, true)], [
        28,
        20,
        6,
      ], "hdr_len, csum_start, csum_offset");
      assertEquals(refSum(pkt.subarray(0, 20)), 0xffff, "super-packet IP checksum");
      assertEquals((pkt[24] << 8) | pkt[25], pkt.length - 20, "super-packet UDP length");
      let pseudo = 17 + pkt.length - 20;
      for (let i = 12; i < 20; i += 2) pseudo += (pkt[i] << 8) | pkt[i + 1];
      while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
      assertEquals((pkt[26] << 8) | pkt[27], pseudo, "pseudo-header sum in the UDP checksum");
      res.push(...segmentUdp(pkt, hv.getUint16(4, true)));
      continue;
    }
    assertEquals(gso, VNET_GSO_TCPV4);
    const mss = hv.getUint16(4, true);
    assertEquals(hv.getUint16(6, true), 20, "csum_start");
    assertEquals(hv.getUint16(8, true), 16, "csum_offset");
    const hdr = 20 + (pkt[32] >> 4) * 4;
    assertEquals(hv.getUint16(2, true), hdr, "hdr_len");
    assertEquals(refSum(pkt.subarray(0, 20)), 0xffff, "super-packet IP checksum");
    assertEquals((pkt[2] << 8) | pkt[3], pkt.length, "super-packet total length");
    // The field holds the pseudo-header sum over the whole TCP length.
    let pseudo = 6 + pkt.length - 20;
    for (let i = 12; i < 20; i += 2) pseudo += (pkt[i] << 8) | pkt[i + 1];
    while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
    assertEquals((pkt[36] << 8) | pkt[37], pseudo, "pseudo-header sum in the checksum field");
    const buf = new ArrayBuffer(splitRoom(pkt.length, mss) + 64);
    const s = sumViews(buf);
    s.u8.set(pkt, 0);
    const sp = new Split();
    assert(splitTcp4(new DataView(buf), s, 0, pkt.length, mss, sp));
    for (let k = 0; k < sp.count; k++) {
      const at = k * sp.segLen;
      res.push(s.u8.slice(at, at + (k === sp.count - 1 ? sp.lastLen : sp.segLen)));
    }
  }
  return res;
}

/** A flow's next `n` segments (MSS `mss`, last one maybe short / PSH). */
function flow(r: () => number, n: number, mss: number, opts: { psh?: boolean; short?: boolean }) {
  const options = new Uint8Array([1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]); // NOP NOP timestamps
  const src = 0x0a630101, dst = 0x0a630201, ports = (40000 << 16) | 5201;
  const seq0 = Math.floor(r() * 2 ** 32), id0 = Math.floor(r() * 65536);
  const pkts: Uint8Array[] = [];
  let seq = seq0;
  for (let k = 0; k < n; k++) {
    const last = k === n - 1;
    const len = last && opts.short ? 1 + Math.floor(r() * (mss - 1)) : mss;
    pkts.push(tcpPacket(r, {
      payloadLen: len,
      flags: 0x10 | (last && opts.psh ? 0x08 : 0),
      ihl: 20,
      options,
      src,
      dst,
      ports,
      seq,
      id: (id0 + k) & 0xffff,
      ack: 12345,
      ttl: 62,
    }));
    seq = (seq + len) >>> 0;
  }
  // Same TOS and window everywhere (tcpPacket randomizes them).
  for (const p of pkts) {
    p[1] = 0; // TOS
    p[34] = 0x01; // window
    p[35] = 0xf5;
    p[38] = p[39] = 0; // urgent pointer (meaningless without URG, copied by segmentation)
  }
  return pkts.map(fix);
}

/** Recomputes the IP and UDP checksums of a UDP packet (reference way). */
function fixUdp(p: Uint8Array): Uint8Array {
  return fixSums(p, 17, 26);
}

/**
 * Recomputes the IP header checksum and the transport checksum (protocol `proto`, field at
 * byte `at`) of a packet with a 20-byte IP header, the reference way.
 */
function fixSums(p: Uint8Array, proto: number, at: number): Uint8Array {
  const v = new DataView(p.buffer, p.byteOffset);
  v.setUint16(10, 0);
  v.setUint16(10, ~refSum(p.subarray(0, 20)) & 0xffff);
  v.setUint16(at, 0);
  let pseudo = proto + p.length - 20;
  for (let i = 12; i < 20; i += 2) pseudo += (p[i] << 8) | p[i + 1];
  const c = ~refSum(p.subarray(20), pseudo) & 0xffff;
  v.setUint16(at, c === 0 && proto === 17 ? 0xffff : c); // UDP: 0 means "no checksum"
  return p;
}

/** A UDP flow's next `n` datagrams of `size` payload bytes (the last maybe shorter), DF set. */
function udpFlow(r: () => number, n: number, size: number, short = false): Uint8Array[] {
  const id0 = Math.floor(r() * 65536);
  return Array.from({ length: n }, (_, k) => {
    const len = k === n - 1 && short ? 1 + Math.floor(r() * (size - 1)) : size;
    const p = new Uint8Array(28 + len);
    for (let i = 28; i < p.length; i++) p[i] = Math.floor(r() * 256);
    const v = new DataView(p.buffer);
    v.setUint8(0, 0x45);
    v.setUint16(2, p.length);
    v.setUint16(4, (id0 + k) & 0xffff);
    v.setUint16(6, 0x4000); // DF
    v.setUint8(8, 62);
    v.setUint8(9, 17);
    v.setUint32(12, 0x0a630101);
    v.setUint32(16, 0x0a630202);
    v.setUint32(20, (50000 << 16) | 5201);
    v.setUint16(24, p.length - 20);
    return fixUdp(p);
  });
}

/** Recomputes both checksums (reference way) after a test edit. */
function fix(p: Uint8Array): Uint8Array {
  return fixSums(p, 6, 36);
}

Deno.test("Coalescer: one flow's segments become one super-packet that re-segments to the input", () => {
  const r = rng(11);
  for (let n = 0; n < 50; n++) {
    const mss = 536 + Math.floor(r() * 900);
    const count = 2 + Math.floor(r() * 40);
    const pkts = flow(r, count, mss, { psh: r() < 0.5, short: r() < 0.5 });
    const { out, c } = coalesce(pkts);
    const total = pkts.reduce((a, p) => a + p.length - 32, 0) + 32;
    if (total <= 0xffff) assertEquals(out.length, 1, "one write");
    assert(c.superPackets >= 1);
    assertEquals(expand(out), pkts);
  }
});

Deno.test("Coalescer: random mixes expand back to exactly the input, in order", () => {
  const r = rng(5);
  for (let n = 0; n < 200; n++) {
    const pkts: Uint8Array[] = [];
    while (pkts.length < 30) {
      const x = r();
      const mss = 1000 + Math.floor(r() * 400);
      if (x < 0.4) {
        pkts.push(...flow(r, 1 + Math.floor(r() * 8), mss, { psh: r() < 0.3, short: r() < 0.3 }));
      } else if (x < 0.5) {
        pkts.push(tcpPacket(r, { payloadLen: Math.floor(r() * 1400), flags: 0x10 })); // random TCP
      } else if (x < 0.6) pkts.push(tcpPacket(r, { payloadLen: 0, flags: 0x10, ihl: 20 })); // pure ACK
      else if (x < 0.7) {
        const f = flow(r, 3, mss, {});
        f[1][60] ^= 0x55; // payload corrupted in flight: its checksum no longer verifies
        pkts.push(...f);
      } else if (x < 0.8) {
        const f = flow(r, 4, mss, {});
        pkts.push(f[0], f[2], f[1], f[3]); // reordered
      } else if (x < 0.9) {
        const f = flow(r, 3, mss, {});
        f[1][33] = 0x11; // FIN in the middle: ends coalescing
        pkts.push(...f.map(fix));
      } else {
        const f = flow(r, 3, mss, {});
        f[2][8] = 61; // different TTL
        pkts.push(...f.map(fix));
      }
    }
    const { out } = coalesce(pkts);
    assertEquals(expand(out), pkts);
    assert(out.length <= pkts.length);
  }
});

Deno.test("Coalescer: a UDP flow's datagrams become one UDP_L4 super-packet that segments back", () => {
  const r = rng(21);
  for (let n = 0; n < 50; n++) {
    const size = 16 + Math.floor(r() * 1400);
    const pkts = udpFlow(r, 2 + Math.floor(r() * 70), size, r() < 0.5);
    const { out, c } = coalesce(pkts, { udp: true });
    assertEquals(expand(out), pkts);
    assertEquals(c.coalescedSegments, pkts.length - (out.length - c.superPackets));
    // At most 64 datagrams and 64 KB per super-packet.
    for (const w of out) assert(w.length - VNET_HDR_LEN <= 0xffff);
    assert(c.superPackets >= Math.ceil(pkts.length / 64) - 1);
  }
});

Deno.test("Coalescer: UDP is written packet by packet when off, or when a datagram does not fit", () => {
  const r = rng(22);
  const plain = udpFlow(r, 10, 64);
  assertEquals(coalesce(plain).out.length, 10, "UDP coalescing off");
  const pkts: Uint8Array[] = [];
  const f1 = udpFlow(r, 4, 64);
  f1[1][0] = 0x46; // IP options: not coalesced (and not valid here, passed on as it is)
  pkts.push(...f1);
  const f2 = udpFlow(r, 4, 64);
  f2[2] = fixUdp(f2[2]);
  f2[2][27] ^= 1; // bad UDP checksum: written alone, for the kernel to drop
  pkts.push(...f2);
  const f3 = udpFlow(r, 3, 64);
  new DataView(f3[1].buffer).setUint16(26, 0); // no checksum: nothing to vouch for, alone
  pkts.push(...f3);
  const f4 = udpFlow(r, 3, 64);
  pkts.push(f4[0], f4[2], f4[1]); // reordered: ids not consecutive
  const f5 = udpFlow(r, 3, 64);
  new DataView(f5[1].buffer).setUint16(6, 0); // DF off: ids matter for reassembly
  pkts.push(...f5.map(fixUdp));
  const { out } = coalesce(pkts, { udp: true });
  assertEquals(expand(out), pkts);
  assert(out.length > 4 && out.length < pkts.length);
});

Deno.test("Coalescer: a TUN that refuses UDP super-packets turns UDP coalescing off", () => {
  const r = rng(23);
  const { out, c, refused } = coalesce([...udpFlow(r, 5, 100), ...udpFlow(r, 5, 100)], {
    udp: true,
    refuseUdp: true,
  });
  assertEquals(refused, 1);
  assertEquals(c.udp, false);
  assertEquals(out.length, 5, "the first group is lost, the second flow goes one by one");
});
