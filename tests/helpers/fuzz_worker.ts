/**
 * Worker for tests/fuzz_test.ts: runs one fuzz target for a time budget and posts the
 * counts or the finding. In a Worker so that a parser that hangs is caught (the test
 * terminates the Worker at its deadline) instead of hanging the suite.
 * @module
 */

import { fuzz, Rng } from "./fuzz.ts";
import { TARGETS } from "./fuzz_targets.ts";

self.onmessage = (e: MessageEvent<{ target: string; seed: number; ms: number }>) => {
  const { target, seed, ms } = e.data;
  try {
    self.postMessage({ counts: fuzz(TARGETS[target], new Rng(seed), ms) });
  } catch (err) {
    self.postMessage({ finding: String((err as Error).message ?? err) });
  }
};
