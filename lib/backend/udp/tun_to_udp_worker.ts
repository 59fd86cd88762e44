/**
 * Worker: TUN → UDP. Waits in poll() on the TUN and a wake-up eventfd, then drains the
 * non-blocking TUN into a batch of slots: each packet is validated, its peer looked up
 * (unknown destination → ICMP net-unreachable written back to the TUN), its TTL decremented,
 * and the batch goes out with one sendmmsg. Synchronous FFI only, nothing allocated per
 * packet (DATAPATH.md: this measured best).
 * @module
 */

import { C } from "./counters.ts";
import { CTL_STOP, serveWorker, type WorkerInit } from "./worker_protocol.ts";
import { MsgBatch } from "./mmsg.ts";
import { PeerTable } from "./peers.ts";
import {
  buildNetUnreachable,
  decrementTTL,
  ICMP_UNREACH_MAX,
  ipv4Dst,
  ipv4TotalLength,
  isValidIPv4,
} from "./packet.ts";
import { ERRNO, errno, errnoName, libc, POLLIN } from "../../../ffi/libc.ts";
import { formatIP4 } from "../../ip.ts";
import { logger, OnceLogger } from "../../log.ts";

const log = logger("udp");

function run(init: WorkerInit, control: Int32Array, ready: () => void): void {
  const { tunFd, sockFd, wakeFd, batch, tunAddr } = init;
  const peers = PeerTable.attach(init.peers);
  const counts = new Float64Array(init.counters);
  const slots = new MsgBatch(batch, init.mtu);
  const { view, packets, headers } = slots;
  const icmp = new Uint8Array(ICMP_UNREACH_MAX);
  const icmpView = new DataView(icmp.buffer);
  const peer = new Uint32Array(2);
  const lengths = new Uint32Array(batch);
  const pfd = new Uint8Array(16); // two struct pollfd: TUN, eventfd
  const pv = new DataView(pfd.buffer);
  pv.setInt32(0, tunFd, true);
  pv.setInt16(4, POLLIN, true);
  pv.setInt32(8, wakeFd, true);
  pv.setInt16(12, POLLIN, true);
  const once = new OnceLogger(log);
  const { read, write, poll, sendmmsg } = libc;
  const readLen = slots.slotSize;

  /** Sends slots [0, n); a failing datagram is counted and skipped. */
  function sendAll(n: number): void {
    let i = 0;
    while (i < n) {
      const sent = sendmmsg(sockFd, headers[i], n - i, 0);
      if (sent > 0) {
        for (let j = i; j < i + sent; j++) counts[C.tx_bytes] += lengths[j];
        counts[C.tx_packets] += sent;
        i += sent;
        continue;
      }
      const e = errno();
      if (e === ERRNO.EINTR) continue;
      counts[C.tx_drop_send]++;
      once.warn(`send:${e}`, "UDP send failed; dropping datagram", { errno: errnoName(e) });
      i++;
    }
    counts[C.tx_batches]++;
  }

  /** Reads up to a batch from the TUN; returns false once the TUN reported EAGAIN. */
  function fill(): boolean {
    let n = 0;
    while (n < batch) {
      const off = slots.packetOffset(n);
      const len = read(tunFd, packets[n], readLen);
      if (len < 0) {
        const e = errno();
        if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) break;
        throw new Error(`TUN read failed: ${errnoName(e)}`);
      }
      if (!isValidIPv4(view, off, len)) {
        // The kernel sends IPv6 (router solicitations, MLD) to flannel0 as well.
        counts[
          len > 0 && view.getUint8(off) >>> 4 !== 4 ? C.tx_drop_not_ipv4 : C.tx_drop_malformed
        ]++;
        continue;
      }
      if (!peers.lookup(ipv4Dst(view, off), peer)) {
        counts[C.tx_drop_no_route]++;
        const ilen = buildNetUnreachable(view, off, len, icmpView, tunAddr);
        if (ilen > 0 && write(tunFd, icmp, ilen) === ilen) counts[C.tx_icmp_unreachable]++;
        continue;
      }
      if (!decrementTTL(view, off)) {
        counts[C.tx_drop_ttl]++;
        continue;
      }
      const total = ipv4TotalLength(view, off);
      lengths[n] = total;
      slots.setLength(n, total);
      slots.setPeer(n, peer[0], peer[1]);
      n++;
    }
    if (n > 0) sendAll(n);
    return n === batch;
  }

  ready();
  log.info("tun→udp worker running", { tunFd, batch, tunAddr: formatIP4(tunAddr) });
  while (Atomics.load(control, CTL_STOP) === 0) {
    if (poll(pfd, 2, -1) < 0) {
      if (errno() === ERRNO.EINTR) continue;
      throw new Error(`poll failed: ${errnoName(errno())}`);
    }
    // Keep draining while batches come back full: poll() is only worth it once the TUN is empty.
    for (let rounds = 0; rounds < 1024 && Atomics.load(control, CTL_STOP) === 0; rounds++) {
      if (!fill()) break;
    }
  }
}

serveWorker(run);
