/**
 * Where a daemon's resident memory is, from `/proc/<pid>/smaps`: pages of its own executable
 * (the `deno` binary or the compiled flanneld: code, read-only data, data), other files
 * (libc, …), glibc's main heap (`[heap]`), and anonymous memory (V8 heaps of every isolate,
 * glibc's per-thread arenas, thread stacks, WebAssembly memories, Rust allocations), the
 * last split into chunks of 64 MiB-aligned glibc thread arenas and the rest.
 * @module
 */

/** Resident KiB by category. */
export interface MemoryBreakdown {
  /** VmRSS and VmHWM. */
  rssKiB: number;
  hwmKiB: number;
  exeCodeKiB: number;
  exeDataKiB: number;
  otherFilesKiB: number;
  mainHeapKiB: number;
  /** glibc arenas of other threads: anonymous mappings inside 64 MiB-aligned heaps. */
  threadArenasKiB: number;
  /** Every other anonymous mapping: V8 heaps, stacks, WebAssembly memories, Rust allocations. */
  otherAnonKiB: number;
}

/** glibc's HEAP_MAX_SIZE on 64-bit: thread arenas are mapped at multiples of it. */
const ARENA_ALIGN = 64 * 1024 * 1024;

/** Parses smaps text of a process whose executable is `exe`. */
export function parseSmaps(text: string, exe: string): Omit<MemoryBreakdown, "rssKiB" | "hwmKiB"> {
  const out = {
    exeCodeKiB: 0,
    exeDataKiB: 0,
    otherFilesKiB: 0,
    mainHeapKiB: 0,
    threadArenasKiB: 0,
    otherAnonKiB: 0,
  };
  let key: keyof typeof out = "otherAnonKiB";
  // The arena a mapping belongs to: glibc maps a 64 MiB-aligned region and grows into it.
  let arenaStart = -1;
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) {
      const start = parseInt(m[1], 16);
      const path = m[4];
      if (path === exe) key = m[3].includes("x") ? "exeCodeKiB" : "exeDataKiB";
      else if (path === "[heap]") key = "mainHeapKiB";
      else if (path.startsWith("/")) key = "otherFilesKiB";
      else if (path === "") {
        if (start % ARENA_ALIGN === 0 && m[3] === "rw-p") arenaStart = start;
        const inArena = arenaStart >= 0 && start - arenaStart < ARENA_ALIGN;
        key = inArena ? "threadArenasKiB" : "otherAnonKiB";
      } else key = "otherAnonKiB";
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r) out[key] += Number(r[1]);
  }
  return out;
}

/** The breakdown of process `pid`. */
export function memoryBreakdown(pid: number): MemoryBreakdown {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return {
    rssKiB: kib("VmRSS"),
    hwmKiB: kib("VmHWM"),
    ...parseSmaps(
      Deno.readTextFileSync(`/proc/${pid}/smaps`),
      Deno.readLinkSync(`/proc/${pid}/exe`),
    ),
  };
}

/** One line: `RSS 70.1 MiB = code 20.3 + data 14.1 + files 3.0 + heap 1.2 + arenas 4.0 + anon 27.5`. */
export function formatBreakdown(b: MemoryBreakdown): string {
  const f = (k: number) => (k / 1024).toFixed(1);
  return `RSS ${f(b.rssKiB)} MiB (peak ${f(b.hwmKiB)}) = exe code ${f(b.exeCodeKiB)} + exe data ${
    f(b.exeDataKiB)
  } + files ${f(b.otherFilesKiB)} + [heap] ${f(b.mainHeapKiB)} + thread arenas ${
    f(b.threadArenasKiB)
  } + other anon ${f(b.otherAnonKiB)}`;
}
