// The extension backend without root: options, environment and stdin of each command, the
// lease value, and the per-lease scheduling (order, retries, timeouts, independence of
// leases) with a fake runner whose commands end when the test says so.
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../helpers/assert.ts";
import { until } from "../helpers/wait.ts";
import {
  DEFAULT_COMMAND_TIMEOUT_SECONDS,
  type ExtensionOptions,
  parseExtensionOptions,
} from "../../lib/backend/extension/config.ts";
import {
  ExtensionBackend,
  type ExtensionTiming,
  leaseEnv,
  leaseStdin,
  postStartupEnv,
} from "../../lib/backend/extension/backend.ts";
import type {
  CommandRequest,
  CommandResult,
  CommandRunner,
} from "../../lib/backend/extension/runner.ts";
import { backendKind, chooseBackend } from "../../lib/daemon/backends.ts";
import { ConfigError, parseNetworkConfig } from "../../lib/values/config.ts";
import type { ExternalInterface } from "../../lib/values/iface.ts";
import { encodeLeaseAttrs, type Lease, type LeaseEvent } from "../../lib/values/lease.ts";
import { ip4Net, parseIP4, parseIP6 } from "../../lib/core/ip.ts";
import { setSink, setVerbosity } from "../../lib/core/log.ts";

const ext: ExternalInterface = {
  name: "eth0",
  index: 2,
  mtu: 1450,
  ifaceAddr: parseIP4("192.168.100.10")!,
  extAddr: parseIP4("192.168.100.10")!,
  ifaceAddr6: null,
  extAddr6: null,
};

const network = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"extension"}}');

/** Fast retries so that every test runs in milliseconds. */
const timing: ExtensionTiming = {
  startupAttempts: 3,
  startupBackoff: { minMs: 1, maxMs: 2 },
  leaseBackoff: { minMs: 5, maxMs: 20 },
  maxParallel: 16,
};

function lease(third: number, data?: unknown, type = "extension"): Lease {
  return {
    subnet: ip4Net(parseIP4(`10.5.${third}.0`)!, 24),
    attrs: {
      publicIP: parseIP4(`192.168.100.${third}`)!,
      publicIPv6: null,
      backendType: type,
      ...(data === undefined ? {} : { backendData: data }),
    },
  };
}

const added = (l: Lease): LeaseEvent => ({ type: "added", lease: l });
const removed = (l: Lease): LeaseEvent => ({ type: "removed", lease: l });

/** One command the fake ran, and the means to end it. */
interface Call {
  req: CommandRequest;
  /** Ends the command with this exit code and output. */
  exit(code: number, stdout?: string, stderr?: string): void;
  /** Resolves once the command ended (by exit or by being killed). */
  ended: Promise<CommandResult>;
  /** Whether it is still running. */
  running: boolean;
}

/**
 * A runner whose commands end when `decide` says: immediately with a result, or never
 * (`"hang"`: until killed or told to exit through the call). Records every call in order.
 */
class FakeRunner implements CommandRunner {
  calls: Call[] = [];
  /** Most commands running at the same time. */
  maxConcurrent = 0;
  #running = 0;

  constructor(
    private readonly decide: (req: CommandRequest, n: number) => CommandResult | "hang" = () =>
      ok(),
  ) {}

  run(req: CommandRequest): Promise<CommandResult> {
    let finish!: (r: CommandResult) => void;
    const ended = new Promise<CommandResult>((r) => finish = r);
    const call: Call = {
      req,
      running: true,
      ended,
      exit: (code, stdout = "", stderr = "") =>
        finish({ code, signal: null, stdout, stderr, killed: false }),
    };
    this.calls.push(call);
    this.maxConcurrent = Math.max(this.maxConcurrent, ++this.#running);
    ended.then(() => {
      call.running = false;
      this.#running--;
    });
    req.signal.addEventListener("abort", () => {
      finish({ code: null, signal: "SIGKILL", stdout: "", stderr: "", killed: true });
    }, { once: true });
    const d = this.decide(req, this.calls.length - 1);
    if (d !== "hang") finish(d);
    return ended;
  }

  /** The calls of one command line, e.g. the adds. */
  of(command: string): Call[] {
    return this.calls.filter((c) => c.req.command === command);
  }
}

function ok(stdout = ""): CommandResult {
  return { code: 0, signal: null, stdout, stderr: "", killed: false };
}
function fail(code: number, stderr: string): CommandResult {
  return { code, signal: null, stdout: "", stderr, killed: false };
}

const ADD = "add-cmd";
const REMOVE = "remove-cmd";

function backend(
  runner: CommandRunner,
  backendOpts: Record<string, unknown> = {},
  t: ExtensionTiming = timing,
): ExtensionBackend {
  const options: ExtensionOptions = parseExtensionOptions({
    SubnetAddCommand: ADD,
    SubnetRemoveCommand: REMOVE,
    ...backendOpts,
  });
  return new ExtensionBackend({ network, ext, options, reconcileIntervalSeconds: 10 }, runner, t);
}

/** Captures log lines while `fn` runs. */
async function withLog<T>(fn: (lines: string[]) => Promise<T>): Promise<T> {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  try {
    return await fn(lines);
  } finally {
    setSink(prev);
  }
}

const own: Lease = {
  subnet: ip4Net(parseIP4("10.5.10.0")!, 24),
  attrs: { publicIP: ext.extAddr, publicIPv6: null, backendType: "extension" },
};

/** A backend started on `own`, with the fake runner. */
async function started(
  runner: FakeRunner,
  backendOpts: Record<string, unknown> = {},
  t: ExtensionTiming = timing,
): Promise<ExtensionBackend> {
  const be = backend(runner, backendOpts, t);
  await withLog(() => be.start(own));
  return be;
}

// ---------------------------------------------------------------- options

Deno.test("extension options: all commands optional, keys case-insensitive, timeout default", () => {
  assertEquals(parseExtensionOptions({ Type: "extension" }), {
    preStartupCommand: "",
    postStartupCommand: "",
    subnetAddCommand: "",
    subnetRemoveCommand: "",
    commandTimeoutMs: DEFAULT_COMMAND_TIMEOUT_SECONDS * 1000,
  });
  assertEquals(
    parseExtensionOptions({
      prestartupcommand: "a",
      POSTSTARTUPCOMMAND: "b",
      subnetAddCommand: "c",
      SubnetRemoveCommand: "d",
      commandtimeout: 2.5,
    }),
    {
      preStartupCommand: "a",
      postStartupCommand: "b",
      subnetAddCommand: "c",
      subnetRemoveCommand: "d",
      commandTimeoutMs: 2500,
    },
  );
  assertEquals(parseExtensionOptions({ SubnetAddCommand: null }).subnetAddCommand, "");
});

Deno.test("extension options: wrong types and values name the field", () => {
  for (
    const [bad, name] of [
      [{ SubnetAddCommand: 1 }, "Backend.SubnetAddCommand"],
      [{ PreStartupCommand: ["ip", "link"] }, "Backend.PreStartupCommand"],
      [{ postStartupCommand: true }, "Backend.PostStartupCommand"],
      [{ SubnetRemoveCommand: {} }, "Backend.SubnetRemoveCommand"],
      [{ CommandTimeout: "30s" }, "Backend.CommandTimeout"],
      [{ CommandTimeout: 0 }, "Backend.CommandTimeout"],
      [{ CommandTimeout: -1 }, "Backend.CommandTimeout"],
    ] as const
  ) {
    const e = assertThrows(() => parseExtensionOptions(bad), ConfigError, name);
    assertEquals(e.field, name);
  }
});

Deno.test("registry: extension is registered; its options are parsed with the config", () => {
  const cfg = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","Backend":{"Type":"Extension","SubnetAddCommand":"true"}}',
  );
  const { kind, options } = chooseBackend(cfg);
  assertEquals(kind, backendKind("extension"));
  assertEquals((options as ExtensionOptions).subnetAddCommand, "true");
  const be = kind.create({ network: cfg, ext, options, reconcileIntervalSeconds: 10 });
  assertEquals([be.leaseType, be.mtu], ["extension", 1450], "MTU: the external interface's");
  const bad = parseNetworkConfig(
    '{"Network":"10.5.0.0/16","Backend":{"Type":"extension","SubnetAddCommand":7}}',
  );
  assertThrows(() => chooseBackend(bad), ConfigError, "Backend.SubnetAddCommand");
});

// ------------------------------------------------- environment, stdin, lease value

Deno.test("extension: environment and stdin of the commands", () => {
  const l = lease(3, "aa:bb:cc:dd:ee:ff");
  assertEquals(leaseEnv(l), { SUBNET: "10.5.3.0/24", PUBLIC_IP: "192.168.100.3" });
  assertEquals(leaseStdin(l), "aa:bb:cc:dd:ee:ff\n");
  assertEquals(leaseStdin(lease(4)), "\n", "no BackendData: an empty line, as upstream");
  assertEquals(postStartupEnv(network, own), {
    NETWORK: "10.5.0.0/16",
    SUBNET: "10.5.10.0/24",
    PUBLIC_IP: "192.168.100.10",
  });
  const dual: Lease = {
    subnet: ip4Net(parseIP4("10.5.3.0")!, 24),
    ipv6Subnet: { ip: parseIP6("fd00:5:3::")!, prefix: 64 },
    attrs: { publicIP: parseIP4("192.168.100.3")!, publicIPv6: parseIP6("fd00::3")! },
  };
  assertEquals(leaseEnv(dual), {
    SUBNET: "10.5.3.0/24",
    PUBLIC_IP: "192.168.100.3",
    IPV6SUBNET: "fd00:5:3::/64",
    PUBLIC_IPV6: "fd00::3",
  });
});

Deno.test("extension: PreStartupCommand's trimmed stdout is the lease's BackendData string", async () => {
  const runner = new FakeRunner(() => ({ ...ok("  0a:58:0a:f4:00:01\n"), stderr: "warning" }));
  const be = backend(runner, { PreStartupCommand: "pre" });
  const data = await withLog(() => be.prepare());
  assertEquals(data, { backendData: "0a:58:0a:f4:00:01" }, "stdout only: stderr is not data");
  assertEquals(runner.calls[0].req.command, "pre");
  assertEquals([runner.calls[0].req.env, runner.calls[0].req.stdin], [{}, "\n"]);
  assertEquals(
    encodeLeaseAttrs({
      publicIP: ext.extAddr,
      publicIPv6: null,
      backendType: be.leaseType,
      backendData: data.backendData,
    }),
    '{"PublicIP":"192.168.100.10","PublicIPv6":null,"BackendType":"extension","BackendData":"0a:58:0a:f4:00:01"}',
  );
  // Go's encoder escapes HTML characters; upstream's lease has them so, byte for byte.
  assertEquals(
    encodeLeaseAttrs({ publicIP: 1, publicIPv6: null, backendData: "<a> & \\b\b\f" }),
    '{"PublicIP":"0.0.0.1","PublicIPv6":null,"BackendData":"\\u003ca\\u003e \\u0026 \\\\b\\u0008\\u000c"}',
  );
  const none = backend(new FakeRunner());
  assertEquals(await withLog(() => none.prepare()), {}, "no command: no BackendData at all");
});

Deno.test("extension: a failing startup command is retried, then start-up fails with its output", async () => {
  const runner = new FakeRunner((_r, n) => n < 1 ? fail(1, "busy") : ok("mac"));
  assertEquals(
    await withLog(() => backend(runner, { PreStartupCommand: "pre" }).prepare()),
    { backendData: "mac" },
  );
  assertEquals(runner.calls.length, 2, "one retry after the failure");

  const always = new FakeRunner(() => fail(2, "RTNETLINK answers: File exists"));
  const be = backend(always, { PostStartupCommand: "post" });
  await withLog(async (lines) => {
    const e = await assertRejects(() => be.start(own), Error, "PostStartupCommand failed 3 times");
    assertStringIncludes(e.message, "exit 2");
    assertStringIncludes(e.message, "RTNETLINK answers: File exists");
    assertEquals(lines.filter((l) => l.includes("PostStartupCommand failed; retrying")).length, 2);
  });
  assertEquals(always.calls.length, 3);
  assertEquals(always.calls[0].req.env, postStartupEnv(network, own));
  assertEquals(be.stats().commands_failed, 3);
  assertEquals(be.stats().command_retries, 2);
});

// ---------------------------------------------------------------- per lease

Deno.test("extension: add gets SUBNET, PUBLIC_IP and BackendData on stdin; remove the same", async () => {
  const runner = new FakeRunner();
  const be = await started(runner);
  await withLog(async () => {
    const l = lease(3, "aa:bb");
    await be.handle([added(l)]);
    await until("add ran", () => runner.calls.length === 1);
    assertEquals(runner.calls[0].req.command, ADD);
    assertEquals(runner.calls[0].req.env, { SUBNET: "10.5.3.0/24", PUBLIC_IP: "192.168.100.3" });
    assertEquals(runner.calls[0].req.stdin, "aa:bb\n");
    await until("peer counted", () => be.stats().peers === 1);
    // The removed event's lease may be a bare key: the remove gets what the add got.
    await be.handle([removed({ subnet: l.subnet, attrs: { publicIP: 0, publicIPv6: null } })]);
    await until("remove ran", () => runner.calls.length === 2);
    assertEquals(runner.calls[1].req.command, REMOVE);
    assertEquals(runner.calls[1].req.env, runner.calls[0].req.env);
    assertEquals(runner.calls[1].req.stdin, "aa:bb\n");
    await until("no peer", () => be.stats().peers === 0);
  });
  await be.stop();
});

Deno.test("extension: re-delivered leases run nothing; a changed one runs remove(old) then add(new)", async () => {
  const runner = new FakeRunner();
  const be = await started(runner);
  await withLog(async () => {
    await be.handle([added(lease(3, "old"))]);
    await until("add", () => runner.calls.length === 1);
    await be.handle([added(lease(3, "old")), added(lease(3, "old"))]); // renewals re-put it
    await new Promise((r) => setTimeout(r, 30));
    assertEquals(runner.calls.length, 1);
    await be.handle([added(lease(3, "new"))]);
    await until("remove and add", () => runner.calls.length === 3);
    assertEquals(
      runner.calls.map((c) => [c.req.command, c.req.stdin]),
      [[ADD, "old\n"], [REMOVE, "old\n"], [ADD, "new\n"]],
    );
  });
  await be.stop();
});

Deno.test("extension: for one lease, a remove waits for the running add; other leases do not", async () => {
  const runner = new FakeRunner((req) => req.env.SUBNET === "10.5.3.0/24" ? "hang" : ok());
  const be = await started(runner);
  await withLog(async () => {
    const a = lease(3, "a");
    await be.handle([added(a)]);
    await be.handle([added(lease(4, "b")), removed(a)]);
    await until("b's add", () => runner.calls.some((c) => c.req.env.SUBNET === "10.5.4.0/24"));
    const aCalls = () => runner.calls.filter((c) => c.req.env.SUBNET === "10.5.3.0/24");
    assertEquals(aCalls().length, 1, "a's remove waits while a's add runs");
    aCalls()[0].exit(0);
    await until("a's remove after its add", () => aCalls().length === 2);
    assertEquals(aCalls().map((c) => c.req.command), [ADD, REMOVE]);
    assert(!aCalls()[0].running, "never both at once");
  });
  await be.stop();
});

Deno.test("extension: a failing add is retried with backoff; one warning, then -v=1 lines, then recovery", async () => {
  const runner = new FakeRunner((_r, n) => n < 3 ? fail(2, `Error: Nexthop ${n}`) : ok());
  const be = await started(runner);
  await withLog(async (lines) => {
    setVerbosity(1);
    try {
      await be.handle([added(lease(3, "a"))]);
      await until("4th attempt", () => runner.calls.length === 4 && be.stats().peers === 1);
    } finally {
      setVerbosity(0);
    }
    const failures = lines.filter((l) => l.includes("SubnetAddCommand failed; retrying"));
    assertEquals(failures.length, 3, "one line per failure");
    assert(failures[0].startsWith("W"), failures[0]);
    assert(failures.slice(1).every((l) => l.startsWith("I")), "repeats at -v=1");
    assertStringIncludes(failures[0], 'stderr="Error: Nexthop 0"');
    assertStringIncludes(failures[0], 'status="exit 2"');
    assertStringIncludes(failures[0], "subnet=10.5.3.0/24");
    assertStringIncludes(failures[1], "retrying in 0.01 s", "backoff doubles");
    assertEquals(lines.filter((l) => l.includes("lease commands succeed again")).length, 1);
  });
  assertEquals(be.stats().commands_failed, 3);
  assertEquals(be.stats().command_retries, 3);
  assertEquals(be.stats().commands_run, 4);
  await be.stop();
});

Deno.test("extension: without -v, a command failing forever logs one line", async () => {
  const runner = new FakeRunner(() => fail(1, "nope"));
  const be = await started(runner);
  await withLog(async (lines) => {
    await be.handle([added(lease(3))]);
    await until("several attempts", () => runner.calls.length >= 5, 2000);
    assertEquals(lines.filter((l) => l.includes("SubnetAddCommand failed")).length, 1);
  });
  await be.stop();
});

Deno.test("extension: a superseded pending retry is dropped; the remove runs once", async () => {
  const slow: ExtensionTiming = { ...timing, leaseBackoff: { minMs: 60_000, maxMs: 60_000 } };
  const runner = new FakeRunner((req) => fail(1, req.command));
  const be = await started(runner, {}, slow);
  await withLog(async (lines) => {
    setVerbosity(1);
    try {
      const l = lease(3, "a");
      await be.handle([added(l)]);
      await until("add failed", () => runner.calls.length === 1 && !runner.calls[0].running);
      await be.handle([removed(l)]);
      await until("remove ran", () => runner.calls.length === 2 && !runner.calls[1].running);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      setVerbosity(0);
    }
    assertEquals(runner.calls.map((c) => c.req.command), [ADD, REMOVE], "no add retry");
    assertEquals(
      lines.filter((l) => l.includes("SubnetRemoveCommand failed; not retried")).length,
      1,
    );
  });
  const t0 = performance.now();
  await be.stop();
  assert(performance.now() - t0 < 1000, "stop does not wait for a backoff");
});

Deno.test("extension: a hanging command is killed after the timeout and retried; others go on", async () => {
  let hangs = 1;
  const runner = new FakeRunner((req) =>
    req.env.SUBNET === "10.5.3.0/24" && hangs-- > 0 ? "hang" : ok()
  );
  const be = await started(runner, { CommandTimeout: 0.2 });
  await withLog(async (lines) => {
    const t0 = performance.now();
    let killedAfter = 0;
    await be.handle([added(lease(3)), added(lease(4))]);
    runner.calls[0].ended.then(() => killedAfter = performance.now() - t0);
    await until("b added", () => runner.calls.some((c) => c.req.env.SUBNET === "10.5.4.0/24"));
    assert(runner.calls[0].running, "b's add ran while a's was still hanging");
    await until("a retried after the kill", () => be.stats().peers === 2, 3000);
    assertEquals((await runner.calls[0].ended).killed, true);
    assert(killedAfter >= 195, `killed at the timeout, not before (${killedAfter} ms)`);
    const line = lines.find((l) => l.includes("SubnetAddCommand failed"))!;
    assertStringIncludes(line, "timed out after 0.2 s; killed with its children");
  });
  assertEquals(be.stats().commands_timed_out, 1);
  assertEquals(be.stats().commands_failed, 1);
  await be.stop();
});

Deno.test("extension: at most maxParallel commands at once; the rest queue in order", async () => {
  const runner = new FakeRunner(() => "hang");
  const be = await started(runner, {}, { ...timing, maxParallel: 2 });
  await withLog(async () => {
    await be.handle([3, 4, 5, 6, 7].map((i) => added(lease(i))));
    await until("two running", () => runner.calls.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    assertEquals(runner.calls.length, 2);
    runner.calls[0].exit(0);
    runner.calls[1].exit(0);
    await until("next two", () => runner.calls.length === 4);
    runner.calls[2].exit(0);
    runner.calls[3].exit(0);
    await until("last", () => runner.calls.length === 5);
    runner.calls[4].exit(0);
    assertEquals(
      runner.calls.map((c) => c.req.env.SUBNET),
      [3, 4, 5, 6, 7].map((i) => `10.5.${i}.0/24`),
    );
    await until("all added", () => be.stats().peers === 5);
  });
  assertEquals(runner.maxConcurrent, 2);
  await be.stop();
});

Deno.test("extension: stop kills running commands; start carries on", async () => {
  let hang = true;
  const runner = new FakeRunner(() => hang ? "hang" : ok());
  const be = await started(runner);
  await withLog(async () => {
    await be.handle([added(lease(3))]);
    await until("running", () => runner.calls.length === 1);
    await be.stop();
    assertEquals((await runner.calls[0].ended).killed, true);
    assertEquals(be.stats().commands_failed, 0, "killed by stop: not a failure");
    hang = false;
    await be.start(own);
    await until("re-run after start", () => be.stats().peers === 1);
    assertEquals(runner.calls.length, 2);
  });
  await be.stop();
});

Deno.test("extension: leases of another type or with non-string BackendData are ignored, logged once", async () => {
  const runner = new FakeRunner();
  const be = await started(runner);
  await withLog(async (lines) => {
    const vx = lease(3, { VNI: 1, VtepMAC: "02:aa:bb:cc:dd:ee" }, "vxlan");
    await be.handle([added(vx), added(vx), added(lease(4, { not: "a string" }))]);
    await new Promise((r) => setTimeout(r, 20));
    assertEquals(runner.calls.length, 0);
    assertEquals(
      lines.filter((l) => l.includes("ignoring lease of another backend type subnet=10.5.3.0/24"))
        .length,
      1,
    );
    assertEquals(lines.filter((l) => l.includes("BackendData is not a JSON string")).length, 1);
    // A lease that turns into another type is removed.
    await be.handle([added(lease(5, "x"))]);
    await until("added", () => be.stats().peers === 1);
    await be.handle([added(lease(5, "x", "host-gw"))]);
    await until("removed", () => runner.calls.length === 2 && be.stats().peers === 0);
    assertEquals(runner.calls[1].req.command, REMOVE);
  });
  assertEquals(be.stats().ignored_leases, 3);
  assertEquals(be.stats().bad_leases, 1);
  await be.stop();
});

Deno.test("extension: events before start wait for PostStartupCommand", async () => {
  const runner = new FakeRunner((req) => req.command === "post" ? "hang" : ok());
  const be = backend(runner, { PostStartupCommand: "post" });
  await withLog(async () => {
    await be.handle([added(lease(3))]);
    const starting = be.start(own);
    await until("post running", () => runner.calls.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    assertEquals(runner.calls.length, 1, "no add before PostStartupCommand ended");
    runner.calls[0].exit(0);
    await starting;
    await until("add ran", () => runner.calls.length === 2);
    assertEquals(runner.calls[1].req.command, ADD);
  });
  await be.stop();
});
