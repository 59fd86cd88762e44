/**
 * One run of an extension command with its timeout, counted for `/metrics`, and described
 * for a log line (status and output). Retrying is the callers' business.
 * @module
 */

import type { Fields } from "../../core/log.ts";
import type { CommandResult, CommandRunner } from "./runner.ts";

/** Counters of every command run (startup and per lease), as `stats()` reports them. */
export interface CommandCounts {
  /** Commands started. */
  commands_run: number;
  /** Runs that failed: exit status ≠ 0, killed, timed out or not started. */
  commands_failed: number;
  /** Runs killed after the timeout (also counted as failed). */
  commands_timed_out: number;
  /** Runs that repeated a failed one. */
  command_retries: number;
}

/** How a run ended. */
export interface Outcome {
  ok: boolean;
  /** Killed after the timeout. */
  timedOut: boolean;
  /** Killed because the backend stopped: neither success nor a failure to report. */
  stopped: boolean;
  result: CommandResult;
  /** Wall time of the run. */
  ms: number;
}

/** Output in a log line: trimmed and cut, so one line stays one line of reasonable size. */
const LOG_OUTPUT_CHARS = 1000;

function clip(s: string): string {
  const t = s.trim();
  return t.length > LOG_OUTPUT_CHARS ? `${t.slice(0, LOG_OUTPUT_CHARS)}…` : t;
}

/** Runs commands with a timeout and counts them. */
export class CommandExecutor {
  readonly counts: CommandCounts = {
    commands_run: 0,
    commands_failed: 0,
    commands_timed_out: 0,
    command_retries: 0,
  };

  /**
   * @param runner what runs the command
   * @param timeoutMs a run still going after this long is killed
   */
  constructor(private readonly runner: CommandRunner, readonly timeoutMs: number) {}

  /**
   * Runs `command` until it ends, the timeout kills it, or `stop` aborts (which kills it
   * too). `retry` says whether this repeats a failed run (for the counters).
   */
  async run(
    command: string,
    env: Record<string, string>,
    stdin: string,
    stop: AbortSignal,
    retry: boolean,
  ): Promise<Outcome> {
    this.counts.commands_run++;
    if (retry) this.counts.command_retries++;
    const ctl = new AbortController();
    const onStop = () => ctl.abort("stop");
    stop.addEventListener("abort", onStop, { once: true });
    if (stop.aborted) onStop();
    const timer = setTimeout(() => ctl.abort("timeout"), this.timeoutMs);
    const t0 = performance.now();
    let result: CommandResult;
    try {
      result = await this.runner.run({ command, env, stdin, signal: ctl.signal });
    } catch (e) { // a runner must not reject; if one does, it is this run's failure
      result = {
        code: null,
        signal: null,
        stdout: "",
        stderr: "",
        killed: false,
        error: String(e),
      };
    } finally {
      clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
    }
    const ms = Math.round(performance.now() - t0);
    // The reason only counts when the command was really killed for it (not when it ended
    // on its own just as the timer fired).
    const timedOut = result.killed && ctl.signal.reason === "timeout";
    const stopped = result.killed && ctl.signal.reason === "stop";
    const ok = !result.killed && !result.error && result.code === 0;
    if (!ok && !stopped) this.counts.commands_failed++;
    if (timedOut) this.counts.commands_timed_out++;
    return { ok, timedOut, stopped, result, ms };
  }

  /** Log fields of a run: how it ended and what it printed. */
  describe(o: Outcome): Fields {
    const r = o.result;
    const status = o.timedOut
      ? `timed out after ${this.timeoutMs / 1000} s; killed with its children`
      : r.error
      ? `could not start: ${r.error}`
      : r.signal
      ? `killed by ${r.signal}`
      : `exit ${r.code}`;
    return {
      status,
      ms: o.ms,
      stdout: clip(r.stdout) || undefined,
      stderr: clip(r.stderr) || undefined,
    };
  }
}
