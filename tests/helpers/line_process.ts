/**
 * A child process driven line by line: commands written to its stdin, its stdout read as
 * lines that tests wait for by prefix (with a deadline), its stderr kept for failure messages.
 * @module
 */

import { GiveUp, until } from "./wait.ts";

/** A running child with line-oriented stdout. */
export class LineProcess {
  readonly #proc: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: string[] = [];
  #stderr = "";
  #closed = false;

  constructor(readonly label: string, cmd: string, args: string[]) {
    this.#proc = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#writer = this.#proc.stdin.getWriter();
    this.#pump(this.#proc.stdout, (text) => this.#lines.push(...text)).finally(() => {
      this.#closed = true;
    });
    this.#pump(this.#proc.stderr, (text) => this.#stderr += text.join("\n") + "\n");
  }

  async #pump(
    stream: ReadableStream<Uint8Array>,
    onLines: (lines: string[]) => void,
  ): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      onLines(parts);
    }
    if (rest) onLines([rest]);
  }

  /** What the process wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Exit status (resolves when the process ends). */
  get status(): Promise<Deno.CommandStatus> {
    return this.#proc.status;
  }

  /** Writes one line to stdin. */
  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Waits for the next stdout line starting with `prefix`; throws after `timeoutMs`. */
  waitLine(prefix: string, timeoutMs = 20_000): Promise<string> {
    return this.waitFor((l) => l.startsWith(prefix), `"${prefix}" line`, timeoutMs);
  }

  /**
   * Waits for the next stdout line matching `match` (dropping the lines before it); throws,
   * naming `what`, when the process exits or `timeoutMs` passes first.
   */
  async waitFor(
    match: (line: string) => boolean,
    what: string,
    timeoutMs = 20_000,
  ): Promise<string> {
    try {
      const found = await until(
        what,
        () => {
          const i = this.#lines.findIndex(match);
          if (i >= 0) return { line: this.#lines.splice(0, i + 1)[i] };
          if (this.#closed) throw new GiveUp("exited");
          return null;
        },
        timeoutMs,
        10,
      );
      return found.line;
    } catch (e) {
      const why = e instanceof GiveUp ? "exited" : "timeout";
      throw new Error(`${this.label}: no ${what} (${why}); stderr:\n${this.#stderr}`);
    }
  }

  /** Removes and returns every stdout line received so far. */
  takeLines(): string[] {
    return this.#lines.splice(0);
  }

  /** Signals the process (if still running; default SIGKILL) and waits for it. */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    try {
      this.#proc.kill(signal);
    } catch { /* already exited */ }
    await this.#proc.status;
    await this.#writer.close().catch(() => {});
  }
}

/** One of our Deno scripts run with all permissions in namespace `ns`, driven line by line. */
export function nsDeno(label: string, ns: string, ...args: string[]): LineProcess {
  return new LineProcess(label, "ip", ["netns", "exec", ns, Deno.execPath(), "run", "-A", ...args]);
}
