/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * Test Worker: looks up peers in a shared {@link PeerTable} as fast as it can while the
 * main thread rewrites it, and reports every answer that could not have been written.
 * Start message: { peers, control, hot, fixed } (control[0] = 1 → stop).
 */
import { PeerTable } from "../../lib/backend/udp/peers.ts";

interface Start {
  peers: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** Address inside the subnet that the writer keeps rewriting (ip = k, port = k & 0xffff). */
  hot: number;
  /** Address inside a subnet that is never touched and must always be found. */
  fixed: number;
  fixedIP: number;
}

self.onmessage = (e: MessageEvent<Start>) => {
  const { hot, fixed, fixedIP } = e.data;
  const table = PeerTable.attach(e.data.peers);
  const control = new Int32Array(e.data.control);
  const out = new Uint32Array(2);
  let lookups = 0, torn = 0, missedFixed = 0, hits = 0;
  self.postMessage({ type: "started" });
  const deadline = Date.now() + 5000; // bounded even if the stop flag never comes
  while (Atomics.load(control, 0) === 0 && Date.now() < deadline) {
    for (let i = 0; i < 1000; i++) {
      lookups += 2;
      if (table.lookup(hot, out)) {
        hits++;
        if ((out[0] & 0xffff) !== out[1]) torn++;
      }
      if (!table.lookup(fixed, out) || out[0] !== fixedIP) missedFixed++;
    }
  }
  self.postMessage({ type: "done", lookups, hits, torn, missedFixed });
  self.close();
};
