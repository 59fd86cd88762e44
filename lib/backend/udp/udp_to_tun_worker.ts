/**
 * Worker: UDP → TUN. Blocks in recvmmsg(MSG_WAITFORONE) (the socket has a receive timeout,
 * so the stop flag is seen within it), validates each datagram and writes the inner packet
 * to the TUN. Drop reasons, checked in this order: not a well-formed IPv4 packet
 * ("malformed"), inner destination outside our subnet ("not_our_subnet"), sender is no
 * peer's public IP ("unknown_source"), TTL expired ("ttl"). Synchronous FFI only, nothing
 * allocated per packet.
 * @module
 */

import { C } from "./counters.ts";
import { CTL_STOP, serveWorker, type WorkerInit } from "./worker_protocol.ts";
import { MsgBatch } from "./mmsg.ts";
import { PeerTable } from "./peers.ts";
import { decrementTTL, ipv4Dst, ipv4TotalLength, isValidIPv4 } from "./packet.ts";
import { ERRNO, errno, errnoName, libc, MSG_WAITFORONE } from "../../../ffi/libc.ts";
import { formatNet4, mask4 } from "../../ip.ts";
import { logger, OnceLogger } from "../../log.ts";

const log = logger("udp");
/** Times a TUN write is retried on EAGAIN before the packet is dropped. */
const TUN_WRITE_RETRIES = 3;

function run(init: WorkerInit, control: Int32Array, ready: () => void): void {
  const { tunFd, sockFd, batch } = init;
  const peers = PeerTable.attach(init.peers);
  const counts = new Float64Array(init.counters);
  const slots = new MsgBatch(batch, init.maxDatagram);
  const { view, packets, headers } = slots;
  const netMask = mask4(init.subnet.prefix);
  const net = init.subnet.ip >>> 0;
  const once = new OnceLogger(log);
  const { write, recvmmsg } = libc;

  /** Validates slot i and writes it to the TUN, or counts why not. */
  function forward(i: number): void {
    const off = slots.packetOffset(i);
    if (!isValidIPv4(view, off, slots.receivedLength(i))) {
      counts[C.rx_drop_malformed]++;
    } else if (((ipv4Dst(view, off) & netMask) >>> 0) !== net) {
      counts[C.rx_drop_not_our_subnet]++;
    } else if (!peers.isPeer(slots.peerAddress(i))) {
      counts[C.rx_drop_unknown_source]++;
    } else if (!decrementTTL(view, off)) {
      counts[C.rx_drop_ttl]++;
    } else {
      const total = ipv4TotalLength(view, off); // trailing bytes past the IP packet are not forwarded
      for (let tries = 0; tries <= TUN_WRITE_RETRIES; tries++) {
        if (write(tunFd, packets[i], total) === total) {
          counts[C.rx_packets]++;
          counts[C.rx_bytes] += total;
          return;
        }
        const e = errno();
        if (e !== ERRNO.EAGAIN && e !== ERRNO.EINTR) {
          once.warn(`tunwrite:${e}`, "TUN write failed; dropping packet", { errno: errnoName(e) });
          break;
        }
      }
      counts[C.rx_drop_tun_write]++;
    }
  }

  ready();
  log.info("udp→tun worker running", { sockFd, batch, subnet: formatNet4(init.subnet) });
  while (Atomics.load(control, CTL_STOP) === 0) {
    slots.prepareReceive();
    const n = recvmmsg(sockFd, headers[0], batch, MSG_WAITFORONE, null);
    if (n < 0) {
      const e = errno();
      if (e === ERRNO.EAGAIN || e === ERRNO.EINTR) continue; // receive timeout: look at the stop flag
      if (e === ERRNO.EBADF) throw new Error("UDP socket closed under the worker");
      once.warn(`recv:${e}`, "UDP receive failed", { errno: errnoName(e) });
      continue;
    }
    if (Atomics.load(control, CTL_STOP) !== 0) break;
    for (let i = 0; i < n; i++) forward(i);
    counts[C.rx_batches]++;
  }
}

serveWorker(run);
