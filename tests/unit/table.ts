// Table-driven assertion helpers shared by the unit tests.
import { assertEquals } from "../helpers/assert.ts";

/** Asserts `fn(input)` deep-equals `want` for every `[input, want]` row; failures name the input. */
export function eachCase<I, O>(fn: (input: I) => O, cases: readonly (readonly [I, O])[]): void {
  for (const [input, want] of cases) assertEquals(fn(input), want, Deno.inspect(input));
}

/** Asserts `fn(input)` is null for every input (rejected). */
export function eachNull<I>(fn: (input: I) => unknown, inputs: readonly I[]): void {
  eachCase(fn, inputs.map((i) => [i, null] as const));
}
