/**
 * Minimal reader for classic pcap files (as `tcpdump -w` writes them) of Ethernet frames,
 * extracting IPv4/UDP datagrams. Test use only.
 * @module
 */

/** One UDP datagram found in a capture. */
export interface CapturedUdp {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  /** Outer IPv4 TTL. */
  ttl: number;
  payload: Uint8Array;
}

const LINKTYPE_ETHERNET = 1;

/** Every IPv4/UDP datagram in a pcap file (micro- or nanosecond, either byte order). */
export function udpDatagrams(file: Uint8Array): CapturedUdp[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const magic = v.getUint32(0, true);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && v.getUint32(0, false) !== 0xa1b2c3d4 && v.getUint32(0, false) !== 0xa1b23c4d) {
    throw new Error("not a pcap file");
  }
  if (v.getUint32(20, le) !== LINKTYPE_ETHERNET) throw new Error("capture is not Ethernet");
  const out: CapturedUdp[] = [];
  for (let off = 24; off + 16 <= file.byteLength;) {
    const incl = v.getUint32(off + 8, le);
    const frame = off + 16;
    off = frame + incl;
    if (incl < 14 + 20 + 8 || v.getUint16(frame + 12) !== 0x0800) continue;
    const ip = frame + 14;
    const ihl = (v.getUint8(ip) & 15) * 4;
    if (v.getUint8(ip + 9) !== 17) continue;
    const udp = ip + ihl;
    const udpLen = v.getUint16(udp + 4);
    out.push({
      src: v.getUint32(ip + 12),
      dst: v.getUint32(ip + 16),
      srcPort: v.getUint16(udp),
      dstPort: v.getUint16(udp + 2),
      ttl: v.getUint8(ip + 8),
      payload: file.slice(udp + 8, Math.min(udp + udpLen, off)),
    });
  }
  return out;
}
