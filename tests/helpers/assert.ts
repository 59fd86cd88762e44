/**
 * The few assertions the tests use, on top of `node:assert/strict` (the JSR standard
 * library cannot be reached from here).
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

type ErrorClass<E> = new (...a: any[]) => E;

/** Checks a caught error against the expected class and message part; returns it typed. */
function expectError<E extends Error>(e: unknown, cls?: ErrorClass<E>, includes?: string): E {
  if (cls && !(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
  if (includes && !String((e as Error).message).includes(includes)) {
    throw new Error(
      `error ${JSON.stringify((e as Error).message)} does not include ${JSON.stringify(includes)}`,
    );
  }
  return e as E;
}

/** Asserts that `fn` throws an instance of `cls` (when given); returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return expectError(e, cls, includes);
  }
  throw new Error("expected a throw");
}

/** Async version of {@link assertThrows}. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return expectError(e, cls, includes);
  }
  throw new Error("expected a rejection");
}
