/**
 * Removes what test runs leave behind: a run's namespaces (with every process and link in
 * them), the cgroups its Docker daemons put containers in (with their processes), its temp
 * dirs and its marker. As a script (`deno run -A tests/helpers/cleanup.ts`) it removes the
 * leftovers of every run whose owner process is gone; `--all` removes every run's
 * leftovers, live or not.
 * @module
 */

import { deleteNetnsSync, listNetns } from "./netns.ts";
import { markedPrefixes, ownerAlive, PREFIX_RE, readMarker, removeMarker } from "./owner.ts";

/** Blocks the thread for `ms` (exit handlers cannot await). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Mount points of the cgroup hierarchies: each v1 controller and the v2 tree. */
function cgroupRoots(): string[] {
  try {
    return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").flatMap((line) => {
      const [mine, fs] = line.split(" - ");
      return fs?.startsWith("cgroup") ? [mine.split(" ")[4]] : [];
    });
  } catch {
    return [];
  }
}

/** Names of the top-level dirs under every cgroup hierarchy (each listed once). */
function topCgroupNames(): string[] {
  const names = new Set<string>();
  for (const root of cgroupRoots()) {
    try {
      for (const e of Deno.readDirSync(root)) if (e.isDirectory) names.add(e.name);
    } catch { /* unreadable hierarchy */ }
  }
  return [...names];
}

/** Every cgroup dir under `dir`, children before their parent. */
function cgroupTree(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) out.push(...cgroupTree(`${dir}/${e.name}`));
    }
  } catch { /* gone */ }
  out.push(dir);
  return out;
}

/**
 * Kills the processes in the run's top-level cgroups (`<prefix>-…`, what a test dockerd
 * gets as `--cgroup-parent`, so its containers live there) and removes those cgroups. A
 * container's processes sit in a network namespace of their own and outlive a killed
 * containerd shim, so the namespaces alone would not find them.
 */
export function removeCgroupsSync(prefix: string): void {
  const dirs = cgroupRoots().flatMap((root) =>
    topCgroupNames().filter((n) => n.startsWith(`${prefix}-`)).map((n) => `${root}/${n}`)
  ).flatMap(cgroupTree);
  for (let attempt = 0; attempt < 40; attempt++) {
    let left = 0;
    for (const dir of dirs) {
      try {
        for (const pid of Deno.readTextFileSync(`${dir}/cgroup.procs`).split("\n")) {
          if (pid !== "") Deno.kill(Number(pid), "SIGKILL");
        }
      } catch { /* gone, or the process exited meanwhile */ }
      try {
        Deno.removeSync(dir); // rmdir: a cgroup dir is removed empty of tasks
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) left++;
      }
    }
    if (left === 0) return;
    sleepSync(50); // killed processes leave their cgroup once they have exited
  }
}

/**
 * Removes everything of run `prefix`: kills the processes in its namespaces and cgroups,
 * deletes the namespaces, cgroups, its temp dirs and its marker. Synchronous so exit
 * handlers can call it.
 */
export function removeRunSync(prefix: string): void {
  for (const ns of listNetns()) {
    if (ns.startsWith(`${prefix}-`)) deleteNetnsSync(ns);
  }
  removeCgroupsSync(prefix);
  for (const dir of readMarker(prefix)?.dirs ?? []) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  }
  removeMarker(prefix);
}

/** Prefixes of all runs that left namespaces, cgroups or markers behind. */
export function knownRuns(): string[] {
  const fromNames = [...listNetns(), ...topCgroupNames()].map((n) => PREFIX_RE.exec(n)?.[1])
    .filter((p) => p !== undefined);
  return [...new Set([...fromNames, ...markedPrefixes()])];
}

/** Removes the leftovers of every run whose owner is gone (or of all runs); returns their prefixes. */
export function cleanupStale(opts: { all?: boolean } = {}): string[] {
  const stale = knownRuns().filter((p) => opts.all || !ownerAlive(p));
  stale.forEach(removeRunSync);
  return stale;
}

if (import.meta.main) {
  const removed = cleanupStale({ all: Deno.args.includes("--all") });
  console.log(removed.length ? `removed runs: ${removed.join(" ")}` : "nothing to clean up");
}
