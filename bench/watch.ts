/**
 * Detecting when a peer lease has been programmed by the daemon, with the time it happened:
 * from the kernel (`ip -ts monitor route neigh` in the host namespace: routes, neighbours
 * and FDB entries, µs timestamps) or, for backends whose state is not visible from outside
 * (udp's peer table), from the daemon's own log lines (ms timestamps).
 * @module
 */

import { LineProcess } from "../tests/helpers/line_process.ts";
import { ip } from "../tests/helpers/netns.ts";

/** A fake peer lease. */
export interface Peer {
  /** Full etcd key. */
  key: string;
  /** Lease value (JSON). */
  value: string;
  /** `10.200.0.0/24`. */
  subnet: string;
  /** `10.200.0.0`. */
  network: string;
  publicIP: string;
  /** VTEP MAC for vxlan leases, else null. */
  mac: string | null;
}

/** Tracks programming and removal of a set of peers. */
export interface ProgramWatch {
  /** How "programmed" is detected, for the report. */
  readonly method: string;
  /** Starts a round for `peers`: forgets everything seen before. */
  reset(peers: Peer[]): void;
  /** Time (ms since the epoch) each peer became fully programmed, for those that are so far. */
  programmed(): Map<string, number>;
  /** Whether every peer's state has been removed since the reset. */
  removed(): boolean;
  close(): Promise<void>;
}

/** First time each key was seen; later sightings keep the first. */
class FirstSeen extends Map<string, number> {
  note(key: string, t: number): void {
    if (!this.has(key)) this.set(key, t);
  }
}

/** Parses `[2026-11-22T06:10:07.376809] text` (local time, as `ip -ts` prints it). */
export function parseMonitorLine(line: string): { t: number; text: string } | null {
  const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] (.*)$/.exec(line);
  return m ? { t: Date.parse(m[1]) + Number(m[2]) / 1000, text: m[3] } : null;
}

/**
 * Kernel state from `ip monitor`: a route to the peer's subnet; with `l2` (vxlan) also a
 * neighbour entry with the peer's MAC and an FDB entry sending that MAC to its public IP.
 */
export class KernelWatch implements ProgramWatch {
  readonly method: string;
  #peers: Peer[] = [];
  /** Public IP of each peer MAC, to tell FDB entries (MAC → public IP) from neighbours. */
  #publicByMac = new Map<string, string>();
  #added = new FirstSeen();
  #deleted = new FirstSeen();

  private constructor(private readonly mon: LineProcess, private readonly l2: boolean) {
    this.method = l2
      ? "kernel route + neighbour + FDB (ip monitor, µs)"
      : "kernel route (ip monitor, µs)";
  }

  /** Starts the monitor in `ns` and waits until it provably sees events. */
  static async start(ns: string, l2: boolean): Promise<KernelWatch> {
    const mon = new LineProcess(`ip monitor in ${ns}`, "ip", [
      "-n",
      ns,
      "-ts",
      "monitor",
      "route",
      "neigh",
    ]);
    const probe = "198.51.100.0/24";
    try {
      // A route added before `ip monitor` has joined its netlink groups is never reported:
      // add and delete the probe until one is seen (a run once failed on a single try).
      const deadline = Date.now() + 10_000;
      for (;;) {
        await ip(ns, "route", "add", probe, "dev", "lo");
        const seen = await mon.waitFor((l) => l.includes(probe), "probe route event", 500)
          .then(() => true, (e) => {
            if (Date.now() > deadline) throw e;
            return false;
          });
        await ip(ns, "route", "del", probe, "dev", "lo");
        if (seen) break;
      }
    } catch (e) {
      await mon.kill();
      throw e;
    }
    return new KernelWatch(mon, l2);
  }

  reset(peers: Peer[]): void {
    this.#peers = peers;
    this.#publicByMac = new Map(peers.flatMap((p) => p.mac ? [[p.mac, p.publicIP]] : []));
    this.#added.clear();
    this.#deleted.clear();
    this.mon.takeLines();
  }

  /** Files new monitor lines as `route <subnet>`, `fdb <mac>` and `neigh <mac>` facts, added or deleted. */
  #drain(): void {
    for (const line of this.mon.takeLines()) {
      const ev = parseMonitorLine(line);
      if (!ev) continue;
      const del = ev.text.startsWith("Deleted ");
      const text = del ? ev.text.slice(8) : ev.text;
      const seen = del ? this.#deleted : this.#added;
      const route = /^(\d+\.\d+\.\d+\.\d+\/\d+) /.exec(text);
      if (route) seen.note(`route ${route[1]}`, ev.t);
      // Neighbour `<vtep ip> dev … lladdr <mac>`, FDB `<public ip> dev … lladdr <mac>`.
      const l2 = /^(\S+) dev \S+ lladdr (\S+)/.exec(text);
      const pub = l2 && this.#publicByMac.get(l2[2]);
      if (pub) seen.note(`${l2![1] === pub ? "fdb" : "neigh"} ${l2![2]}`, ev.t);
    }
  }

  /** When each fact making `p` programmed was seen: its route, for vxlan its FDB and neighbour entries. */
  #facts(p: Peer, seen: FirstSeen): (number | undefined)[] {
    const route = seen.get(`route ${p.subnet}`);
    if (!this.l2 || !p.mac) return [route];
    return [route, seen.get(`fdb ${p.mac}`), seen.get(`neigh ${p.mac}`)];
  }

  programmed(): Map<string, number> {
    this.#drain();
    const out = new Map<string, number>();
    for (const p of this.#peers) {
      const ts = this.#facts(p, this.#added);
      if (ts.every((t) => t !== undefined)) out.set(p.key, Math.max(...(ts as number[])));
    }
    return out;
  }

  removed(): boolean {
    this.#drain();
    return this.#peers.every((p) => this.#deleted.has(`route ${p.subnet}`));
  }

  close(): Promise<void> {
    return this.mon.kill();
  }
}

/** Parses a klog line `I1122 06:10:07.376000 4242 udp] msg k=v…` into time (UTC, this year) and text. */
export function parseKlogLine(
  line: string,
  year = new Date().getUTCFullYear(),
): { t: number; text: string } | null {
  const m = /^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) \d+ [^\]]*\] (.*)$/.exec(line);
  if (!m) return null;
  const [mo, d, h, mi, s, us] = m.slice(1, 7).map(Number);
  return { t: Date.UTC(year, mo - 1, d, h, mi, s) + us / 1000, text: m[7] };
}

/**
 * The daemon's log: a peer is programmed at its `<added> subnet=<subnet>` line and removed
 * at its `<removed> subnet=<subnet>` line (udp: `subnet added` / `subnet removed`, logged
 * once the peer-table entry is written or deleted).
 */
export class LogWatch implements ProgramWatch {
  readonly method: string;
  #peers: Peer[] = [];
  #offset = 0;
  #added = new FirstSeen();
  #deleted = new FirstSeen();

  constructor(
    private readonly log: () => string,
    private readonly added = "subnet added",
    private readonly removedMsg = "subnet removed",
  ) {
    this.method = `daemon log "${added}" lines (ms)`;
  }

  reset(peers: Peer[]): void {
    this.#peers = peers;
    this.#offset = this.log().length;
    this.#added.clear();
    this.#deleted.clear();
  }

  #drain(): void {
    const text = this.log();
    const end = text.lastIndexOf("\n") + 1; // only whole lines
    for (const line of text.slice(this.#offset, end).split("\n")) {
      const ev = parseKlogLine(line);
      const m = ev && /^(.*?) subnet=(\S+)/.exec(ev.text);
      if (m?.[1] === this.added) this.#added.note(m[2], ev!.t);
      if (m?.[1] === this.removedMsg) this.#deleted.note(m[2], ev!.t);
    }
    this.#offset = Math.max(this.#offset, end);
  }

  programmed(): Map<string, number> {
    this.#drain();
    const out = new Map<string, number>();
    for (const p of this.#peers) {
      const t = this.#added.get(p.subnet);
      if (t !== undefined) out.set(p.key, t);
    }
    return out;
  }

  removed(): boolean {
    this.#drain();
    return this.#peers.every((p) => this.#deleted.has(p.subnet));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
