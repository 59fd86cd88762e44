/**
 * `struct virtio_net_hdr` (10 bytes, little-endian on the hosts we run on), the header a
 * TUN opened with IFF_VNET_HDR puts in front of every packet: it says whether the packet is
 * a TCP super-packet to segment (gso_type, gso_size = MSS) and whether its transport
 * checksum is still partial (NEEDS_CSUM: the field holds the pseudo-header sum, the rest
 * from csum_start to the end is ours to add).
 * @module
 */

import { sumBytes, type SumViews } from "./checksum.ts";

/** Size of `struct virtio_net_hdr` (without num_buffers). */
export const VNET_HDR_LEN = 10;
/** flags: the checksum from csum_start, stored at csum_start + csum_offset, is partial. */
export const VNET_F_NEEDS_CSUM = 1;
/** flags: the checksum was verified (receive side). */
export const VNET_F_DATA_VALID = 2;
/** gso_type values. */
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
/** gso_type flag: the super-packet carries ECN CWR. */
export const VNET_GSO_ECN = 0x80;

/** Field offsets. */
const FLAGS = 0;
const GSO_TYPE = 1;
const HDR_LEN = 2;
const GSO_SIZE = 4;
const CSUM_START = 6;
const CSUM_OFFSET = 8;

/** The header at `off`, decoded; fields written by {@link readVnetHdr} (no allocation). */
export class VnetHdr {
  flags = 0;
  gsoType = 0;
  hdrLen = 0;
  gsoSize = 0;
  csumStart = 0;
  csumOffset = 0;
}

/** Decodes the header at `off` into `h`. */
export function readVnetHdr(v: DataView, off: number, h: VnetHdr): void {
  h.flags = v.getUint8(off + FLAGS);
  h.gsoType = v.getUint8(off + GSO_TYPE);
  h.hdrLen = v.getUint16(off + HDR_LEN, true);
  h.gsoSize = v.getUint16(off + GSO_SIZE, true);
  h.csumStart = v.getUint16(off + CSUM_START, true);
  h.csumOffset = v.getUint16(off + CSUM_OFFSET, true);
}

/** Writes a header at `off`: GSO_NONE, checksum complete, for a finished packet. */
export function writeVnetNone(v: DataView, off: number): void {
  v.setUint32(off, 0);
  v.setUint32(off + 4, 0);
  v.setUint16(off + 8, 0);
}

/**
 * Writes a TCPv4 super-packet header at `off`: the kernel segments the packet after it
 * into `mss`-byte payloads and finishes the TCP checksum from `csumStart` (the IP header
 * length), whose field must hold the pseudo-header sum.
 */
export function writeVnetTcp4(
  v: DataView,
  off: number,
  hdrLen: number,
  mss: number,
  csumStart: number,
): void {
  v.setUint8(off + FLAGS, VNET_F_NEEDS_CSUM);
  v.setUint8(off + GSO_TYPE, VNET_GSO_TCPV4);
  v.setUint16(off + HDR_LEN, hdrLen, true);
  v.setUint16(off + GSO_SIZE, mss, true);
  v.setUint16(off + CSUM_START, csumStart, true);
  v.setUint16(off + CSUM_OFFSET, 16, true); // TCP checksum field
}

/**
 * Writes a UDP super-packet header at `off` (gso_type UDP_L4): the kernel cuts the packet
 * after it into datagrams of `payload` bytes each (the last may be shorter), each with its
 * own IP and UDP header and a UDP checksum finished from `csumStart` (the IP header length),
 * whose field must hold the pseudo-header sum of the whole.
 */
export function writeVnetUdp4(v: DataView, off: number, payload: number, csumStart: number): void {
  v.setUint8(off + FLAGS, VNET_F_NEEDS_CSUM);
  v.setUint8(off + GSO_TYPE, VNET_GSO_UDP_L4);
  v.setUint16(off + HDR_LEN, csumStart + 8, true);
  v.setUint16(off + GSO_SIZE, payload, true);
  v.setUint16(off + CSUM_START, csumStart, true);
  v.setUint16(off + CSUM_OFFSET, 6, true); // UDP checksum field
}

/**
 * Completes a partial checksum (NEEDS_CSUM) of the packet at `pkt`, `len` bytes: sums from
 * `csumStart` to the end (the field already holds the pseudo-header sum) and stores the
 * complement. `udp` maps a result of 0 to 0xffff (0 means "no checksum" in UDP). Returns
 * false when the offsets do not fit the packet.
 */
export function completeChecksum(
  v: DataView,
  s: SumViews,
  pkt: number,
  len: number,
  csumStart: number,
  csumOffset: number,
  udp: boolean,
): boolean {
  if (csumStart + csumOffset + 2 > len) return false;
  const c = ~sumBytes(s, pkt + csumStart, len - csumStart) & 0xffff;
  v.setUint16(pkt + csumStart + csumOffset, c === 0 && udp ? 0xffff : c);
  return true;
}
