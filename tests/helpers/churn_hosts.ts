/**
 * Lightweight hosts for tests/churn_test.ts, run inside a namespace that reaches the
 * cluster's etcd: `churn_hosts.ts <endpoint> <hosts> <seconds> <seed>`. Each host is a
 * LeaseManager plus a LeaseWatcher with its own etcd client and a vxlan-shaped lease, so
 * the cluster's vxlan daemons program it. They all join, then for `<seconds>` one random
 * host every 0.5 s leaves (stop, delete its key) or joins again (a new acquisition), while
 * every lease in etcd is checked for overlap every 200 ms. Prints `JOINED <n>` once all
 * have joined, then `RESULT <json>` and exits; the hosts still up keep their leases.
 * @module
 */

import { overlaps4, parseIP4 } from "../../lib/core/ip.ts";
import { describeLease } from "../../lib/values/lease.ts";
import { setSink } from "../../lib/core/log.ts";
import { LeaseWatcher } from "../../lib/subnet/watcher.ts";
import { hostManager, registryFor } from "./control.ts";
import { sleep } from "./wait.ts";
import { Rng } from "./fuzz.ts";

/** Outcome of a churn run. */
export interface ChurnResult {
  joins: number;
  leaves: number;
  checks: number;
  /** Overlapping pairs seen in etcd (`a ~ b @ revision`); must stay empty. */
  overlaps: string[];
  /** Subnets of the lightweight hosts still up at the end. */
  live: string[];
}

/** One lightweight host: its own client, lease manager and watcher. */
class LightHost {
  #stop: (() => Promise<void>) | null = null;
  subnet = "";

  constructor(readonly endpoint: string, readonly configText: string, readonly index: number) {}

  get up(): boolean {
    return this.#stop !== null;
  }

  /** Acquires a lease and follows the others, as a daemon would. */
  async join(): Promise<void> {
    const { store, registry } = registryFor({ endpoint: this.endpoint });
    const ip = `192.168.100.${100 + this.index}`; // on no wire: only FDB entries point at it
    const mac = `0e:c4:00:00:00:${this.index.toString(16).padStart(2, "0")}`;
    const m = hostManager(registry, this.configText, ip, {
      attrs: {
        publicIP: parseIP4(ip)!,
        publicIPv6: null,
        backendType: "vxlan",
        backendData: { VNI: 1, VtepMAC: mac },
      },
    });
    const lease = await m.acquire();
    const w = new LeaseWatcher(registry, {
      onEvents: () => {},
      onOwn: (ev) => m.handleOwn(ev),
      validate: () => null,
    }, { backoffMinMs: 50, backoffMaxMs: 1000 });
    w.setOwn(lease.subnet);
    await w.start();
    m.startRenewal();
    this.subnet = describeLease(lease);
    this.#stop = async () => {
      w.stop();
      m.stop();
      const l = m.lease!;
      await registry.delete(l.subnet);
      await store.revoke(l.leaseId ?? "0");
      store.close();
    };
  }

  /** Leaves: stops and deletes its key (a host removed from the cluster). */
  async leave(): Promise<void> {
    const stop = this.#stop;
    this.#stop = null;
    await stop?.();
  }
}

/** Lists every lease and returns the overlapping pairs. */
async function overlapping(endpoint: string): Promise<string[]> {
  const { store, registry } = registryFor({ endpoint });
  try {
    const { leases, revision } = await registry.listLeases();
    const out: string[] = [];
    for (let i = 0; i < leases.length; i++) {
      for (let j = i + 1; j < leases.length; j++) {
        if (overlaps4(leases[i].subnet, leases[j].subnet)) {
          out.push(`${describeLease(leases[i])} ~ ${describeLease(leases[j])} @ ${revision}`);
        }
      }
    }
    return out;
  } finally {
    store.close();
  }
}

async function main(
  endpoint: string,
  n: number,
  seconds: number,
  seed: number,
): Promise<ChurnResult> {
  setSink((line) => /^[EW]/.test(line) && console.error(line)); // warnings and errors only
  const { store, registry } = registryFor({ endpoint });
  const configText = (await registry.getConfig())!;
  store.close();
  const hosts = Array.from({ length: n }, (_, i) => new LightHost(endpoint, configText, i));
  await Promise.all(hosts.map((h) => h.join()));
  console.log(`JOINED ${n}`);
  const r: ChurnResult = { joins: n, leaves: 0, checks: 0, overlaps: [], live: [] };
  const rng = new Rng(seed);
  const end = Date.now() + seconds * 1000;
  let checking = true;
  const checker = (async () => {
    while (checking) {
      r.overlaps.push(...await overlapping(endpoint));
      r.checks++;
      await sleep(200); // overlap check every 200 ms
    }
  })();
  while (Date.now() < end) {
    const h = rng.pick(hosts);
    const down = hosts.filter((x) => !x.up).length;
    if (h.up && down < n / 3) {
      await h.leave();
      r.leaves++;
    } else if (!h.up) {
      await h.join();
      r.joins++;
    }
    await sleep(500); // one join or leave every 0.5 s
  }
  checking = false;
  await checker;
  r.live = hosts.filter((h) => h.up).map((h) => h.subnet).sort();
  return r;
}

if (import.meta.main) {
  const [endpoint, n, seconds, seed] = Deno.args;
  const r = await main(endpoint, Number(n), Number(seconds), Number(seed));
  console.log(`RESULT ${JSON.stringify(r)}`);
  Deno.exit(0); // the hosts still up keep their leases; their clients die with the process
}
