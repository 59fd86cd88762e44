import { assert, assertEquals } from "../helpers/assert.ts";
import { pseudoHeaderSum, sumBytes, sumViews } from "../../lib/backend/udp/checksum.ts";
import { MAX_HEADERS, Split, splitRoom, splitTcp4 } from "../../lib/backend/udp/tso.ts";
import { completeChecksum } from "../../lib/backend/udp/vnet.ts";
import { allocSummable } from "../../lib/backend/udp/checksum_wasm.ts";
import { refSum, refTcpValid, rng, tcpPacket } from "./udp_offload_fixtures.ts";

/** A plain buffer and one summed with SIMD (when the platform has it), both `size` bytes. */
function buffers(size: number): [string, ArrayBuffer][] {
  return [["plain", new ArrayBuffer(size)], ["simd", allocSummable(size).buffer]];
}

Deno.test("sumBytes equals a byte-by-byte reference at every alignment and length", () => {
  assert(sumViews(allocSummable(64).buffer).blocks, "WebAssembly SIMD available here");
  for (const [kind, buf] of buffers(300_000)) {
    const r = rng(7);
    const u8 = new Uint8Array(buf);
    for (let i = 0; i < u8.length; i++) u8[i] = Math.floor(r() * 256);
    const s = sumViews(buf);
    for (let n = 0; n < 3000; n++) {
      const off = Math.floor(r() * 2000);
      const len = n % 10 === 0 ? Math.floor(r() * 290_000) : Math.floor(r() * 2000); // > MAX_BLOCKS too
      const want = refSum(u8.subarray(off, off + len));
      assertEquals(sumBytes(s, off, len), want, `${kind} off ${off} len ${len}`);
    }
    u8.fill(0xff, 0, 640); // all-ones words: the sum is 0xffff, not 0
    assertEquals(sumBytes(s, 0, 640), 0xffff);
    u8.fill(0, 0, 640);
    assertEquals(sumBytes(s, 0, 640), 0);
  }
});

Deno.test("splitTcp4: random super-packets split into valid segments that reassemble", () => {
  const r = rng(42);
  const [[, plain], [, simd]] = buffers(240_000);
  const out = new Split();
  for (let n = 0; n < 300; n++) {
    const buf = n % 2 ? simd : plain;
    const v = new DataView(buf);
    const s = sumViews(buf);
    const mss = n % 3 === 0 ? 48 + Math.floor(r() * 1500) : 1420 + Math.floor(r() * 20);
    const payloadLen = n % 10 === 0 ? Math.floor(r() * mss) : Math.floor(r() * (65535 - 120));
    const pkt = tcpPacket(r, {
      payloadLen,
      flags: 0x10 | (r() < 0.5 ? 0x08 : 0) | (r() < 0.2 ? 0x01 : 0) | (r() < 0.2 ? 0x80 : 0),
    });
    const pos = 16 + 2 * Math.floor(r() * 8);
    s.u8.fill(0xee, 0, pos + splitRoom(pkt.length, mss) + 64);
    s.u8.set(pkt, pos);
    assert(splitTcp4(v, s, pos, pkt.length, mss, out));
    assert(pos + (out.count - 1) * out.segLen + out.lastLen <= pos + splitRoom(pkt.length, mss));
    const pv = new DataView(pkt.buffer);
    const ihl = (pkt[0] & 15) * 4;
    const hdr = ihl + (pkt[ihl + 12] >> 4) * 4;
    const payload: number[] = [];
    for (let k = 0; k < out.count; k++) {
      const at = pos + k * out.segLen;
      const len = k === out.count - 1 ? out.lastLen : out.segLen;
      const seg = s.u8.slice(at, at + len);
      const sv = new DataView(seg.buffer);
      assertEquals(sv.getUint16(2), len, "total length");
      assertEquals(refSum(seg.subarray(0, ihl)), 0xffff, "IP checksum verifies");
      assert(refTcpValid(seg), `TCP checksum verifies (seg ${k}/${out.count})`);
      assertEquals(sv.getUint16(4), (pv.getUint16(4) + k) & 0xffff, "id");
      assertEquals(sv.getUint32(ihl + 4), (pv.getUint32(ihl + 4) + k * mss) >>> 0, "seq");
      const last = k === out.count - 1;
      const f = pkt[ihl + 13];
      const want = (f & ~(last ? 0 : 0x09)) & ~(k === 0 ? 0 : 0x80);
      assertEquals(seg[ihl + 13], want, "flags");
      if (!last) assertEquals(len - hdr, mss);
      // Everything else in the headers is the original's.
      for (const i of [0, 1, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19]) {
        assertEquals(seg[i], pkt[i]);
      }
      assertEquals([...seg.subarray(20, ihl)], [...pkt.subarray(20, ihl)], "IP options");
      assertEquals([...seg.subarray(ihl, ihl + 4)], [...pkt.subarray(ihl, ihl + 4)], "ports");
      assertEquals([...seg.subarray(ihl + 8, ihl + 13)], [...pkt.subarray(ihl + 8, ihl + 13)]);
      assertEquals([...seg.subarray(ihl + 14, ihl + 16)], [...pkt.subarray(ihl + 14, ihl + 16)]);
      assertEquals(
        [...seg.subarray(ihl + 18, hdr)],
        [...pkt.subarray(ihl + 18, hdr)],
        "TCP options",
      );
      for (const b of seg.subarray(hdr)) payload.push(b);
    }
    assertEquals(payload.length, pkt.length - hdr);
    assert(payload.every((b, i) => b === pkt[hdr + i]), "payload reassembles");
  }
});

Deno.test("splitTcp4 refuses what it must not split", () => {
  const r = rng(3);
  const buf = new ArrayBuffer(100_000);
  const v = new DataView(buf);
  const s = sumViews(buf);
  const pkt = tcpPacket(r, { payloadLen: 3000, flags: 0x10 });
  s.u8.set(pkt, 0);
  assert(!splitTcp4(v, s, 0, pkt.length, 20, new Split()), "MSS below minimum");
  s.u8[9] = 17;
  assert(!splitTcp4(v, s, 0, pkt.length, 1400, new Split()), "not TCP");
  s.u8[9] = 6;
  s.u8[6] |= 0x20; // more fragments
  assert(!splitTcp4(v, s, 0, pkt.length, 1400, new Split()), "fragment");
  assert(MAX_HEADERS >= 120);
});

Deno.test("completeChecksum finishes partial TCP and UDP checksums", () => {
  const r = rng(9);
  const buf = new ArrayBuffer(70_000);
  const v = new DataView(buf);
  const s = sumViews(buf);
  for (let n = 0; n < 200; n++) {
    const pkt = tcpPacket(r, { payloadLen: Math.floor(r() * 60_000), flags: 0x18 });
    const ihl = (pkt[0] & 15) * 4;
    const pv = new DataView(pkt.buffer);
    // The kernel's CHECKSUM_PARTIAL form: the field holds the folded pseudo-header sum.
    pv.setUint16(
      ihl + 16,
      pseudoHeaderSum(pv, 0, 6, pkt.length - ihl),
    );
    const pos = 2 * Math.floor(r() * 100);
    s.u8.set(pkt, pos);
    assert(completeChecksum(v, s, pos, pkt.length, ihl, 16, false));
    assert(refTcpValid(s.u8.slice(pos, pos + pkt.length)));
  }
  assert(!completeChecksum(v, s, 0, 30, 20, 16, false), "offsets past the end");
});
