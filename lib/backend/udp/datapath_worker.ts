/**
 * The data path Worker: runs one or both directions (tun_to_udp.ts, udp_to_tun.ts) in one
 * loop. It waits in poll() on the fds of its directions and the stop eventfd, then drains
 * whatever is readable, taking turns between directions one batch at a time, until both are
 * empty; only then does it wait again. Synchronous FFI only, nothing allocated per packet
 * or per wait.
 * @module
 */

import { CTL_STOP, type Direction, serveWorker, type WorkerInit } from "./worker_protocol.ts";
import { tunToUdp } from "./tun_to_udp.ts";
import { udpToTun } from "./udp_to_tun.ts";
import { ERRNO, errno, errnoName, libc, POLLIN } from "../../../ffi/libc.ts";

/** Batches in a row before poll() is asked again (keeps the stop flag and fairness in view). */
const MAX_ROUNDS = 1024;
/** struct pollfd: fd i32, events i16, revents i16. */
const POLLFD = 8;

function run(init: WorkerInit, control: Int32Array, ready: () => void): void {
  const dirs: Direction[] = init.directions.map((d) =>
    d === "tun→udp" ? tunToUdp(init) : udpToTun(init)
  );
  const n = dirs.length;
  // pollfd 0..n-1: the directions' fds; n: the stop eventfd.
  const pfd = new Uint8Array((n + 1) * POLLFD);
  const pv = new DataView(pfd.buffer);
  for (let i = 0; i <= n; i++) {
    pv.setInt32(i * POLLFD, i < n ? dirs[i].fd : init.wakeFd, true);
    pv.setInt16(i * POLLFD + 4, POLLIN, true);
  }
  const pending = new Uint8Array(n); // direction i may have more to drain
  const { poll } = libc;

  /** poll() with `timeout` ms; marks the directions whose fd is readable; returns how many. */
  function wait(timeout: number): number {
    const r = poll(pfd, n + 1, timeout);
    if (r < 0) {
      const e = errno();
      if (e === ERRNO.EINTR) return 0;
      throw new Error(`poll failed: ${errnoName(e)}`);
    }
    let ready = 0;
    for (let i = 0; i < n; i++) {
      if (pv.getInt16(i * POLLFD + 6, true) !== 0) {
        pending[i] = 1;
        ready++;
      }
    }
    return ready;
  }

  /** Drains the pending directions in turns until none has more (or MAX_ROUNDS batches). */
  function drainAll(): void {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let any = 0;
      for (let i = 0; i < n; i++) {
        if (pending[i] === 0) continue;
        pending[i] = dirs[i].drain() ? 1 : 0;
        any |= pending[i];
      }
      if (any === 0 || Atomics.load(control, CTL_STOP) !== 0) return;
    }
  }

  ready();
  while (Atomics.load(control, CTL_STOP) === 0) {
    if (wait(-1) > 0) drainAll();
  }
}

serveWorker(run);
