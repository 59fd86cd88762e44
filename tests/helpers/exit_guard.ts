/**
 * Runs registered cleanups when the process is interrupted (SIGINT, SIGTERM) or unloads
 * without having run them, so an aborted test or demo leaves no namespaces behind.
 * Listeners are installed only while something is registered: Deno's test sanitizers
 * count a signal listener as a leaked resource.
 * @module
 */

const cleanups = new Set<() => void>();
const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

function runAll(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch (e) {
      console.error("cleanup failed:", e);
    }
  }
}

function onSignal(): void {
  runAll();
  Deno.exit(130);
}

function install(): void {
  for (const s of SIGNALS) Deno.addSignalListener(s, onSignal);
  globalThis.addEventListener("unload", runAll);
}

function uninstall(): void {
  for (const s of SIGNALS) Deno.removeSignalListener(s, onSignal);
  globalThis.removeEventListener("unload", runAll);
}

/**
 * Registers a synchronous cleanup (no promise would settle in an exit handler); returns a
 * function that unregisters it once the owner has cleaned up normally.
 */
export function guardExit(fn: () => void): () => void {
  if (cleanups.size === 0) install();
  cleanups.add(fn);
  return () => {
    if (cleanups.delete(fn) && cleanups.size === 0) uninstall();
  };
}
