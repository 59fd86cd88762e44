/**
 * How the extension backend runs the operator's commands: a small {@link CommandRunner}
 * interface (the scheduling is tested with a fake one), and {@link ShellRunner}, which runs
 * `sh -c <command>` as upstream does, with extra environment variables, a string on stdin,
 * stdout and stderr captured, and the whole process group killed when asked to.
 * @module
 */

/** One command to run. */
export interface CommandRequest {
  /** Shell command line, run as `sh -c <command>`. */
  command: string;
  /** Added to the daemon's own environment (as upstream: `os.Environ()` plus these). */
  env: Record<string, string>;
  /** Written to stdin, which is then closed. */
  stdin: string;
  /** Aborting kills the command and every process it started; the run then resolves. */
  signal: AbortSignal;
}

/** How a command ended. */
export interface CommandResult {
  /** Exit status; null when it was killed by a signal or never started. */
  code: number | null;
  /** The signal that ended it (`SIGKILL`…), or null. */
  signal: string | null;
  /** Captured output, decoded as UTF-8, each stream cut at {@link MAX_OUTPUT_BYTES}. */
  stdout: string;
  stderr: string;
  /** Whether it was killed because the request's signal aborted. */
  killed: boolean;
  /** Why it could not be started (e.g. no `sh`, or not permitted), when it was not. */
  error?: string;
}

/** Runs commands. */
export interface CommandRunner {
  /** Runs one command to its end (or until killed); never rejects. */
  run(req: CommandRequest): Promise<CommandResult>;
}

/** Output kept per stream; the rest is read and dropped, so the command never blocks on us. */
export const MAX_OUTPUT_BYTES = 64 * 1024;

/** After a kill, how long output is still awaited: a process that left the group may hold it. */
const DRAIN_AFTER_KILL_MS = 1000;

const encoder = new TextEncoder();

/** Reads a stream to its end, keeping the first `max` bytes. */
async function readCapped(
  stream: ReadableStream<Uint8Array>,
  max: number,
  giveUp: Promise<void>,
): Promise<string> {
  const reader = stream.getReader();
  const kept: Uint8Array[] = [];
  let size = 0;
  let stop = false;
  giveUp.then(() => {
    stop = true;
    reader.cancel().catch(() => {});
  });
  try {
    while (!stop) {
      const { value, done } = await reader.read();
      if (done) break;
      if (size < max) {
        const part = value.subarray(0, max - size);
        kept.push(part);
        size += part.length;
      }
    }
  } catch {
    // cancelled after a kill, or the pipe broke: keep what arrived
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const k of kept) {
    all.set(k, off);
    off += k.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * Kills process group `pgid` with SIGKILL. Deno's own `Deno.kill` needs unrestricted
 * `--allow-run`; the daemon may run `sh` only, so the group is killed by sh's `kill`.
 */
async function killGroup(pgid: number): Promise<void> {
  try {
    await new Deno.Command("sh", {
      args: ["-c", 'kill -s KILL -- "-$1" 2>/dev/null', "sh", String(pgid)],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
  } catch {
    // sh itself cannot run: the leader is still killed below
  }
}

/**
 * The real runner: `sh -c <command>` in its own session (`detached`), so that a timeout
 * kills the shell and everything it started (a `sleep` under the shell would otherwise
 * keep the output pipes open and live on).
 */
export class ShellRunner implements CommandRunner {
  /** @param shell the shell to run (tests may point elsewhere); `sh` as upstream */
  constructor(private readonly shell = "sh") {}

  async run(req: CommandRequest): Promise<CommandResult> {
    const empty = { code: null, signal: null, stdout: "", stderr: "" };
    if (req.signal.aborted) return { ...empty, killed: true };
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(this.shell, {
        args: ["-c", req.command],
        env: req.env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
    } catch (e) {
      return { ...empty, killed: false, error: (e as Error).message };
    }
    let killed = false;
    let drained: () => void = () => {};
    const giveUp = new Promise<void>((resolve) => drained = resolve);
    const kill = () => {
      killed = true;
      void killGroup(child.pid).then(() => {
        try {
          child.kill("SIGKILL"); // the leader, in case the group kill could not run
        } catch { /* already gone */ }
        setTimeout(drained, DRAIN_AFTER_KILL_MS);
      });
    };
    req.signal.addEventListener("abort", kill, { once: true });
    // A command that exits without reading stdin breaks the pipe: that is not its failure.
    const writing = (async () => {
      const w = child.stdin.getWriter();
      try {
        await w.write(encoder.encode(req.stdin));
        await w.close();
      } catch { /* closed early */ }
    })();
    try {
      const [stdout, stderr, status] = await Promise.all([
        readCapped(child.stdout, MAX_OUTPUT_BYTES, giveUp),
        readCapped(child.stderr, MAX_OUTPUT_BYTES, giveUp),
        child.status,
      ]);
      await writing;
      return {
        code: status.signal ? null : status.code,
        signal: status.signal,
        stdout,
        stderr,
        killed,
      };
    } finally {
      req.signal.removeEventListener("abort", kill);
      drained();
    }
  }
}
