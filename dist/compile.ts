/**
 * `deno task compile [--target T]… [--version V]`: standalone flanneld binaries
 * `dist/flanneld-<target>` built with `deno compile`, with exactly the daemon's permissions,
 * the npm dependencies, the udp Worker modules and the lazily imported modules embedded.
 *
 * The sources are staged in a temporary directory so that the version can be stamped into
 * `lib/core/version.ts` (from `--version`, `FLANNELD_BUILD_VERSION` or an exact git tag) without
 * touching the checkout. `deno compile` needs the `denort` runtime of each target: from
 * `DENORT_BIN` or downloaded from dl.deno.land. Without one this exits with
 * {@link EXIT_NO_RUNTIME} and one clear line. `--print-permissions` prints the daemon's
 * `deno run` flags: runtime flags and permissions, and `--print-lazy-modules` the modules
 * besides main.ts whose dependencies must be cached (the `--from-source` launcher of
 * install.sh uses both).
 * @module
 */

import { parseArgs } from "node:util";

/** Targets built when no `--target` is given. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;

/**
 * What the daemon needs: libc through FFI (TUN, netlink, sockets, sd_notify), subnet.env,
 * /proc/sys and /dev/net/tun, etcd certificates, `FLANNELD_*` flags, etcd and the health
  "--allow-run=iptables,iptables-save,iptables-restore,ip6tables,ip6tables-save,ip6tables-restore,nft,sh",
  "--allow-sys=osRelease,uid,homedir",
 */
export const DAEMON_PERMISSIONS: readonly string[] = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-run=iptables,iptables-save,iptables-restore,ip6tables,ip6tables-save,ip6tables-restore,nft,sh",
  "--allow-sys=osRelease,uid,homedir",
  "--no-prompt",
];

/**
 * Runtime flags of the daemon, whose resident memory is mostly the runtime itself (with
 * 1,000 vxlan peers, together with the code changes: RSS ~100–116 → ~75–78 MiB).
 * Baked into the binary here, and used by the `deno run` launcher of install.sh and by the
 * tests' daemons (tests/helpers/daemon.ts), so that all run the daemon alike:
 * - `--max-semi-space-size=1`: a 1 MiB young generation instead of up to 16 MiB (×2): a burst
 *   of lease events grew the heap by ~20 MiB of short-lived garbage; scavenges stay < 1 ms.
 * - `--optimize-for-size`: slower old-generation growth and smaller code (a few MiB).
 * - `--no-concurrent-recompilation`: optimising compiles on the thread that needs them; on
 *   background threads their memory stayed in glibc per-thread arenas (1–3 MiB after bursts).
 * - `--no-code-cache`: the V8 code cache is an SQLite file mapped and cached in memory
 *   (~4 MiB resident) that saves only start-up time.
 * Cost: none measurable on the control plane (1,000 peers programmed in < 1 s one by one) nor
 * on the udp data path (tests/udp_datapath_test.ts: 12.6–12.8 Gbit/s with or without them).
 */
export const DAEMON_RUNTIME_FLAGS: readonly string[] = [
  "--v8-flags=--max-semi-space-size=1,--optimize-for-size,--no-concurrent-recompilation",
  "--no-code-cache",
];

/**
 * Modules the daemon imports by computed URL, so that Deno does not resolve them (and their
 * npm packages) at start: the aws-vpc backend's AWS SDK. `deno compile` cannot see them, so
 * they are included by name, and install.sh caches their dependencies for its launcher.
 */
export const LAZY_MODULES: readonly string[] = ["lib/backend/awsvpc/ec2.ts"];

/** Exit status when no denort runtime can be had for a target. */
export const EXIT_NO_RUNTIME = 3;

/** ELF `e_machine` of each target's architecture. */
const ELF_MACHINE: Record<string, number> = { x86_64: 62, aarch64: 183 };

const ROOT = new URL("../", import.meta.url).pathname;
/** What the binary is built from, relative to the repository root. */
const SOURCES = ["main.ts", "deno.json", "deno.lock", "lib", "ffi"];

/** A failure with its exit status; thrown so that the staging directory is removed. */
class Failure extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

function fail(msg: string, code = 1): never {
  throw new Failure(msg, code);
}

function noRuntime(target: string, detail = ""): never {
  fail(
    `cannot obtain the denort runtime for ${target}${detail}: set DENORT_BIN=/path/to/denort or run where dl.deno.land is reachable`,
    EXIT_NO_RUNTIME,
  );
}

function copyTree(from: string, to: string): void {
  if (Deno.statSync(from).isDirectory) {
    Deno.mkdirSync(to, { recursive: true });
    for (const e of Deno.readDirSync(from)) copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
  } else {
    Deno.copyFileSync(from, to);
  }
}

/** Module paths (relative) of every Worker main module: `lib/**\/*_worker.ts`. */
function workerModules(root: string, dir = "lib"): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${root}/${dir}`)) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...workerModules(root, rel));
    else if (e.name.endsWith("_worker.ts")) out.push(rel);
  }
  return out.sort();
}

/** The version to stamp, or null to keep lib/core/version.ts as it is. */
function buildVersion(flag: string | undefined): string | null {
  const v = flag ?? Deno.env.get("FLANNELD_BUILD_VERSION");
  if (v) return v.replace(/^v/, "");
  try {
    const r = new Deno.Command("git", {
      args: ["describe", "--tags", "--exact-match"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const tag = new TextDecoder().decode(r.stdout).trim();
    return r.success && tag ? tag.replace(/^v/, "") : null;
  } catch {
    return null; // no git
  }
}

const VERSION_RE = /export const VERSION = "([^"]*)";/;

/** Stamps `version` (if given) into the staged lib/core/version.ts; returns the version built. */
function stampVersion(stage: string, version: string | null): string {
  const path = `${stage}/lib/core/version.ts`;
  const src = Deno.readTextFileSync(path);
  const m = VERSION_RE.exec(src);
  if (!m) fail(`no VERSION constant in lib/core/version.ts`);
  if (version === null) return m[1];
  Deno.writeTextFileSync(
    path,
    src.replace(VERSION_RE, `export const VERSION = ${JSON.stringify(version)};`),
  );
  return version;
}

/** Runs a binary built for this machine's architecture: `--version` must print `version`. */
function smokeTest(binary: string, version: string): void {
  let out = "";
  try {
    const r = new Deno.Command(binary, { args: ["--version"], stdout: "null", stderr: "piped" })
      .outputSync();
    // The last line: Deno may first say that an --allow-run tool is not installed here.
    out = new TextDecoder().decode(r.stderr).trim().split("\n").at(-1) ?? "";
    if (r.success && out === version) return;
  } catch (e) {
    out = (e as Error).message;
  }
  Deno.removeSync(binary);
  fail(`${binary} does not run (--version gave ${JSON.stringify(out.slice(0, 200))}); removed it`);
}

/** Refuses a DENORT_BIN that is not a Linux runtime for `target`'s architecture. */
function checkDenortBin(path: string, target: string): void {
  let head: Uint8Array;
  try {
    head = Deno.readFileSync(path).subarray(0, 20);
  } catch (e) {
    noRuntime(target, ` (DENORT_BIN=${path}: ${(e as Error).message})`);
  }
  const elf = head.length === 20 && [0x7f, 0x45, 0x4c, 0x46].every((b, i) => head[i] === b);
  const machine = elf ? head[18] | (head[19] << 8) : -1;
  if (machine !== ELF_MACHINE[target.split("-")[0]]) {
    const arch = Object.keys(ELF_MACHINE).find((a) => ELF_MACHINE[a] === machine);
    noRuntime(
      target,
      ` (DENORT_BIN=${path} is ${arch ? `for ${arch}` : "not a Linux x86_64/aarch64 executable"})`,
    );
  }
}

async function compile(stage: string, target: string, includes: string[]): Promise<string> {
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) checkDenortBin(denort, target);
  const output = `${ROOT}dist/flanneld-${target}`;
  const args = [
    "compile",
    "--target",
    target,
    "--output",
    output,
    "--config",
    `${stage}/deno.json`,
    ...includes.flatMap((m) => ["--include", `${stage}/${m}`]),
    ...DAEMON_RUNTIME_FLAGS,
    ...DAEMON_PERMISSIONS,
    `${stage}/main.ts`,
  ];
  console.error(`compile: ${target} → dist/flanneld-${target}`);
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: stage,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(r.stderr);
  if (!r.success) {
    // Deno reports a failed runtime download or a bad DENORT_BIN while "setting up the base binary".
    if (/base binary|denort|dl\.deno\.land/i.test(err)) noRuntime(target);
    Deno.stderr.writeSync(r.stderr);
    fail(`deno compile failed for ${target} (exit ${r.code})`);
  }
  return output;
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      args: Deno.args,
      options: {
        target: { type: "string", multiple: true },
        version: { type: "string" },
        "print-permissions": { type: "boolean" },
        "print-lazy-modules": { type: "boolean" },
      },
    }).values;
  } catch (e) {
    const usage =
      "deno task compile [--target T]… [--version V] [--print-permissions] [--print-lazy-modules]";
    fail(`${(e as Error).message} (usage: ${usage})`, 2);
  }
  if (args["print-permissions"]) {
    console.log([...DAEMON_RUNTIME_FLAGS, ...DAEMON_PERMISSIONS].join(" "));
    return;
  }
  if (args["print-lazy-modules"]) {
    console.log(LAZY_MODULES.join(" "));
    return;
  }
  const targets = args.target ?? [...TARGETS];
  const unknown = targets.find((t) => !(TARGETS as readonly string[]).includes(t));
  if (unknown) fail(`unsupported target ${unknown} (supported: ${TARGETS.join(", ")})`, 2);

  const stage = Deno.makeTempDirSync({ prefix: "flanneld-compile-" });
  try {
    for (const s of SOURCES) copyTree(`${ROOT}${s}`, `${stage}/${s}`);
    const version = stampVersion(stage, buildVersion(args.version));
    const includes = [...workerModules(stage), ...LAZY_MODULES];
    Deno.mkdirSync(`${ROOT}dist`, { recursive: true });
    for (const t of targets) {
      const out = await compile(stage, t, includes);
      if (t.startsWith(`${Deno.build.arch}-`)) smokeTest(out, version);
      console.error(`compile: built ${out} (version ${version})`);
    }
  } finally {
    Deno.removeSync(stage, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    console.error(`compile: ${e.message}`);
    Deno.exit(e.code);
  }
}
