/**
 * Thin wrappers over iproute2 for building test topologies in network namespaces: run a
 * command (in a namespace), create and delete namespaces, veth pairs, bridges, addresses.
 * Only tests use these; the daemon itself never shells out to `ip`.
 * @module
 */

/** Whether the tests run as root: namespace and kernel tests are skipped (ignored) otherwise. */
export const isRoot = Deno.uid() === 0;

/**
 * Options of a test that needs root and leaves a cluster's processes and sockets to its own
 * teardown (Deno's op and resource sanitizers would count them).
 */
export const ROOT_TEST = { ignore: !isRoot, sanitizeOps: false, sanitizeResources: false } as const;

/** Outcome of a finished command. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@link run}. */
export interface RunOptions {
  /** Kill the command after this long (default 30 s) so no test hangs on it. */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

const decoder = new TextDecoder();

function toResult(o: Deno.CommandOutput): ExecResult {
  return { code: o.code, stdout: decoder.decode(o.stdout), stderr: decoder.decode(o.stderr) };
}

/** Runs a command to completion; never throws for a non-zero exit (see {@link must}). */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<ExecResult> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    env: opts.env,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  }).output();
  return toResult(out);
}

/**
 * Synchronous {@link run}, for teardown from `unload` and signal handlers, where no
 * promise gets to settle.
 */
export function runSync(cmd: string, args: string[]): ExecResult {
  return toResult(new Deno.Command(cmd, { args, stdin: "null" }).outputSync());
}

/** Throws with the command line and its stderr when `r` failed; returns stdout. */
export function must(r: ExecResult, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs `cmd args…` inside namespace `ns`. */
export function nsExec(
  ns: string,
  cmd: string,
  args: string[],
  opts?: RunOptions,
): Promise<ExecResult> {
  return run("ip", ["netns", "exec", ns, cmd, ...args], opts);
}

/** Runs `ip -n <ns> args…` and throws on failure. */
export async function ip(ns: string, ...args: string[]): Promise<string> {
  return must(await run("ip", ["-n", ns, ...args]), `ip -n ${ns} ${args.join(" ")}`);
}

/** Creates namespace `name` with its loopback up. */
export async function addNetns(name: string): Promise<void> {
  must(await run("ip", ["netns", "add", name]), `ip netns add ${name}`);
  await ip(name, "link", "set", "lo", "up");
}

/** Names of all named network namespaces (`ip netns list`). */
export function listNetns(): string[] {
  return runSync("ip", ["netns", "list"]).stdout.split("\n").map((l) => l.split(" ")[0])
    .filter((n) => n !== "");
}

/**
 * Kills every process still inside `name` (a namespace outlives its name while a process
 * holds it) and deletes it; its links go with it. Synchronous for use at exit.
 */
export function deleteNetnsSync(name: string): void {
  const pids = runSync("ip", ["netns", "pids", name]).stdout.split("\n").filter((p) => p !== "");
  for (const pid of pids) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch { /* already gone */ }
  }
  runSync("ip", ["netns", "delete", name]);
}

/** Creates a veth pair with end `nameA` in `nsA` and `nameB` in `nsB`; never in the root ns. */
export async function addVeth(
  nsA: string,
  nameA: string,
  nsB: string,
  nameB: string,
): Promise<void> {
  await ip(nsA, "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", nsB);
}

/** Creates bridge `name` in `ns` (no-op when it exists) and brings it up. */
export async function addBridge(ns: string, name: string): Promise<void> {
  const exists = await run("ip", ["-n", ns, "link", "show", name]);
  if (exists.code !== 0) await ip(ns, "link", "add", name, "type", "bridge");
  await ip(ns, "link", "set", name, "up");
}

/** Replaces every IPv4 address of `dev` with `cidr` (e.g. `10.5.52.1/24`). */
export async function setAddr(ns: string, dev: string, cidr: string): Promise<void> {
  await ip(ns, "-4", "addr", "flush", "dev", dev);
  await ip(ns, "addr", "add", cidr, "dev", dev);
}

/**
 * Replaces every global IPv6 address of `dev` with `cidr` (e.g. `fd42:0:0:5::1/64`),
 * without duplicate address detection, so the address is usable at once.
 */
export async function setAddr6(ns: string, dev: string, cidr: string): Promise<void> {
  await ip(ns, "-6", "addr", "flush", "dev", dev, "scope", "global");
  await ip(ns, "addr", "add", cidr, "dev", dev, "nodad");
}

/** Brings `dev` up, optionally enslaving it to `master` and setting its MTU. */
export async function linkUp(
  ns: string,
  dev: string,
  opts: { master?: string; mtu?: number } = {},
): Promise<void> {
  const extra = [
    ...(opts.master ? ["master", opts.master] : []),
    ...(opts.mtu ? ["mtu", String(opts.mtu)] : []),
  ];
  await ip(ns, "link", "set", dev, ...extra, "up");
}

/** Sets the default route of `ns` via `gw`. */
export async function defaultRoute(ns: string, gw: string): Promise<void> {
  await ip(ns, "route", "replace", "default", "via", gw);
}

/** Sets the IPv6 default route of `ns` via `gw`. */
export async function defaultRoute6(ns: string, gw: string): Promise<void> {
  await ip(ns, "-6", "route", "replace", "default", "via", gw);
}

/**
 * Writes an IPv4 sysctl such as `ip_forward` inside `ns`: /proc/sys/net shows the
 * namespace of the process reading it, and the `sysctl` binary may not be installed.
 */
export async function setSysctl(ns: string, key: string, value: string): Promise<void> {
  await writeSysctl(ns, `ipv4/${key}`, value);
}

/** Writes an IPv6 sysctl such as `conf.all.forwarding` inside `ns`. */
export async function setSysctl6(ns: string, key: string, value: string): Promise<void> {
  await writeSysctl(ns, `ipv6/${key}`, value);
}

async function writeSysctl(ns: string, key: string, value: string): Promise<void> {
  const path = `/proc/sys/net/${key.replaceAll(".", "/")}`;
  must(await nsExec(ns, "sh", ["-c", `echo ${value} > ${path}`]), `sysctl ${key} in ${ns}`);
}
