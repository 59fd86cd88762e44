/**
 * The one assert module of the tests (and the benchmark's unit tests): every test imports its
 * assertions from here. Built on `node:assert/strict` (the JSR standard library cannot be
 * reached from here), which no other file imports.
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Asserts that `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg ?? "assertion failed");
}

/** Deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (msg === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Deep strict inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (msg === undefined) nodeAssert.notDeepStrictEqual(actual, expected);
  else nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** Asserts that `s` contains `part`. */
export function assertStringIncludes(s: string, part: string, msg?: string): void {
  nodeAssert.ok(
    s.includes(part),
    msg ?? `expected ${JSON.stringify(s)} to include ${JSON.stringify(part)}`,
  );
}

/** Asserts that `s` is a string matching `re`. */
export function assertMatch(s: string, re: RegExp, msg?: string): void {
  nodeAssert.ok(
    typeof s === "string" && re.test(s),
    msg ?? `expected ${JSON.stringify(s)} to match ${re}`,
  );
}

/** Asserts that `s` is a string not matching `re`. */
export function assertNotMatch(s: string, re: RegExp, msg?: string): void {
  nodeAssert.ok(
    typeof s === "string" && !re.test(s),
    msg ?? `expected ${JSON.stringify(s)} not to match ${re}`,
  );
}

type ErrorClass<E> = new (...a: any[]) => E;

/** What an error's message must hold: a part of it, or a pattern it matches. */
export type MessageCheck = string | RegExp;

/** Checks a caught error against the expected class and message check; returns it typed. */
function expectError<E extends Error>(e: unknown, cls?: ErrorClass<E>, message?: MessageCheck): E {
  if (cls && !(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
  const text = String((e as Error)?.message ?? e);
  const ok = message === undefined ||
    (typeof message === "string" ? text.includes(message) : message.test(text));
  if (!ok) {
    throw new Error(
      `error ${JSON.stringify(text)} does not ${
        typeof message === "string" ? `include ${JSON.stringify(message)}` : `match ${message}`
      }`,
    );
  }
  return e as E;
}

/**
 * Asserts that `fn` throws, an instance of `cls` when given, with a message that includes
 * `message` (a string) or matches it (a RegExp); returns the error.
 */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  message?: MessageCheck,
): E {
  try {
    fn();
  } catch (e) {
    return expectError(e, cls, message);
  }
  throw new Error("expected a throw");
}

/** Async version of {@link assertThrows}. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  message?: MessageCheck,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return expectError(e, cls, message);
  }
  throw new Error("expected a rejection");
}
