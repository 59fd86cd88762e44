/**
 * A process whose stderr log lines are all kept, for tests that read what an operator
 * would read from a daemon started by hand (flanneld logs to stderr, as upstream).
 * @module
 */

/** A running process and the stderr lines it wrote so far. */
export class LogProcess {
  readonly lines: string[] = [];
  readonly #proc: Deno.ChildProcess;
  readonly #collected: Promise<void>;

  constructor(cmd: string, args: string[], env: Record<string, string> = {}) {
    const proc = new Deno.Command(cmd, {
      args,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#proc = proc;
    this.#collected = (async () => {
      let rest = "";
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts.filter((p) => p !== ""));
      }
      if (rest) this.lines.push(rest);
    })();
  }

  /** Whether the process is still running (checked within 50 ms). */
  running(): Promise<boolean> {
    return Promise.race([
      this.#proc.status.then(() => false),
      new Promise<boolean>((r) => setTimeout(r, 50, true)),
    ]);
  }

  /** Signals the process (when still running), waits for it and for its last lines. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#proc.kill(signal);
    } catch { /* exited already: the status says how */ }
    const status = await this.#proc.status;
    await this.#collected;
    return status;
  }
}
