/**
 * Runs the system's rule tools (iptables-restore, iptables-save, nft). The daemon shells
 * out only for these: their kernel interfaces (xtables, nf_tables netlink) are not worth
 * reimplementing and the tools are what the host's other firewall users run too.
 * @module
 */

/** Outcome of one tool run; `code` 127 when the tool is not installed. */
export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

const decoder = new TextDecoder();

/** Runs `cmd args…` with `stdin` (if any), killed after `timeoutMs`; never throws for a failure. */
export async function runTool(
  cmd: string,
  args: string[],
  stdin?: string,
  timeoutMs = 30_000,
): Promise<ToolResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${cmd}: not found` };
    }
    throw e;
  }
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin)).catch(() => {}); // a tool that exits early closes its stdin
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Throws with the tool's stderr when `r` failed; returns stdout. */
export function check(r: ToolResult, what: string): string {
  if (r.code !== 0) {
    throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}
