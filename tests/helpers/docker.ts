/**
 * Docker on the test cluster's hosts, the way flannel's users run it: flanneld writes
 * subnet.env, `dist/mk-docker-opts.sh` turns it into `--bip`, `--ip-masq`, `--mtu`, and a
 * dockerd started with those options puts containers on docker0 inside the host's subnet.
 *
 * One dockerd 20.10 (Debian's docker.io) per host namespace, isolated from the machine and
 * from the other hosts:
 * - started with `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the
 *   cgroup mounts dockerd needs: "Devices cgroup isn't mounted"), so docker0 and every
 *   iptables rule it makes live in the host's namespace, never in the root one;
 * - in a private mount namespace with tmpfs over /run/docker and /run/containerd, so a
 *   system containerd is not picked up, its shims' sockets stay private, and every mount
 *   it makes (container netns, shm) vanishes with its processes;
 * - its own data root, exec root, pidfile, socket, config file and key file in the host's
 *   temp dir, `vfs` storage, and `--cgroup-parent=/<host namespace>` so that
 *   `cleanup.ts` finds its containers' processes by the run prefix even after a crash.
 *
 * No registry is reached: the image is built here from the static `/bin/busybox`
 * (Debian's busybox-static) and its applet links, `docker import`ed on each host. Each
 * container's network namespace is attached as `<prefix>-<host>c<j>`, so the usual
 * namespace helpers (ping, tcpdump, transfers) reach into it and teardown kills it.
 * @module
 */

import { allSettled, Cluster, type ClusterOptions, type Container, type Host } from "./cluster.ts";
import { type ExecResult, must, nsExec, run } from "./netns.ts";
import { parsePing, type PingOptions, type PingPair, pingPairs, type PingResult } from "./ping.ts";
import { until } from "./wait.ts";

/** Name of the image every container runs. */
export const IMAGE = "flannel-test/busybox";

const MK_DOCKER_OPTS = new URL("../../dist/mk-docker-opts.sh", import.meta.url).pathname;

/** The CLI of Debian's docker.io when there (the one matching its dockerd), else PATH's. */
const DOCKER_CLI = (() => {
  try {
    Deno.statSync("/usr/bin/docker");
    return "/usr/bin/docker";
  } catch {
    return "docker";
  }
})();

/** Whether `name` is an executable file on PATH. */
function onPath(name: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return ((Deno.statSync(`${dir}/${name}`).mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

/** Whether dockerd is installed (tests/deps.sh installs Debian's docker.io). */
export const DOCKER_PRESENT: boolean = onPath("dockerd");

/** The one line a test prints when it skips for want of Docker. */
export const DOCKER_SKIP =
  "skipping Docker tests: dockerd not found (tests/deps.sh installs Debian's docker.io)";

/** Whether the ELF file `bytes` asks for a program interpreter (is dynamically linked). */
export function elfHasInterpreter(bytes: Uint8Array): boolean {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const elf = bytes.length >= 64 && v.getUint32(0) === 0x7f454c46;
  if (!elf || bytes[4] !== 2) throw new Error("not a 64-bit ELF file");
  const le = bytes[5] === 1;
  const phoff = Number(v.getBigUint64(0x20, le));
  const phentsize = v.getUint16(0x36, le);
  const phnum = v.getUint16(0x38, le);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > bytes.length) break;
    if (v.getUint32(off, le) === 3) return true; // PT_INTERP
  }
  return false;
}

/**
 * Builds the containers' image as a tar in `dir`: /bin/busybox (statically linked, as
 * Debian's busybox-static installs it) and a link per applet. Returns the tar's path.
 */
export async function buildImageTar(dir: string, busybox = "/bin/busybox"): Promise<string> {
  const bytes = await Deno.readFile(busybox).catch(() => {
    throw new Error(`${busybox} not found: install Debian's busybox-static (tests/deps.sh)`);
  });
  if (elfHasInterpreter(bytes)) {
    throw new Error(
      `${busybox} is dynamically linked and cannot run alone in a container: install Debian's busybox-static`,
    );
  }
  const root = `${dir}/image-rootfs`;
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.mkdir(`${root}/tmp`);
  await Deno.writeFile(`${root}/bin/busybox`, bytes, { mode: 0o755 });
  const applets = must(await run(busybox, ["--list"]), `${busybox} --list`).split("\n");
  for (const a of applets) {
    if (a !== "" && a !== "busybox") await Deno.symlink("busybox", `${root}/bin/${a}`);
  }
  const tar = `${dir}/image.tar`;
  must(await run("tar", ["-C", root, "-cf", tar, "."]), "tar of the image");
  await Deno.remove(root, { recursive: true });
  return tar;
}

/** A container's eth0 as the container sees it. */
export interface ContainerNic {
  /** Address with prefix length, e.g. `10.5.52.2/24`. */
  cidr: string;
  mtu: number;
}

/** The dockerd of one host and the containers it runs. */
export class DockerHost {
  readonly dir: string;
  readonly socket: string;
  /** What mk-docker-opts.sh writes. */
  readonly optsFile: string;
  readonly logFile: string;
  readonly containers: Container[] = [];
  #proc: Deno.ChildProcess | null = null;

  constructor(readonly host: Host, private readonly prefix: string) {
    this.dir = `${host.dir}/docker`;
    this.socket = `${this.dir}/docker.sock`;
    this.optsFile = `${this.dir}/docker_opts.env`;
    this.logFile = `${this.dir}/dockerd.log`;
  }

  /**
   * Runs `mk-docker-opts.sh -f <subnet.env> -d <docker_opts.env>` in the host's namespace
   * (its routing-table check must see the host's routes); returns what it wrote.
   */
  async writeOptions(): Promise<string> {
    await Deno.mkdir(this.dir, { recursive: true });
    must(
      await nsExec(this.host.ns, "sh", [
        MK_DOCKER_OPTS,
        "-f",
        this.host.daemon.subnetFile,
        "-d",
        this.optsFile,
      ]),
      `mk-docker-opts.sh on ${this.host.name}`,
    );
    return await Deno.readTextFile(this.optsFile);
  }

  /** The options in `DOCKER_OPTS` of the options file, e.g. `["--bip=…", "--ip-masq=false", "--mtu=…"]`. */
  async options(): Promise<string[]> {
    const text = await Deno.readTextFile(this.optsFile);
    const m = /^DOCKER_OPTS="([^"]*)"$/m.exec(text);
    if (!m) throw new Error(`no DOCKER_OPTS in ${this.optsFile}:\n${text}`);
    return m[1].split(" ").filter((o) => o !== "");
  }

  /** dockerd's own flags besides DOCKER_OPTS: where its state lives, how it is isolated. */
  get isolationFlags(): string[] {
    return [
      `--data-root=${this.dir}/data`,
      `--exec-root=${this.dir}/run`,
      `--pidfile=${this.dir}/docker.pid`,
      `--host=unix://${this.socket}`,
      `--config-file=${this.dir}/daemon.json`,
      "--storage-driver=vfs",
      `--cgroup-parent=/${this.host.ns}`,
      "--exec-opt=native.cgroupdriver=cgroupfs",
    ];
  }

  /**
   * Starts dockerd with `$DOCKER_OPTS` sourced from the options file (as a unit file's
   * `EnvironmentFile` would) and waits until its API answers.
   */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.#proc) throw new Error(`dockerd on ${this.host.name} already running`);
    // The trust key would otherwise be written to /etc/docker/key.json.
    await Deno.writeTextFile(
      `${this.dir}/daemon.json`,
      JSON.stringify({ "deprecated-key-path": `${this.dir}/key.json` }),
    );
    const script = [
      "set -e",
      'for d in /run/docker /run/containerd; do mkdir -p "$d"; mount -t tmpfs -o mode=0711 flannel-test "$d"; done',
      'log=$1 opts=$2; shift 2; . "$opts"',
      'exec dockerd $DOCKER_OPTS "$@" >>"$log" 2>&1',
    ].join("\n");
    this.#proc = new Deno.Command("nsenter", {
      args: [
        `--net=/var/run/netns/${this.host.ns}`,
        "--",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        this.logFile,
        this.optsFile,
        ...this.isolationFlags,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    this.#proc.status.then(() => exited = true);
    await until(
      `dockerd on ${this.host.name} answering`,
      async () => {
        if (exited) throw new Error(`dockerd exited; log:\n${this.logTail()}`);
        return (await this.cli(["version", "--format", "{{.Server.Version}}"])).code === 0;
      },
      timeoutMs,
      100,
    ).catch((e) => {
      throw new Error(`${e instanceof Error ? e.message : e}\n${exited ? "" : this.logTail()}`);
    });
  }

  /** The last lines of dockerd's log. */
  logTail(lines = 30): string {
    try {
      return Deno.readTextFileSync(this.logFile).trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** Kills dockerd (its containerd, shims and containers go with the cluster's teardown). */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    try {
      p.kill("SIGKILL");
    } catch { /* exited */ }
    await p.status;
    this.#proc = null;
  }

  /** Runs the docker CLI against this host's dockerd. */
  cli(args: string[], timeoutMs = 60_000): Promise<ExecResult> {
    return run(DOCKER_CLI, ["--host", `unix://${this.socket}`, ...args], {
      timeoutMs,
      env: { DOCKER_CONFIG: `${this.dir}/cli` },
    });
  }

  /** Runs the docker CLI; returns stdout, throws with stderr when it fails. */
  async docker(...args: string[]): Promise<string> {
    return must(await this.cli(args), `docker ${args.join(" ")} on ${this.host.name}`);
  }

  /** `docker import`s the image tar. */
  async importImage(tar: string): Promise<void> {
    await this.docker("import", tar, IMAGE);
  }

  /**
   * `docker run -d` a container that sleeps, attaches its network namespace under the
   * run's prefix and returns it with the address Docker gave it.
   */
  async runContainer(name: string): Promise<Container> {
    await this.docker("run", "-d", "--name", name, "--hostname", name, IMAGE, "sleep", "86400");
    const [pid, ip] = (await this.docker(
      "inspect",
      "--format",
      "{{.State.Pid}} {{.NetworkSettings.IPAddress}}",
      name,
    )).trim().split(" ");
    const ns = `${this.prefix}-${name}`;
    must(await run("ip", ["netns", "attach", ns, pid]), `ip netns attach ${ns} ${pid}`);
    const c: Container = { name, host: this.host.name, ns, ip, ip6: null };
    this.containers.push(c);
    return c;
  }

  /** `docker exec` in container `c`; never throws for a non-zero exit. */
  exec(c: Container, ...cmd: string[]): Promise<ExecResult> {
    return this.cli(["exec", c.name, ...cmd]);
  }

  /** Pings `toIp` with the container's own BusyBox `ping` (`docker exec`). */
  async ping(from: Container, toIp: string, opts: PingOptions = {}): Promise<PingResult> {
    const count = opts.count ?? 3;
    const interval = opts.interval ?? 0.2;
    const deadline = Math.ceil(count * interval + (opts.timeout ?? 2));
    const r = await this.cli(
      [
        "exec",
        from.name,
        "ping",
        "-c",
        String(count),
        "-i",
        String(interval),
        "-w",
        String(deadline),
        toIp,
      ],
      (deadline + 10) * 1000,
    );
    const output = r.stdout + r.stderr;
    return { ...parsePing(output), output };
  }

  /** docker0's IPv4 address with prefix length in the host's namespace, null without one. */
  async docker0(): Promise<string | null> {
    const r = await run("ip", ["-n", this.host.ns, "-4", "-o", "addr", "show", "dev", "docker0"]);
    return /inet (\S+)/.exec(r.stdout)?.[1] ?? null;
  }

  /** The container's eth0 address and MTU, read inside the container. */
  async nic(c: Container): Promise<ContainerNic> {
    const r = await this.exec(
      c,
      "sh",
      "-c",
      "ip -o -4 addr show dev eth0; cat /sys/class/net/eth0/mtu",
    );
    const cidr = /inet (\S+)/.exec(r.stdout)?.[1];
    const mtu = Number(r.stdout.trim().split("\n").at(-1));
    if (r.code !== 0 || !cidr || !mtu) {
      throw new Error(`cannot read eth0 of ${c.name}: ${r.stdout}${r.stderr}`);
    }
    return { cidr, mtu };
  }
}

/** Options for {@link DockerCluster.create}: a cluster's, with Docker containers per host. */
export interface DockerClusterOptions extends Omit<ClusterOptions, "containersPerHost" | "cni0"> {
  /** Docker containers per host (default 1), named `h<i>c<j>`. */
  containersPerHost?: number;
}

/** A cluster whose hosts run Docker on flannel's subnets; always end with {@link destroy}. */
export class DockerCluster {
  private constructor(readonly cluster: Cluster, readonly docker: DockerHost[]) {}

  /**
   * Creates the cluster (no cni0: docker0 takes the subnet), then on every host at once:
   * mk-docker-opts.sh, dockerd, the image, the containers.
   */
  static async create(opts: DockerClusterOptions): Promise<DockerCluster> {
    const cluster = await Cluster.create({ ...opts, containersPerHost: 0, cni0: false });
    const d = new DockerCluster(
      cluster,
      cluster.hosts.map((h) => new DockerHost(h, cluster.prefix)),
    );
    try {
      const tar = await buildImageTar(cluster.dir);
      await allSettled(d.docker.map(async (dh) => {
        await dh.writeOptions();
        await dh.start();
        await dh.importImage(tar);
        for (let j = 0; j < (opts.containersPerHost ?? 1); j++) {
          await dh.runContainer(`${dh.host.name}c${j}`);
        }
      }));
      return d;
    } catch (e) {
      await d.destroy();
      throw e;
    }
  }

  /** The Docker side of a host (by host name or index). */
  on(ref: string | number): DockerHost {
    const h = this.cluster.host(ref);
    return this.docker.find((d) => d.host === h)!;
  }

  /** The DockerHost running container `c`. */
  hostOf(c: Container): DockerHost {
    return this.on(c.host);
  }

  /** Every container of every host. */
  containers(): Container[] {
    return this.docker.flatMap((d) => d.containers);
  }

  /** Pings every container from every other one with `docker exec <from> ping`. */
  pingAll(opts?: PingOptions): Promise<PingPair[]> {
    const byName = new Map(this.containers().map((c) => [c.name, c]));
    const eps = [...byName.values()].map((c) => ({ name: c.name, ns: c.ns, ip: c.ip! }));
    return pingPairs(eps, opts, 6, (from, ip, o) => {
      const c = byName.get(from.name)!;
      return this.hostOf(c).ping(c, ip, o);
    });
  }

  /** Kills every dockerd, then tears the cluster down (which removes everything else). */
  async destroy(): Promise<void> {
    await Promise.all(this.docker.map((d) => d.kill()));
    await this.cluster.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
