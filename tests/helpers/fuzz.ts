/**
 * A small deterministic fuzzer: a seeded PRNG, byte and JSON mutators, and the parsers
 * under test as targets. Each target says which error type is its documented failure; any
 * other exception, or a result breaking the target's invariants, is a finding.
 * @module
 */

/** Seeded PRNG (mulberry32): the same seed gives the same inputs. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Values that break length and range checks. */
const EDGE_U32 = [0, 1, 3, 4, 15, 16, 17, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff];

/**
 * One mutation of `b`: bit flips, truncation, a 16- or 32-bit field (netlink lengths sit
 * at 4-byte boundaries) set to an edge value, inserted or deleted bytes, or a splice with
 * `other`.
 */
export function mutateBytes(rng: Rng, b: Uint8Array, other: Uint8Array): Uint8Array {
  const out = new Uint8Array(b);
  const v = new DataView(out.buffer);
  switch (rng.int(6)) {
    case 0:
      for (let n = 1 + rng.int(8); n > 0 && out.length; n--) {
        out[rng.int(out.length)] ^= 1 << rng.int(8);
      }
      return out;
    case 1:
      return out.slice(0, rng.int(out.length + 1));
    case 2: {
      if (out.length < 4) return out;
      const off = rng.int(out.length >> 2) << 2;
      const x = rng.pick(EDGE_U32);
      if (rng.int(2)) v.setUint32(off, x, true);
      else v.setUint16(off, x & 0xffff, true);
      return out;
    }
    case 3: {
      const at = rng.int(out.length + 1);
      return Uint8Array.from([
        ...out.slice(0, at),
        ...rng.bytes(1 + rng.int(16)),
        ...out.slice(at),
      ]);
    }
    case 4: {
      const at = rng.int(out.length + 1);
      return Uint8Array.from([...out.slice(0, at), ...out.slice(at + 1 + rng.int(8))]);
    }
    default:
      return Uint8Array.from([
        ...out.slice(0, rng.int(out.length + 1)),
        ...other.slice(rng.int(other.length + 1)),
      ]);
  }
}

/** Replacement values for a JSON node: other types, huge and odd numbers, odd strings. */
function oddValue(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => null,
    () => true,
    () =>
      rng.pick([
        0,
        -1,
        -0.5,
        1.5,
        2 ** 31,
        2 ** 32,
        2 ** 53 + 1,
        1e308,
        -1e308,
        Number.MAX_SAFE_INTEGER,
      ]),
    () =>
      rng.pick([
        "",
        "0.0.0.0/0",
        "10.5.0.0/33",
        "255.255.255.255",
        "::",
        "fd00::/200",
        "x".repeat(10000),
        "\u0000",
        "10.5.0.0/16\n",
      ]),
    () => [],
    () => ({}),
    () => [1, "a", null],
    () => ({ Type: rng.pick(["udp", "vxlan", "host-gw", "", 7]) }),
  ])();
}

/** Replaces a random node of `v` (a parsed JSON value) with an odd value. */
function mutateTree(rng: Rng, v: unknown): unknown {
  if (v === null || typeof v !== "object" || rng.int(4) === 0) return oddValue(rng);
  const copy: any = Array.isArray(v) ? [...v] : { ...(v as object) };
  const keys = Object.keys(copy);
  if (keys.length === 0 || rng.int(5) === 0) {
    copy[
      Array.isArray(copy)
        ? copy.length
        : rng.pick(["Network", "SubnetLen", "PublicIP", "backend", "NETWORK", "__proto__", "x"])
    ] = oddValue(rng);
    return copy;
  }
  const k = rng.pick(keys);
  if (rng.int(6) === 0) delete copy[k];
  else copy[k] = mutateTree(rng, copy[k]);
  return copy;
}

/**
 * One mutation of JSON text `s`: a node swapped for another type or an edge value, deep
 * nesting, numbers beyond float range, or raw character edits (delete, insert, duplicate).
 */
export function mutateJson(rng: Rng, s: string): string {
  switch (rng.int(6)) {
    case 0:
    case 1:
      return JSON.stringify(mutateTree(rng, JSON.parse(s)));
    case 2: {
      const depth = rng.pick([50, 1000, 50_000]);
      const [open, close] = rng.int(2) ? ["[", "]"] : ['{"a":', "}"];
      return s.replace(/:\s*("[^"]*"|\d+)/, `:${open.repeat(depth)}1${close.repeat(depth)}`);
    }
    case 3:
      return s.replace(
        /\d+/,
        rng.pick(["1e999", "-1e999", "99999999999999999999999", "0x10", "01", "1.0"]),
      );
    case 4: {
      const at = rng.int(s.length + 1);
      return s.slice(0, at) +
        rng.pick(["{", "}", "[", "]", '"', ",", ":", "\\", "\u2028", "\uD800", " "]) + s.slice(at);
    }
    default: {
      const at = rng.int(s.length + 1);
      return rng.int(2)
        ? s.slice(0, at) + s.slice(at + 1 + rng.int(4))
        : s.slice(0, at) + s.slice(at - rng.int(8));
    }
  }
}

/** Counts of one fuzz run. */
export interface FuzzCounts {
  tried: number;
  /** Inputs that parsed. */
  accepted: number;
  /** Inputs rejected with the documented error. */
  rejected: number;
}

/** A parser under test. */
export interface FuzzTarget<I> {
  /** Makes the next input (random or mutated from the corpus). */
  input(rng: Rng): I;
  /** Parses `input`; throws a finding (an Error that is not `expected`) when something is wrong. */
  run(input: I): void;
  /** The documented error type. */
  expected: abstract new (...args: any[]) => Error;
}

/** Runs `target` for `ms`; returns the counts, or throws the first finding with its input. */
export function fuzz<I>(target: FuzzTarget<I>, rng: Rng, ms: number): FuzzCounts {
  const counts: FuzzCounts = { tried: 0, accepted: 0, rejected: 0 };
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) {
      const input = target.input(rng);
      counts.tried++;
      try {
        target.run(input);
        counts.accepted++;
      } catch (e) {
        if (e instanceof target.expected) {
          counts.rejected++;
          continue;
        }
        const shown = input instanceof Uint8Array
          ? `bytes ${Array.from(input, (x) => x.toString(16).padStart(2, "0")).join("")}`
          : JSON.stringify(input)?.slice(0, 500);
        throw new Error(
          `finding after ${counts.tried} inputs: ${(e as Error)?.stack ?? e}\ninput: ${shown}`,
        );
      }
    }
  }
  return counts;
}
