/**
 * The udp data path: Worker(s) around an already open TUN fd and tunnel socket, sharing the
 * peer table, the counters and a stop flag through SharedArrayBuffers. By default one
 * Worker runs both directions (datapath_worker.ts); with `workers: 2` each direction has
 * its own. Knows nothing about leases, netlink or config: the backend wires it.
 * @module
 */

import { check, close, EFD_CLOEXEC, EFD_NONBLOCK, libc } from "../../../ffi/libc.ts";
import type { IP4Net } from "../../core/ip.ts";
import { getVerbosity, logger } from "../../core/log.ts";
import { C, createCounters, snapshotCounters } from "./counters.ts";
import type { PeerTable } from "./peers.ts";
import {
  CTL_STOP,
  CTL_WORDS,
  type DirectionName,
  type WorkerInit,
  type WorkerReport,
} from "./worker_protocol.ts";

const log = logger("udp");

/** What the data path needs; the fds stay owned by the caller. */
export interface DatapathOptions {
  tunFd: number;
  sockFd: number;
  /** TUN MTU. */
  mtu: number;
  /** Our TUN address (u32), the source of ICMP errors. */
  tunAddr: number;
  /** Our subnet; received packets must be addressed into it. */
  subnet: IP4Net;
  peers: PeerTable;
  /** Datagrams per sendmmsg/recvmmsg (default 64). */
  batch?: number;
  /** The TUN carries a virtio_net_hdr and hands over TCP super-packets (TSO). */
  tunTso?: boolean;
  /** The socket accepts UDP_SEGMENT sends. */
  udpGso?: boolean;
  /** UDP_GRO is on on the socket. */
  udpGro?: boolean;
  /** The TUN takes UDP super-packets (Linux ≥ 6.2): coalesce UDP flows too. */
  tunUso?: boolean;
  /** Worker threads: 1 runs both directions (default), 2 gives each its own. */
  workers?: 1 | 2;
}

/** A running Worker and the promise of its end. */
interface Running {
  worker: Worker;
  /** Resolves with null when the Worker stopped cleanly, else with its error. */
  ended: Promise<string | null>;
}

const WORKER_MODULE = "./datapath_worker.ts";

/** Starts one Worker and resolves once it reports ready; rejects if it fails first. */
function spawn(init: WorkerInit): Promise<Running> {
  const file = `${WORKER_MODULE} (${init.directions.join(", ")})`;
  const worker = new Worker(new URL(WORKER_MODULE, import.meta.url), { type: "module" });
  return new Promise((resolveReady, rejectReady) => {
    let settle: (v: string | null) => void = () => {};
    const ended = new Promise<string | null>((r) => settle = r);
    worker.onmessage = (e: MessageEvent<WorkerReport>) => {
      const m = e.data;
      if (m.type === "ready") resolveReady({ worker, ended });
      else if (m.type === "stopped") settle(null);
      else {
        settle(m.message);
        rejectReady(new Error(`${file}: ${m.message}`));
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      settle(e.message);
      rejectReady(new Error(`${file}: ${e.message}`));
    };
    worker.postMessage(init);
  });
}

/** The running data path. */
export class UdpDatapath {
  readonly #counters: Float64Array<SharedArrayBuffer>;
  readonly #control: Int32Array<SharedArrayBuffer>;
  readonly #wakeFd: number;
  #workers: Running[] = [];
  #stopped = false;

  private constructor(
    counters: Float64Array<SharedArrayBuffer>,
    control: Int32Array<SharedArrayBuffer>,
    wakeFd: number,
  ) {
    this.#counters = counters;
    this.#control = control;
    this.#wakeFd = wakeFd;
  }

  /** Starts the Worker(s); resolves when they run. On failure, stops what started and throws. */
  static async start(opts: DatapathOptions): Promise<UdpDatapath> {
    const counters = createCounters();
    const control = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
    const wakeFd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const dp = new UdpDatapath(counters, control, wakeFd);
    const batch = opts.batch ?? 64;
    counters[C.feature_tun_tso] = opts.tunTso ? 1 : 0;
    counters[C.feature_udp_gso] = opts.udpGso ? 1 : 0;
    counters[C.feature_udp_gro] = opts.udpGro ? 1 : 0;
    const udpCoalesce = !!opts.tunTso && !!opts.tunUso;
    counters[C.feature_udp_coalesce] = udpCoalesce ? 1 : 0;
    const init: Omit<WorkerInit, "directions"> = {
      tunFd: opts.tunFd,
      sockFd: opts.sockFd,
      wakeFd,
      mtu: opts.mtu,
      maxDatagram: Math.max(opts.mtu, 2048),
      batch,
      tunAddr: opts.tunAddr,
      subnet: opts.subnet,
      vnetHdr: !!opts.tunTso,
      udpGso: !!opts.udpGso,
      udpGro: !!opts.udpGro,
      udpCoalesce,
      peers: opts.peers.buffer,
      counters: counters.buffer,
      control: control.buffer,
      verbosity: getVerbosity(),
    };
    const both: DirectionName[] = ["tun→udp", "udp→tun"];
    const layout = opts.workers === 2 ? both.map((d) => [d]) : [both];
    const results = await Promise.allSettled(
      layout.map((directions) => spawn({ ...init, directions })),
    );
    for (const r of results) if (r.status === "fulfilled") dp.#workers.push(r.value);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      await dp.stop();
      throw (failed as PromiseRejectedResult).reason;
    }
    for (const { ended } of dp.#workers) {
      ended.then((err) => {
        if (!dp.#stopped) log.error("udp worker ended unexpectedly", { error: err ?? "returned" });
      });
    }
    log.info("udp data path started", {
      mtu: opts.mtu,
      batch,
      workers: layout.length,
    });
    return dp;
  }

  /** Counters: packets/bytes each way, batches, drops by reason. */
  stats(): Record<string, number> {
    return snapshotCounters(this.#counters);
  }

  /**
   * Asks the Workers to return (stop flag + eventfd in their poll set) and waits up to
   * `timeoutMs`; Workers still blocked then are terminated. The caller closes the fds
   * afterwards.
   */
  async stop(timeoutMs = 2000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    Atomics.store(this.#control, CTL_STOP, 1);
    const one = new Uint8Array(8);
    one[0] = 1;
    libc.write(this.#wakeFd, one, 8);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), timeoutMs)
    );
    for (const { worker, ended } of this.#workers) {
      const r = await Promise.race([ended, timeout]);
      if (r === "timeout") log.warn("udp worker did not stop in time; terminating it");
      else if (r !== null) log.error("udp worker failed", { error: r });
      worker.terminate();
    }
    clearTimeout(timer);
    this.#workers = [];
    close(this.#wakeFd, true);
    log.info("udp data path stopped");
  }
}
