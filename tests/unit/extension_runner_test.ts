// The extension backend's real runner: `sh -c` with the environment and stdin given,
// stdout and stderr apart, and a kill that takes the command's children along.
import { assert, assertEquals } from "../helpers/assert.ts";
import { until } from "../helpers/wait.ts";
import { MAX_OUTPUT_BYTES, ShellRunner } from "../../lib/backend/extension/runner.ts";
import { CommandExecutor } from "../../lib/backend/extension/executor.ts";

const runner = new ShellRunner();
const never = new AbortController().signal;

/** Whether process `pid` is gone (or a zombie nobody reaped, which runs nothing). */
function gone(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2] === "Z";
  } catch {
    return true;
  }
}

Deno.test("shell runner: environment, stdin, stdout and stderr apart, exit status", async () => {
  const r = await runner.run({
    command: 'printf "%s|%s|" "$SUBNET" "$PUBLIC_IP"; cat; echo oops >&2; exit 3',
    env: { SUBNET: "10.5.3.0/24", PUBLIC_IP: "192.168.100.3" },
    stdin: "aa:bb:cc:dd:ee:ff\n",
    signal: never,
  });
  assertEquals(r, {
    code: 3,
    signal: null,
    stdout: "10.5.3.0/24|192.168.100.3|aa:bb:cc:dd:ee:ff\n",
    stderr: "oops\n",
    killed: false,
  });
  const inherited = await runner.run({
    command: 'echo "$PATH"',
    env: {},
    stdin: "",
    signal: never,
  });
  assertEquals(inherited.stdout.trim(), Deno.env.get("PATH"), "the daemon's environment too");
});

Deno.test("shell runner: a kill ends the shell and what it started", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ctl = new AbortController();
    const t0 = performance.now();
    const running = runner.run({
      command: `sleep 30 & echo $! > ${dir}/pid; wait`,
      env: {},
      stdin: "",
      signal: ctl.signal,
    });
    const pid = Number(
      await until("child pid", () => {
        try {
          return Deno.readTextFileSync(`${dir}/pid`).trim();
        } catch {
          return "";
        }
      }),
    );
    assert(!gone(pid), "sleep runs");
    ctl.abort();
    const r = await running;
    assertEquals([r.killed, r.signal, r.code], [true, "SIGKILL", null]);
    await until("sleep killed too", () => gone(pid), 2000);
    assert(performance.now() - t0 < 5000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shell runner: output is capped; unread stdin does not block; no shell is an error", async () => {
  const big = await runner.run({
    command: "head -c 200000 /dev/zero | tr '\\0' a",
    env: {},
    stdin: "x".repeat(300_000), // never read
    signal: never,
  });
  assertEquals([big.code, big.stdout.length], [0, MAX_OUTPUT_BYTES]);
  const none = await new ShellRunner("/nonexistent/sh").run({
    command: "true",
    env: {},
    stdin: "",
    signal: never,
  });
  assertEquals([none.code, none.killed], [null, false]);
  assert(none.error, "the spawn error is reported");
});

Deno.test("executor + shell runner: the timeout kills a command whose child holds its output", async () => {
  const exec = new CommandExecutor(runner, 300);
  const out = await exec.run("sleep 30 & exit 0", {}, "", never, false);
  assertEquals([out.ok, out.timedOut, out.ms >= 290 && out.ms < 3000], [false, true, true]);
  assertEquals(exec.counts, {
    commands_run: 1,
    commands_failed: 1,
    commands_timed_out: 1,
    command_retries: 0,
  });
  // With its output redirected, a background child does not hold the command.
  const detached = await exec.run("sleep 1 >/dev/null 2>&1 & echo started", {}, "", never, false);
  assertEquals([detached.ok, detached.result.stdout, detached.ms < 290], [true, "started\n", true]);
});
