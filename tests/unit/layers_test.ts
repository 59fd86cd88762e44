// The layering rule of the source tree, checked on every import: a module imports only from
// its own layer or the ones below it, and no two folders import each other (directly or
// around a cycle). The layers, bottom up, are the README's Layout section.
import { dirname, join, relative, resolve } from "node:path";
import { assertEquals } from "../helpers/assert.ts";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "../..");

/** Layer of a source path (relative to the root), bottom = 0; undefined: not layered. */
const LAYERS: [prefix: string, rank: number][] = [
  ["lib/core/", 0],
  ["ffi/", 1],
  ["lib/values/", 2],
  ["lib/subnet/", 3],
  ["lib/backend/", 4],
  ["lib/iptables/", 4],
  ["lib/daemon/", 5],
  ["main.ts", 6],
];

function rankOf(path: string): number | undefined {
  return LAYERS.find(([p]) => path === p || path.startsWith(p))?.[1];
}

function sources(dir: string, out: string[] = []): string[] {
  for (const e of Deno.readDirSync(join(ROOT, dir))) {
    const p = join(dir, e.name);
    if (e.isDirectory) sources(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Relative imports of a file, as root-relative paths. */
function importsOf(path: string): string[] {
  const text = Deno.readTextFileSync(join(ROOT, path));
  const re = /(?:from|import)\s*\(?\s*["'](\.\.?\/[^"']+)["']|new URL\(\s*["'](\.\.?\/[^"']+)["']/g;
  return [...text.matchAll(re)].map((m) =>
    relative(ROOT, resolve(ROOT, dirname(path), m[1] ?? m[2]))
  );
}

const FILES = ["main.ts", ...sources("lib"), ...sources("ffi")];

Deno.test("layers: every lib/ and ffi/ module belongs to a layer", () => {
  assertEquals(FILES.filter((f) => rankOf(f) === undefined), []);
});

Deno.test("layers: imports point down (or within a layer), never up", () => {
  const up: string[] = [];
  for (const f of FILES) {
    for (const t of importsOf(f)) {
      if (rankOf(t)! > rankOf(f)!) up.push(`${f} → ${t}`);
    }
  }
  assertEquals(up, []);
});

Deno.test("layers: no cycle between folders", () => {
  const folder = (p: string) => dirname(p);
  const edges = new Map<string, Set<string>>();
  for (const f of FILES) {
    for (const t of importsOf(f)) {
      if (folder(t) === folder(f)) continue;
      if (!edges.has(folder(f))) edges.set(folder(f), new Set());
      edges.get(folder(f))!.add(folder(t));
    }
  }
  // A folder importing its own subfolder (vxlan.ts → vxlan/) or parent is fine only one way.
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (n: string, path: string[]) => {
    if (state.get(n) === "done") return;
    if (state.get(n) === "open") {
      cycles.push([...path.slice(path.indexOf(n)), n].join(" → "));
      return;
    }
    state.set(n, "open");
    for (const m of edges.get(n) ?? []) visit(m, [...path, n]);
    state.set(n, "done");
  };
  for (const n of edges.keys()) visit(n, []);
  assertEquals(cycles, []);
});
