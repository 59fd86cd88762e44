/**
 * One of our flanneld daemons running inside a host namespace: started with its output
 * appended to a log file, stopped by signal, and watched for the subnet.env it writes.
 * @module
 */

import { DAEMON_RUNTIME_FLAGS } from "../../dist/compile.ts";
import { parseDotenv } from "../../lib/values/subnet_env.ts";
import { GiveUp, sleep, until } from "./wait.ts";

/**
 * How our daemon is run: this Deno on the repository's main.ts, with the runtime flags the
 * installed daemon has (memory settings). The last element is always main.ts.
 */
export const DEFAULT_DAEMON_COMMAND: readonly string[] = [
  Deno.execPath(),
  "run",
  "-A",
  ...DAEMON_RUNTIME_FLAGS,
  new URL("../../main.ts", import.meta.url).pathname,
];

/** Identity of a file version: subnet.env is replaced by rename, so a rewrite changes it. */
function fileStamp(path: string): string | null {
  try {
    const st = Deno.statSync(path);
    return `${st.ino}:${st.mtime?.getTime()}`;
  } catch {
    return null;
  }
}

/** A flanneld process in namespace `ns`. */
export class Daemon {
  #proc: Deno.ChildProcess | null = null;
  #stampAtStart: string | null = null;

  /**
   * @param ns namespace to run in
   * @param command the daemon's command line without flags
   * @param args flanneld arguments
   * @param subnetFile the `--subnet-file` among `args`, watched by {@link waitSubnetEnv}
   * @param logFile where stdout and stderr are appended
   */
  constructor(
    readonly ns: string,
    readonly command: readonly string[],
    readonly args: string[],
    readonly subnetFile: string,
    readonly logFile: string,
  ) {}

  /** Whether the process is running (started and not yet reaped by {@link stop}). */
  get running(): boolean {
    return this.#proc !== null;
  }

  /** Process id of the daemon (`ip netns exec` execs it, so this is the daemon itself). */
  get pid(): number | null {
    return this.#proc?.pid ?? null;
  }

  /** Starts the daemon; its output goes straight to the log file, so it never blocks on us. */
  start(): void {
    if (this.#proc) throw new Error(`daemon in ${this.ns} already running`);
    this.#stampAtStart = fileStamp(this.subnetFile);
    const cmd = ["ip", "netns", "exec", this.ns, ...this.command, ...this.args];
    this.#proc = new Deno.Command("sh", {
      args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1', "sh", this.logFile, ...cmd],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  /** Whether the process is still running: started, and no exit seen within 100 ms. */
  async alive(): Promise<boolean> {
    const s = this.#proc?.status;
    if (!s) return false;
    return await Promise.race([s.then(() => false), sleep(100).then(() => true)]);
  }

  /** Waits up to `timeoutMs` for the running process to exit by itself; returns its status. */
  async waitExit(timeoutMs = 20_000): Promise<Deno.CommandStatus> {
    const p = this.#proc;
    if (!p) throw new Error(`daemon in ${this.ns} is not running`);
    let status: Deno.CommandStatus | null = null;
    p.status.then((s) => status = s);
    return await until(`the daemon in ${this.ns} to exit`, () => status, timeoutMs);
  }

  /** Exit status once the process ends, without stopping it; null when not running. */
  get status(): Promise<Deno.CommandStatus> | null {
    return this.#proc?.status ?? null;
  }

  /**
   * Sends `signal` and waits for exit; after `graceMs` sends SIGKILL. Returns the exit
   * status, or null when it was not running.
   */
  async stop(
    signal: Deno.Signal = "SIGTERM",
    graceMs = 10_000,
  ): Promise<Deno.CommandStatus | null> {
    const p = this.#proc;
    if (!p) return null;
    try {
      p.kill(signal);
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        p.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }, graceMs);
    const status = await p.status;
    clearTimeout(timer);
    this.#proc = null;
    return status;
  }

  /** The log so far ("" when none yet). */
  log(): string {
    try {
      return Deno.readTextFileSync(this.logFile);
    } catch {
      return "";
    }
  }

  /** The current subnet.env, parsed; null when it does not exist. */
  subnetEnv(): Record<string, string> | null {
    try {
      return Object.fromEntries(parseDotenv(Deno.readTextFileSync(this.subnetFile)));
    } catch {
      return null;
    }
  }

  /**
   * Waits until the daemon has written subnet.env since it was started (a restarted
   * daemon rewrites it); throws with the log tail when it exits first or time runs out.
   */
  async waitSubnetEnv(timeoutMs = 30_000): Promise<Record<string, string>> {
    let exited: Deno.CommandStatus | null = null;
    this.#proc?.status.then((s) => exited = s);
    try {
      return await until(
        `subnet.env from the daemon in ${this.ns}`,
        () => {
          const stamp = fileStamp(this.subnetFile);
          const env = stamp !== null && stamp !== this.#stampAtStart ? this.subnetEnv() : null;
          if (env?.FLANNEL_SUBNET || env?.FLANNEL_IPV6_SUBNET) return env;
          if (exited) throw new GiveUp(`exited with code ${exited.code}`);
          if (!this.#proc) throw new GiveUp("not running");
          return null;
        },
        timeoutMs,
        100,
      );
    } catch (e) {
      throw new Error(
        `daemon in ${this.ns} wrote no subnet.env (${
          e instanceof GiveUp ? e.message : "timed out"
        }); log:\n` +
          this.log().split("\n").slice(-30).join("\n"),
      );
    }
  }
}
