/**
 * dist/mk-docker-opts.sh under dash and bash: every option against the exact output, the
 * error cases, and the routing-table check in a private network namespace (root only).
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { deleteNetnsSync, ip, isRoot, must, run } from "./helpers/netns.ts";

const SCRIPT = new URL("../dist/mk-docker-opts.sh", import.meta.url).pathname;
const SHELLS = ["dash", "bash"];
const SUBNET_ENV =
  "FLANNEL_NETWORK=10.254.0.0/16\nFLANNEL_SUBNET=10.254.77.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";

interface Outcome {
  code: number;
  stderr: string;
  /** The Docker env file afterwards, null if absent. */
  out: string | null;
}

/**
 * Runs the script with `sh` on a subnet.env holding `env`, writing to a fresh output file
 * (pre-filled with `previous` if given). `prefix` runs it inside e.g. `ip netns exec NS`.
 */
async function mkDockerOpts(
  sh: string,
  args: string[],
  opts: { env?: string; vars?: Record<string, string>; previous?: string; prefix?: string[] } = {},
): Promise<Outcome> {
  const dir = await Deno.makeTempDir({ prefix: "flmk-" });
  try {
    await Deno.writeTextFile(`${dir}/subnet.env`, opts.env ?? SUBNET_ENV);
    if (opts.previous !== undefined) await Deno.writeTextFile(`${dir}/docker.env`, opts.previous);
    const argv = [
      ...(opts.prefix ?? []),
      sh,
      SCRIPT,
      "-f",
      `${dir}/subnet.env`,
      "-d",
      `${dir}/docker.env`,
      ...args,
    ];
    const r = await run(argv[0], argv.slice(1), { env: opts.vars });
    let out: string | null = null;
    try {
      out = await Deno.readTextFile(`${dir}/docker.env`);
    } catch { /* not written */ }
    return { code: r.code, stderr: r.stderr, out };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const BIP = 'DOCKER_OPT_BIP="--bip=10.254.77.1/24"';
const IPMASQ = 'DOCKER_OPT_IPMASQ="--ip-masq=false"';
const MTU = 'DOCKER_OPT_MTU="--mtu=1472"';
const lines = (...l: string[]) => l.map((x) => `${x}\n`).join("");

for (const sh of SHELLS) {
  Deno.test(`mk-docker-opts.sh (${sh}): options and output`, async () => {
    const cases: [string, string[], Parameters<typeof mkDockerOpts>[2], string][] = [
      [
        "no -i/-c: both",
        [],
        {},
        lines(BIP, IPMASQ, MTU, 'DOCKER_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
      ["-i", ["-i"], {}, lines(BIP, IPMASQ, MTU)],
      ["-c", ["-c"], {}, lines('DOCKER_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"')],
      [
        "-i -c",
        ["-i", "-c"],
        {},
        lines(BIP, IPMASQ, MTU, 'DOCKER_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
      [
        "-k",
        ["-c", "-k", "MY_OPTS"],
        {},
        lines('MY_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
      ["-m", ["-m"], {}, lines(BIP, MTU, 'DOCKER_OPTS=" --bip=10.254.77.1/24 --mtu=1472"')],
      ["-m ignores a bad FLANNEL_IPMASQ", ["-m", "-i"], {
        env: "FLANNEL_SUBNET=10.254.77.1/24\nFLANNEL_IPMASQ=maybe\n",
      }, lines(BIP)],
      [
        "FLANNEL_IPMASQ=false → --ip-masq=true",
        ["-i"],
        { env: SUBNET_ENV.replace("IPMASQ=true", "IPMASQ=false") },
        lines(BIP, 'DOCKER_OPT_IPMASQ="--ip-masq=true"', MTU),
      ],
      [
        "no FLANNEL_MTU, no FLANNEL_IPMASQ",
        [],
        { env: "FLANNEL_SUBNET=10.254.77.1/24\n" },
        lines(BIP, 'DOCKER_OPTS=" --bip=10.254.77.1/24"'),
      ],
      [
        "existing DOCKER_OPTS is prepended",
        ["-c"],
        { vars: { DOCKER_OPTS: "--debug" } },
        lines('DOCKER_OPTS="--debug  --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
      [
        "existing -k variable is prepended",
        ["-c", "-k", "X"],
        { vars: { X: "-D" } },
        lines('X="-D  --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
      [
        "output is truncated",
        ["-c"],
        { previous: "OLD=1\nOLDER=2\n" },
        lines('DOCKER_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      ],
    ];
    for (const [name, args, opts, want] of cases) {
      const r = await mkDockerOpts(sh, args, opts);
      assertEquals(r.code, 0, `${name}: ${r.stderr}`);
      assertEquals(r.out, want, name);
    }
  });

  Deno.test(`mk-docker-opts.sh (${sh}): errors exit 1`, async () => {
    const bad = await mkDockerOpts(sh, [], {
      env: "FLANNEL_SUBNET=10.254.77.1/24\nFLANNEL_IPMASQ=yes\n",
      previous: "KEEP=1\n",
    });
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "Invalid value of FLANNEL_IPMASQ: yes");
    assertEquals(bad.out, "KEEP=1\n", "nothing written on error");
    for (const args of [["-h"], ["-?"], ["-x"], ["-k"], ["extra"]]) {
      const r = await mkDockerOpts(sh, args);
      assertEquals(r.code, 1, args.join(" "));
      assertStringIncludes(r.stderr, "usage: mk-docker-opts.sh", args.join(" "));
    }
    const badKey = await mkDockerOpts(sh, ["-k", "A;B"]);
    assertEquals(badKey.code, 1);
    assertStringIncludes(badKey.stderr, "invalid key name");
    const missing = await run(sh, [
      SCRIPT,
      "-f",
      "/nonexistent/subnet.env",
      "-d",
      "/nonexistent/out",
    ]);
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.stderr, "cannot read flannel env file /nonexistent/subnet.env");
  });
}

Deno.test({
  name: "mk-docker-opts.sh: default -f and -d paths (private mount namespace)",
  ignore: !isRoot,
}, async () => {
  for (const sh of SHELLS) {
    // A tmpfs over /run in a mount namespace of its own: the real /run is never touched.
    const script =
      `mount -t tmpfs flmk /run && mkdir -p /run/flannel && printf '%s' "$1" >/run/flannel/subnet.env &&
      ${sh} ${SCRIPT} -c && cat /run/docker_opts.env`;
    const r = await run("unshare", [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      script,
      "sh",
      SUBNET_ENV,
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(
      r.stdout,
      lines('DOCKER_OPTS=" --bip=10.254.77.1/24 --ip-masq=false --mtu=1472"'),
      sh,
    );
  }
});

Deno.test({
  name: "mk-docker-opts.sh: refuses when a route via a gateway exists for the subnet (netns)",
  ignore: !isRoot,
}, async () => {
  const ns = `flmk-${crypto.randomUUID().slice(0, 8)}`;
  must(await run("ip", ["netns", "add", ns]), `ip netns add ${ns}`);
  try {
    await ip(ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1");
    await ip(ns, "addr", "add", "192.168.77.1/24", "dev", "d0");
    await ip(ns, "link", "set", "d0", "up");
    await ip(ns, "route", "add", "10.254.77.0/24", "via", "192.168.77.2");
    await ip(ns, "route", "add", "10.254.78.0/24", "dev", "d0");
    const inNs = ["ip", "netns", "exec", ns];
    for (const sh of SHELLS) {
      const r = await mkDockerOpts(sh, ["-c"], { prefix: inNs });
      assertEquals(r.code, 1, `${sh}: ${r.stderr}`);
      assertStringIncludes(
        r.stderr,
        "already has a route via a gateway for the subnet 10.254.77.0/24",
      );
      assert(r.out?.startsWith("DOCKER_OPTS="), "the options are written before the check");
      // A device route (no `via`) is what flannel itself installs: no objection.
      const ok = await mkDockerOpts(sh, ["-c"], {
        prefix: inNs,
        env: SUBNET_ENV.replaceAll(".77.", ".78."),
      });
      assertEquals(ok.code, 0, `${sh}: ${ok.stderr}`);
      // No route for the subnet at all.
      const other = await mkDockerOpts(sh, ["-c"], {
        prefix: inNs,
        env: SUBNET_ENV.replaceAll(".77.", ".79."),
      });
      assertEquals(other.code, 0, `${sh}: ${other.stderr}`);
    }
  } finally {
    deleteNetnsSync(ns);
  }
});
