/**
 * SubnetAddCommand and SubnetRemoveCommand per remote lease, beyond upstream (which runs
 * them one after another in its event loop, once, so a failure is final and a hanging
 * command stops every other lease):
 *
 * - Each lease has a slot holding what is wanted (the lease, or nothing once removed) and
 *   what was done (the lease whose add succeeded). One worker per slot runs the commands
 *   that bring the two together, so for one lease an add and a later remove run in order,
 *   never at once, while different leases proceed independently (at most
 *   `maxParallel` commands at a time, so that a snapshot of 1,000 leases does not start
 *   1,000 shells at once).
 * - A failed command is retried with exponential backoff for as long as its result is still
 *   wanted. A newer event for the lease supersedes a pending retry: it is dropped and the
 *   slot re-evaluated at once. Logging is one line per failure with the command's output: a
 *   warning on the first, `-v=1` lines on repeats, one line on recovery.
 * - A re-delivered event that changes nothing (etcd re-puts a lease on every renewal) runs
 *   nothing. A changed lease (new PublicIP or BackendData) runs the remove for the old
 *   value, then the add for the new one.
 * - A remove undoes an add that succeeded and is retried like it. After an add that only
 *   failed, the remove runs once, unretried: the add may have done part of its work, but
 *   there is nothing known to undo.
 * @module
 */

import { Backoff, type BackoffOptions, FailureLog, sleep } from "../../core/async.ts";
import type { Fields, Logger } from "../../core/log.ts";
import { formatIP4 } from "../../core/ip.ts";
import { describeLease, encodeLeaseAttrs, type Lease } from "../../values/lease.ts";
import type { CommandExecutor } from "./executor.ts";

/** The two per-lease commands, by their config key. */
export type LeaseCommandKind = "SubnetAddCommand" | "SubnetRemoveCommand";

/** What a {@link LeaseCommands} needs. */
export interface LeaseCommandsOptions {
  exec: CommandExecutor;
  log: Logger;
  /** Command lines; "" = not configured (succeeds without running anything). */
  addCommand: string;
  removeCommand: string;
  /** Environment and stdin of a lease's commands. */
  env: (lease: Lease) => Record<string, string>;
  stdin: (lease: Lease) => string;
  /** Delays between retries of one lease's failing command. */
  backoff: BackoffOptions;
  /** Commands running at once, over all leases. */
  maxParallel: number;
}

/** A lease's value as compared for "changed": subnet and every attribute. */
function identity(l: Lease | null): string {
  return l ? `${describeLease(l)} ${encodeLeaseAttrs(l.attrs)}` : "";
}

interface Step {
  kind: LeaseCommandKind;
  lease: Lease;
  /** Retried until it succeeds (false: run once). */
  retry: boolean;
}

interface Slot {
  key: string;
  /** The lease as wanted; null once removed. */
  want: Lease | null;
  /** The lease whose add succeeded and has not been removed since. */
  have: Lease | null;
  /** A lease whose add ran and failed (or was killed): possibly half applied. */
  dirty: Lease | null;
  /** The running worker, if any. */
  worker: Promise<void> | null;
  /** Aborts the backoff sleep when the wanted state changes. */
  wake: AbortController | null;
  backoff: Backoff;
  failures: FailureLog;
  /** The step that failed last, to count its repeats as retries. */
  lastFailed: string;
}

/** FIFO counting semaphore whose waiters give up when `signal` aborts. */
class Slots {
  #waiters: (() => void)[] = [];
  constructor(private free: number) {}

  /** Resolves with a release function, or null when `signal` aborted first. */
  acquire(signal: AbortSignal): Promise<(() => void) | null> {
    if (signal.aborted) return Promise.resolve(null);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.free++;
    };
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(release);
    }
    return new Promise((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", abort);
        resolve(release);
      };
      const abort = () => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(null);
      };
      this.#waiters.push(grant);
      signal.addEventListener("abort", abort, { once: true });
    });
  }
}

/** Runs the per-lease commands; see the module documentation. */
export class LeaseCommands {
  #slots = new Map<string, Slot>();
  #running = false;
  #stop = new AbortController();
  #permits: Slots;

  constructor(private readonly o: LeaseCommandsOptions) {
    this.#permits = new Slots(o.maxParallel);
  }

  /** Leases whose add succeeded (and that were not removed since). */
  get applied(): number {
    let n = 0;
    for (const s of this.#slots.values()) if (s.have) n++;
    return n;
  }

  /** Leases whose last command failed and is being retried or given up on. */
  get failing(): number {
    let n = 0;
    for (const s of this.#slots.values()) if (s.failures.failing) n++;
    return n;
  }

  /**
   * Records the wanted state of lease `key` (null: removed) and starts its worker when
   * something is to be done. Runs nothing synchronously and never waits for a command.
   */
  set(key: string, lease: Lease | null): void {
    let s = this.#slots.get(key);
    if (!s) {
      if (!lease) return;
      s = {
        key,
        want: null,
        have: null,
        dirty: null,
        worker: null,
        wake: null,
        backoff: new Backoff(this.o.backoff),
        failures: new FailureLog(this.o.log, "lease commands succeed again"),
        lastFailed: "",
      };
      this.#slots.set(key, s);
    }
    if (identity(s.want) === identity(lease)) return; // re-delivered: nothing changes
    s.want = lease;
    s.backoff.reset();
    s.wake?.abort(); // a pending retry is superseded: look again now
    this.#kick(s);
  }

  /** Starts (or resumes after {@link stop}) running commands. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stop = new AbortController();
    for (const s of this.#slots.values()) this.#kick(s);
  }

  /**
   * Stops: running commands are killed, pending retries dropped; what is wanted is kept, so
   * {@link start} carries on where this left off. Resolves once no worker runs.
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stop.abort();
    await Promise.all([...this.#slots.values()].map((s) => s.worker));
  }

  #kick(s: Slot): void {
    if (!this.#running || s.worker) return;
    s.worker = this.#work(s).finally(() => {
      s.worker = null;
      if (!s.want && !s.have && !s.dirty) this.#slots.delete(s.key);
      else if (this.#running && this.#next(s)) this.#kick(s); // changed as it finished
    });
  }

  /** The next command to run for the slot, or null when what is done is what is wanted. */
  #next(s: Slot): Step | null {
    const want = identity(s.want);
    if (s.have && identity(s.have) !== want) {
      return { kind: "SubnetRemoveCommand", lease: s.have, retry: true };
    }
    if (s.dirty && identity(s.dirty) !== want) {
      return { kind: "SubnetRemoveCommand", lease: s.dirty, retry: false };
    }
    if (s.want && !s.have) return { kind: "SubnetAddCommand", lease: s.want, retry: true };
    return null;
  }

  async #work(s: Slot): Promise<void> {
    for (let step = this.#next(s); step && this.#running; step = this.#next(s)) {
      const stop = this.#stop.signal;
      const stepId = `${step.kind} ${identity(step.lease)}`;
      const command = step.kind === "SubnetAddCommand" ? this.o.addCommand : this.o.removeCommand;
      const fields: Fields = {
        subnet: describeLease(step.lease),
        publicIP: formatIP4(step.lease.attrs.publicIP),
      };
      let ok = true;
      if (command) {
        const release = await this.#permits.acquire(stop);
        if (!release) return;
        // The wanted state may have changed while waiting for a permit.
        const now = this.#next(s);
        if (!now || `${now.kind} ${identity(now.lease)}` !== stepId) {
          release();
          continue;
        }
        const retry = s.lastFailed === stepId;
        let out;
        try {
          out = await this.o.exec.run(
            command,
            this.o.env(step.lease),
            this.o.stdin(step.lease),
            stop,
            retry,
          );
        } finally {
          release();
        }
        if (out.stopped) {
          if (step.kind === "SubnetAddCommand") s.dirty = step.lease;
          return;
        }
        ok = out.ok;
        const described = { ...fields, ...this.o.exec.describe(out) };
        if (ok) {
          s.failures.ok({ ...fields, command: step.kind });
          this.o.log.info(`ran ${step.kind}`, described);
        } else {
          s.lastFailed = stepId;
          const delay = s.backoff.peek();
          s.failures.failed(
            step.retry
              ? `${step.kind} failed; retrying in ${delay / 1000} s`
              : `${step.kind} failed; not retried, as the lease's add never succeeded`,
            described,
          );
        }
      }
      if (ok) {
        s.lastFailed = "";
        s.backoff.reset();
        if (step.kind === "SubnetAddCommand") {
          s.have = step.lease;
          s.dirty = null;
        } else if (step.lease === s.have) s.have = null;
        else s.dirty = null;
        continue;
      }
      if (step.kind === "SubnetAddCommand") s.dirty = step.lease;
      if (!step.retry) {
        s.dirty = null; // given up: nothing more is known to undo
        continue;
      }
      s.wake = new AbortController();
      const wake = AbortSignal.any([stop, s.wake.signal]);
      await sleep(s.backoff.next(), wake);
      s.wake = null;
    }
  }
}
