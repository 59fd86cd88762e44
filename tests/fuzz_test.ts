/**
 * Fuzzing of the parsers that read outside input (see tests/helpers/fuzz_targets.ts):
 * random and mutated inputs must give a valid result or the documented error, never another
 * exception and never a hang. Deterministic: the seed is printed, `FLANNEL_FUZZ_SEED=<n>`
 * replays it. ~12 s in the suite; `FLANNEL_FUZZ_SECONDS=<n>` runs longer on demand.
 */

import { assert } from "./helpers/assert.ts";
import { TARGETS } from "./helpers/fuzz_targets.ts";
import type { FuzzCounts } from "./helpers/fuzz.ts";

const TOTAL_S = Number(Deno.env.get("FLANNEL_FUZZ_SECONDS") ?? 12);
const SEED = Number(Deno.env.get("FLANNEL_FUZZ_SEED") ?? (Date.now() % 2 ** 31));
/** Share of the time per target (netlink has the most layouts to explore). */
const SHARE: Record<string, number> = {
  netlink: 0.3,
  "lease key": 0.15,
  "lease value": 0.2,
  config: 0.2,
  "udp packet": 0.15,
};

/** Runs one target in a Worker; rejects on a finding, or when the Worker is still busy past its budget + 10 s. */
function runTarget(target: string, seed: number, ms: number): Promise<FuzzCounts> {
  const w = new Worker(new URL("./helpers/fuzz_worker.ts", import.meta.url), { type: "module" });
  return new Promise<FuzzCounts>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `${target}: no answer ${
              ms + 10_000
            } ms into a ${ms} ms run: a parser hangs (seed ${seed})`,
          ),
        ),
      ms + 10_000,
    );
    w.onmessage = (e) => {
      clearTimeout(timer);
      if (e.data.finding) reject(new Error(`${target} (seed ${seed}): ${e.data.finding}`));
      else resolve(e.data.counts);
    };
    w.onerror = (e) => {
      clearTimeout(timer);
      e.preventDefault();
      reject(new Error(`${target} worker failed: ${e.message}`));
    };
    w.postMessage({ target, seed, ms });
  }).finally(() => w.terminate());
}

Deno.test("fuzz: parsers of outside input give a result or their documented error", async (t) => {
  console.log(`seed ${SEED} (FLANNEL_FUZZ_SEED=${SEED} replays it), ${TOTAL_S} s in all`);
  for (const name of Object.keys(TARGETS)) {
    await t.step(name, async () => {
      const ms = Math.round(TOTAL_S * 1000 * SHARE[name]);
      const c = await runTarget(name, SEED, ms);
      console.log(
        `  ${name}: ${c.tried} inputs in ${ms} ms, ${c.accepted} accepted, ${c.rejected} rejected with the documented error`,
      );
      assert(c.tried > 1000, `only ${c.tried} inputs`);
    });
  }
});
