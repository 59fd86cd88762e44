/**
 * Writes and deletes etcd keys for the control-plane benchmark, run inside the cluster's
 * etcd namespace (the only place etcd is reachable): `deno run -A lease_writer.ts <endpoint>`.
 *
 * stdin, one JSON command a line: `{"put": [[key, value], …], "parallel": k}` or
 * `{"del": [key, …]}`. stdout: `ready` once connected, then `done <JSON>` per command,
 * where for `put` the JSON is the wall-clock time (ms since the epoch) at which each put
 * was sent. Puts go `parallel` at a time (default 1: each key appears in etcd shortly
 * after its own timestamp).
 * @module
 */

import { EtcdStore } from "../lib/subnet/etcd_store.ts";
import { mapLimit } from "../tests/helpers/ping.ts";

/** Wall-clock milliseconds with sub-millisecond precision. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const store = new EtcdStore({ endpoints: [Deno.args[0]], callTimeoutMs: 10_000 });
await store.get("/"); // connect before reporting ready
console.log("ready");

/** Runs one command line; prints its `done` line. */
async function handle(line: string): Promise<void> {
  const cmd = JSON.parse(line) as { put?: [string, string][]; parallel?: number; del?: string[] };
  const times = await mapLimit(cmd.put ?? [], cmd.parallel ?? 1, async ([key, value]) => {
    const t = nowMs();
    await store.create(key, value, 0); // as a host creates its lease: only if absent
    return t;
  });
  // One delete at a time: each becomes its own watch event (upstream v0.20.2 handles only
  // the first event of a watch response, so deletes batched by etcd would go unseen).
  await mapLimit(cmd.del ?? [], 1, async (key) => {
    await store.delete(key);
  });
  console.log(`done ${JSON.stringify(times)}`);
}

let buf = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  buf += chunk;
  for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line.trim()) await handle(line);
  }
}
store.close();
