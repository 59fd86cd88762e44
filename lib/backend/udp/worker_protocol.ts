/**
 * What the udp data path's main thread and its Worker(s) exchange: one start message with
 * fds and SharedArrayBuffers, then reports back (ready, stopped, error). Everything that
 * changes while running (peers, counters, the stop flag) goes through shared memory,
 * because a Worker blocked in a syscall never runs its message handler.
 * @module
 */

import { selfTest } from "../../../ffi/libc.ts";
import type { IP4Net } from "../../core/ip.ts";
import { setVerbosity } from "../../core/log.ts";

/** A direction of the data path: TUN → UDP or UDP → TUN. */
export type DirectionName = "tun→udp" | "udp→tun";

/** One direction as a Worker runs it: the fd it reads, and a drain step. */
export interface Direction {
  name: DirectionName;
  /** The fd whose readability means work (TUN or socket), non-blocking. */
  fd: number;
  /** Moves what is readable now, up to one batch; returns whether more may be waiting. */
  drain(): boolean;
}

/** Start message of a data path Worker. */
export interface WorkerInit {
  /** The directions this Worker runs (both, or one when each has its own Worker). */
  directions: DirectionName[];
  tunFd: number;
  sockFd: number;
  /** eventfd that the main thread writes to wake a Worker waiting in poll() (on stop). */
  wakeFd: number;
  /** TUN MTU: largest packet read from the TUN. */
  mtu: number;
  /** Largest datagram accepted from the network (bigger ones are truncated → malformed). */
  maxDatagram: number;
  /** Datagrams per sendmmsg/recvmmsg. */
  batch: number;
  /** Our TUN address (u32): source of ICMP errors. */
  tunAddr: number;
  /** Our own subnet: received packets must be addressed into it. */
  subnet: IP4Net;
  /** The TUN puts a virtio_net_hdr in front of each packet (offloads on). */
  vnetHdr: boolean;
  /** UDP_SEGMENT sends work on the socket. */
  udpGso: boolean;
  /** UDP_GRO is on on the socket. */
  udpGro: boolean;
  /** The TUN takes UDP super-packets (UDP_L4): UDP flows are coalesced like TCP ones. */
  udpCoalesce: boolean;
  peers: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  /** Int32Array; slot {@link CTL_STOP} non-zero asks the Worker to return. */
  control: SharedArrayBuffer;
  verbosity: number;
}

/** A Worker's report to the main thread. */
export type WorkerReport =
  | { type: "ready" }
  | { type: "stopped" }
  | { type: "error"; message: string };

/** Index of the stop flag in the control Int32Array. */
export const CTL_STOP = 0;
/** Words in the control block. */
export const CTL_WORDS = 1;

/** The worker loop: sets up, calls `ready()`, then runs until the stop flag is set. */
export type WorkerLoop = (init: WorkerInit, control: Int32Array, ready: () => void) => void;

/**
 * Worker side: waits for the start message, runs `loop` synchronously (it blocks in system
 * calls, by design), reports the outcome and closes the Worker.
 */
export function serveWorker(loop: WorkerLoop): void {
  const scope = globalThis as unknown as {
    onmessage: ((e: MessageEvent<WorkerInit>) => void) | null;
    postMessage(m: WorkerReport): void;
    close(): void;
  };
  scope.onmessage = (e) => {
    scope.onmessage = null;
    const init = e.data;
    setVerbosity(init.verbosity);
    try {
      selfTest(); // narrow FFI declarations must behave in this thread too
      loop(init, new Int32Array(init.control), () => scope.postMessage({ type: "ready" }));
      scope.postMessage({ type: "stopped" });
    } catch (err) {
      scope.postMessage({
        type: "error",
        message: err instanceof Error ? err.stack ?? err.message : String(err),
      });
    }
    scope.close();
  };
}
