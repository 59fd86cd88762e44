/**
 * A real etcd server for tests: Debian's `etcd` binary, started on free loopback ports (or
 * inside a network namespace) with its data in a temp dir, stopped, killed and restarted
 * on demand with the same data, so tests can take etcd away and bring it back.
 * @module
 */

import { GiveUp, until } from "./wait.ts";

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Options for {@link EtcdServer.start}. */
export interface EtcdOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** Extra etcd flags. */
  extraArgs?: string[];
  /** Client port; default a free one. */
  clientPort?: number;
  /** Peer port; default a free one. */
  peerPort?: number;
  /** Member name and initial cluster for multi-member clusters. */
  name?: string;
  initialCluster?: string;
  /** URL scheme for client URLs ("https" with TLS flags in extraArgs). */
  scheme?: "http" | "https";
  /** Extra etcdctl flags for the health probe and {@link EtcdServer.ctl} (client cert, --user). */
  ctlArgs?: string[];
}

/** A running (or stoppable/restartable) etcd process. */
export class EtcdServer {
  #proc: Deno.ChildProcess | null = null;
  #logFile: Deno.FsFile | null = null;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly host: string;

  private constructor(readonly dir: string, private readonly opts: EtcdOptions) {
    this.host = opts.host ?? "127.0.0.1";
    this.clientPort = opts.clientPort ?? freePort();
    this.peerPort = opts.peerPort ?? freePort();
    this.dataDir = `${dir}/data`;
  }

  /** Client endpoint URL, e.g. `http://127.0.0.1:40123`. */
  get endpoint(): string {
    return `${this.opts.scheme ?? "http"}://${this.host}:${this.clientPort}`;
  }

  /** Peer URL of this member. */
  get peerURL(): string {
    return `http://${this.host}:${this.peerPort}`;
  }

  /** Creates a temp dir and starts etcd; resolves when it answers. */
  static async start(opts: EtcdOptions = {}): Promise<EtcdServer> {
    const dir = await Deno.makeTempDir({ prefix: "flannel-etcd-" });
    const s = new EtcdServer(dir, opts);
    await s.resume();
    return s;
  }

  /** Starts the process again on the same ports and data dir. */
  async resume(): Promise<void> {
    if (this.#proc) return;
    const name = this.opts.name ?? "default";
    const args = [
      "--name",
      name,
      "--data-dir",
      this.dataDir,
      "--listen-client-urls",
      this.endpoint,
      "--advertise-client-urls",
      this.endpoint,
      "--listen-peer-urls",
      this.peerURL,
      "--initial-advertise-peer-urls",
      this.peerURL,
      "--initial-cluster",
      this.opts.initialCluster ?? `${name}=${this.peerURL}`,
      "--logger",
      "zap",
      "--log-outputs",
      "stderr",
      ...(this.opts.extraArgs ?? []),
    ];
    const [cmd, full] = this.opts.netns
      ? ["ip", ["netns", "exec", this.opts.netns, "etcd", ...args]]
      : ["etcd", args];
    this.#logFile = await Deno.open(`${this.dir}/etcd.log`, {
      append: true,
      create: true,
      write: true,
    });
    this.#proc = new Deno.Command(cmd, {
      args: full,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { ETCD_UNSUPPORTED_ARCH: Deno.build.arch === "aarch64" ? "arm64" : "" },
    }).spawn();
    const log = this.#logFile;
    // Drain output into a log file so a full pipe never blocks etcd.
    this.#proc.stdout.pipeTo(log.writable, { preventClose: true }).catch(() => {});
    this.#proc.stderr.pipeTo(log.writable, { preventClose: true }).catch(() => {});
    if (!this.opts.initialCluster) await this.waitHealthy();
  }

  /** Waits until `/health` answers (single member) or the port accepts (cluster member). */
  async waitHealthy(timeoutMs = 15000): Promise<void> {
    const probe = () => {
      if (this.#proc === null) throw new GiveUp("etcd is not running");
      return this.#probe();
    };
    await until("etcd to become healthy", probe, timeoutMs, 100).catch((e) => {
      throw new Error(`${e.message}; log: ${this.dir}/etcd.log`);
    });
  }

  async #probe(): Promise<boolean> {
    if (this.opts.netns || this.opts.scheme === "https") {
      const r = await new Deno.Command("sh", {
        args: [
          "-c",
          `${this.opts.netns ? `ip netns exec ${this.opts.netns} ` : ""}` +
          `etcdctl --endpoints=${this.endpoint} ${
            this.opts.scheme === "https" ? "--insecure-skip-tls-verify" : ""
          } ` +
          `${(this.opts.ctlArgs ?? []).join(" ")} endpoint health`,
        ],
        stdout: "null",
        stderr: "null",
        env: { ETCDCTL_API: "3" },
      }).output();
      return r.success;
    }
    const res = await fetch(`${this.endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    const body = await res.text();
    return res.ok && body.includes("true");
  }

  /** Stops etcd with SIGTERM (graceful) and waits for exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#proc = null;
    try {
      p.kill(signal);
    } catch { /* already gone */ }
    await p.status;
    this.#logFile?.close();
    this.#logFile = null;
  }

  /** Kills etcd with SIGKILL. */
  kill(): Promise<void> {
    return this.stop("SIGKILL");
  }

  /** Whether the process is running. */
  get running(): boolean {
    return this.#proc !== null;
  }

  /** Runs etcdctl against this server; returns stdout. Throws with stderr on failure. */
  async ctl(...args: string[]): Promise<string> {
    const cmd = this.opts.netns ? "ip" : "etcdctl";
    const ctlArgs = this.opts.ctlArgs ?? [];
    const full = this.opts.netns
      ? [
        "netns",
        "exec",
        this.opts.netns,
        "etcdctl",
        `--endpoints=${this.endpoint}`,
        ...ctlArgs,
        ...args,
      ]
      : [`--endpoints=${this.endpoint}`, ...ctlArgs, ...args];
    const r = await new Deno.Command(cmd, {
      args: full,
      env: { ETCDCTL_API: "3" },
      signal: AbortSignal.timeout(30_000), // never hang a test on etcd
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    if (!r.success) {
      throw new Error(`etcdctl ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
    }
    return out;
  }

  /** Stops etcd and removes its temp dir. */
  async destroy(): Promise<void> {
    await this.stop("SIGKILL");
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
