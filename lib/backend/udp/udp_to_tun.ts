/**
 * UDP → TUN, one direction of the data path Worker: receives a batch with one non-blocking
 * recvmmsg, validates each datagram and writes the inner packet to the TUN. Drop reasons, checked in this order: not a well-formed IPv4 packet
 * ("malformed"), inner destination outside our subnet ("not_our_subnet"), sender is no
 * peer's public IP ("unknown_source"), TTL expired ("ttl"). Synchronous FFI only, nothing
 * allocated per packet.
 *
 * With UDP GRO one received buffer holds many datagrams of the size given in a cmsg (the
 * last may be shorter); each is validated on its own. With a virtio_net_hdr on the TUN,
 * consecutive segments of one TCP flow are coalesced into one super-packet (gro.ts), and
 * everything else is written behind a header saying "plain packet".
 * @module
 */

import { C } from "./counters.ts";
import type { Direction, WorkerInit } from "./worker_protocol.ts";
import { CMSG_SPACE_INT, IoVec, MsgBatch } from "./mmsg.ts";
import { PeerTable } from "./peers.ts";
import { decrementTTL, ipv4Dst, ipv4TotalLength, isValidIPv4 } from "./packet.ts";
import { sumViews } from "./checksum.ts";
import { allocSummable } from "./checksum_wasm.ts";
import { Coalescer } from "./gro.ts";
import { ERRNO, errno, errnoName, libc, MSG_DONTWAIT } from "../../../ffi/libc.ts";
import { formatNet4, mask4 } from "../../core/ip.ts";
import { logger, OnceLogger } from "../../core/log.ts";

const log = logger("udp");
/** Times a TUN write is retried on EAGAIN before the packet is dropped. */
const TUN_WRITE_RETRIES = 3;
/** A UDP GRO buffer holds at most one 64 KB datagram train. */
const GRO_BUFFER = 65535;
/** GRO buffers per recvmmsg (each 64 KB). */
const GRO_BATCH = 32;

/** The UDP → TUN direction over `init`'s socket and TUN fd. */
export function udpToTun(init: WorkerInit): Direction {
  const { tunFd, sockFd, vnetHdr, udpGro, maxDatagram } = init;
  const batch = udpGro ? Math.min(init.batch, GRO_BATCH) : init.batch;
  const peers = PeerTable.attach(init.peers);
  const counts = new Float64Array(init.counters);
  // Headroom: the virtio_net_hdr goes in front of the first packet of a slot.
  const slots = new MsgBatch(batch, udpGro ? GRO_BUFFER : init.maxDatagram, {
    headroom: 64,
    controlSize: udpGro ? CMSG_SPACE_INT : 0,
    alloc: vnetHdr ? allocSummable : undefined, // coalescing verifies TCP checksums
  });
  const { view, headers } = slots;
  const out = new IoVec(slots.bytes);
  const netMask = mask4(init.subnet.prefix);
  const net = init.subnet.ip >>> 0;
  const once = new OnceLogger(log);
  const { writev, recvmmsg } = libc;

  /**
   * Writes `len` bytes at `off` to the TUN, retrying briefly when its queue is full;
   * returns false when the packet was dropped, with the errno in `lastError`.
   */
  function emit(off: number, len: number): boolean {
    out.aim(off, len);
    for (let tries = 0; tries <= TUN_WRITE_RETRIES; tries++) {
      if (writev(tunFd, out.iov, 1) === len) {
        counts[C.rx_tun_writes]++;
        return true;
      }
      const e = errno();
      if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) {
        once.warn(`tunwrite:${e}`, "TUN write failed; dropping packet", { errno: errnoName(e) });
        break;
      }
    }
    counts[C.rx_drop_tun_write]++;
    return false;
  }
  const coalescer = vnetHdr
    ? new Coalescer(view, sumViews(slots.bytes.buffer), emit, {
      udp: init.udpCoalesce,
      onUdpRefused: () => {
        counts[C.feature_udp_coalesce] = 0;
        log.warn("the TUN refused a UDP super-packet; UDP datagrams are written one by one now");
      },
    })
    : null;

  /** Validates the datagram at `off` (`len` bytes, from a peer or not) and passes it on. */
  function forward(off: number, len: number, fromPeer: boolean): void {
    // Datagrams longer than a plain receive slot are malformed with or without GRO.
    if (len > maxDatagram || !isValidIPv4(view, off, len)) {
      counts[C.rx_drop_malformed]++;
    } else if (((ipv4Dst(view, off) & netMask) >>> 0) !== net) {
      counts[C.rx_drop_not_our_subnet]++;
    } else if (!fromPeer) {
      counts[C.rx_drop_unknown_source]++;
    } else if (!decrementTTL(view, off)) {
      counts[C.rx_drop_ttl]++;
    } else {
      const total = ipv4TotalLength(view, off); // trailing bytes past the IP packet are not forwarded
      counts[C.rx_packets]++;
      counts[C.rx_bytes] += total;
      if (coalescer) coalescer.push(off, total);
      else emit(off, total);
    }
  }

  /** Forwards every datagram of slot i (several with GRO), then writes what is pending. */
  function forwardSlot(i: number): void {
    const base = slots.packetOffset(i);
    const len = slots.receivedLength(i);
    const fromPeer = peers.isPeer(slots.peerAddress(i));
    const seg = udpGro ? slots.groSize(i) : 0;
    if (seg > 0 && seg < len) {
      counts[C.rx_gro_buffers]++;
      for (let off = 0; off < len; off += seg) {
        forward(base + off, Math.min(seg, len - off), fromPeer);
      }
    } else {
      forward(base, len, fromPeer);
    }
    coalescer?.flush();
  }

  /** Receives and forwards one batch; returns whether it was full (more may be waiting). */
  function drain(): boolean {
    slots.prepareReceive();
    const n = recvmmsg(sockFd, headers[0], batch, MSG_DONTWAIT, null);
    if (n < 0) {
      const e = errno();
      if (e === ERRNO.EAGAIN) return false;
      if (e === ERRNO.EINTR) return true;
      if (e === ERRNO.EBADF) throw new Error("UDP socket closed under the worker");
      once.warn(`recv:${e}`, "UDP receive failed", { errno: errnoName(e) });
      return false;
    }
    for (let i = 0; i < n; i++) forwardSlot(i);
    if (coalescer) {
      counts[C.rx_coalesced_superpackets] = coalescer.superPackets;
      counts[C.rx_coalesced_segments] = coalescer.coalescedSegments;
    }
    counts[C.rx_batches]++;
    return n === batch;
  }

  log.info("udp→tun running", {
    sockFd,
    batch,
    subnet: formatNet4(init.subnet),
    gro: udpGro,
    coalesce: vnetHdr,
  });
  return { name: "udp→tun", fd: sockFd, drain };
}
