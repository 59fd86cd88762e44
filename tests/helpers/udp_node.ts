/**
 * Test driver: runs the udp backend in the current network namespace (start it with
 * `ip netns exec <ns> deno run -A tests/helpers/udp_node.ts …`) with static peers, so that
 * the data path can be exercised without etcd.
 *
 *   --iface veth0 --addr 192.168.77.1 --mtu 1500 --network 10.99.0.0/16
 *   --subnet 10.99.1.0/24 [--port 8285] [--offloads false] --peer 10.99.2.0/24=192.168.77.2 …
 *
 * Prints `READY <tun name>` once running. Reads commands from stdin, one per line:
 * `stats` prints `STATS <json>`; `quit` (or end of input) stops the backend and exits.
 */
import { parseArgs } from "node:util";
import { createInterface } from "node:readline";
import process from "node:process";
import { udpBackend } from "../../lib/backend/udp/backend.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";
import { parseCIDR4, parseIP4 } from "../../lib/core/ip.ts";
import type { Lease } from "../../lib/values/lease.ts";
import { ifNameToIndex } from "../../ffi/libc.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    iface: { type: "string" },
    addr: { type: "string" },
    mtu: { type: "string", default: "1500" },
    network: { type: "string" },
    subnet: { type: "string" },
    port: { type: "string" },
    offloads: { type: "string" },
    peer: { type: "string", multiple: true, default: [] },
  },
});

function need<T>(v: T | null | undefined, what: string): T {
  if (v === null || v === undefined) throw new Error(`missing or invalid --${what}`);
  return v;
}

const addr = need(parseIP4(values.addr ?? ""), "addr");
const subnet = need(parseCIDR4(values.subnet ?? ""), "subnet");
const backendJSON = JSON.stringify({
  Type: "udp",
  ...(values.port ? { Port: Number(values.port) } : {}),
  ...(values.offloads ? { Offloads: values.offloads === "true" } : {}),
});
const network = parseNetworkConfig(
  `{"Network":"${
    need(values.network, "network")
  }","SubnetLen":${subnet.prefix},"Backend":${backendJSON}}`,
);
const iface = need(values.iface, "iface");
const backend = udpBackend.create({
  network,
  ext: {
    name: iface,
    index: ifNameToIndex(iface),
    mtu: Number(values.mtu),
    ifaceAddr: addr,
    extAddr: addr,
    ifaceAddr6: null,
    extAddr6: null,
  },
  options: udpBackend.parse(network.backend, network),
  reconcileIntervalSeconds: 10,
});

const lease = (s: string, publicIP: number): Lease => ({
  subnet: need(parseCIDR4(s), `peer subnet ${s}`),
  attrs: { publicIP, publicIPv6: null },
});

await backend.prepare();
await backend.start(lease(values.subnet!, addr));
await backend.handle(values.peer!.map((p) => {
  const [s, pub] = p.split("=");
  return { type: "added" as const, lease: lease(s, need(parseIP4(pub), `peer ${p}`)) };
}));
console.log(`READY mtu=${backend.mtu}`);

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "stats") console.log(`STATS ${JSON.stringify(backend.stats())}`);
  if (line.trim() === "quit") break;
}
await backend.stop();
console.log(`STOPPED ${JSON.stringify(backend.stats())}`);
Deno.exit(0);
