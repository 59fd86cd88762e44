import { assert, assertEquals } from "../helpers/assert.ts";
import { sumViews } from "../../lib/backend/udp/checksum.ts";
import { Coalescer } from "../../lib/backend/udp/gro.ts";
import { Split, splitRoom, splitTcp4 } from "../../lib/backend/udp/tso.ts";
import {
  VNET_F_NEEDS_CSUM,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_HDR_LEN,
} from "../../lib/backend/udp/vnet.ts";
import { refSum, rng, tcpPacket } from "./udp_offload_fixtures.ts";

/** Runs `pkts`, laid out back to back as in a UDP GRO buffer, through a Coalescer. */
function coalesce(pkts: Uint8Array[]): { out: Uint8Array[]; c: Coalescer } {
  const buf = new ArrayBuffer(70_000 * Math.max(1, pkts.length) + 64);
  const v = new DataView(buf);
  const s = sumViews(buf);
  const out: Uint8Array[] = [];
  const c = new Coalescer(v, s, (off, len) => out.push(s.u8.slice(off, off + len)));
  let at = 64;
  const offs = pkts.map((p) => {
    s.u8.set(p, at);
    at += p.length;
    return at - p.length;
  });
  offs.forEach((o, i) => c.push(o, pkts[i].length));
  c.flush();
  return { out, c };
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
    assertEquals(gso, VNET_GSO_TCPV4);
    assertEquals(w[0], VNET_F_NEEDS_CSUM);
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

/** Recomputes both checksums (reference way) after a test edit. */
function fix(p: Uint8Array): Uint8Array {
  const v = new DataView(p.buffer, p.byteOffset);
  v.setUint16(10, 0);
  v.setUint16(10, ~refSum(p.subarray(0, 20)) & 0xffff);
  v.setUint16(36, 0);
  let pseudo = 6 + p.length - 20;
  for (let i = 12; i < 20; i += 2) pseudo += (p[i] << 8) | p[i + 1];
  v.setUint16(36, ~refSum(p.subarray(20), pseudo) & 0xffff);
  return p;
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
