/**
 * install.sh (run by dash) against a local release directory over file:// URLs, everything
 * under temp dirs or a staging root; `--from-source` without a denort runtime (the
 * launcher, which then runs a 2-host udp cluster with --ip-masq and the health server with
 * exactly the compiled binary's permissions); `deno task compile` failing clearly without
 * a runtime.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { Cluster } from "./helpers/cluster.ts";
import { isRoot, nsExec, run } from "./helpers/netns.ts";
import { VERSION } from "../lib/core/version.ts";

const REPO = new URL("../", import.meta.url).pathname;
const INSTALL = `${REPO}install.sh`;
const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/**
 * Our environment without DENORT_BIN/DESTDIR, and with https through a dead proxy except for
 * the npm registry: dl.deno.land fails here even on a machine that could reach it.
 */
function testEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  delete env.DESTDIR;
  for (const k of ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]) delete env[k];
  return {
    ...env,
    HTTPS_PROXY: "http://127.0.0.1:9",
    NO_PROXY: "registry.npmjs.org",
    NO_COLOR: "1",
    ...extra,
  };
}

/** Runs `cmd args…` in `cwd` with {@link testEnv}; stdout and stderr apart. */
async function runClean(cmd: string, args: string[], env: Record<string, string>, cwd: string) {
  const r = await new Deno.Command(cmd, {
    args,
    env: testEnv(env),
    clearEnv: true,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: r.code, stdout: d.decode(r.stdout), stderr: d.decode(r.stderr) };
}

/** install.sh under dash; `out` is stdout followed by stderr. */
async function sh(args: string[], env: Record<string, string> = {}) {
  const r = await runClean("dash", [INSTALL, ...args], env, "/");
  return { code: r.code, out: r.stdout + r.stderr };
}

/** `deno task compile args…` in the repository. */
function compileTask(args: string[], env: Record<string, string>) {
  return runClean(Deno.execPath(), ["task", "compile", ...args], env, REPO);
}

async function sha256(path: string): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every file (not directory) under `dir`, relative, sorted. */
function files(dir: string, rel = ""): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(`${dir}/${rel}`)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) out.push(...files(dir, p));
      else out.push(p);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/**
 * A release directory in GitHub's layout (`latest/download/F`, `download/v9.9.9/F`).
 * TEST DATA: the "binaries" are shell-script stand-ins written here, not flanneld builds.
 */
async function makeRelease(dir: string): Promise<string> {
  const rel = `${dir}/download/v9.9.9`;
  await Deno.mkdir(rel, { recursive: true });
  for (const t of TARGETS) {
    await Deno.writeTextFile(
      `${rel}/flanneld-${t}`,
      `#!/bin/sh\n# TEST DATA: stand-in for a release binary (tests/install_test.ts), not flanneld.\necho "9.9.9-test ${t}" >&2\n`,
    );
  }
  for (const name of ["mk-docker-opts.sh", "flanneld.service", "flanneld.env.example"]) {
    await Deno.copyFile(`${REPO}dist/${name}`, `${rel}/${name}`);
  }
  const sums = [];
  for (const e of [...Deno.readDirSync(rel)].map((e) => e.name).sort()) {
    sums.push(`${await sha256(`${rel}/${e}`)}  ${e}\n`);
  }
  await Deno.writeTextFile(`${rel}/SHA256SUMS`, sums.join(""));
  await Deno.mkdir(`${dir}/latest`, { recursive: true });
  await Deno.symlink(rel, `${dir}/latest/download`);
  return rel;
}

/** A temp dir with a release in `rel/` and an empty staging root `root/`, removed after `fn`. */
async function withRelease(fn: (d: { root: string; rel: string; url: string }) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "flinst-" });
  try {
    const rel = await makeRelease(`${dir}/rel`);
    await fn({ root: `${dir}/root`, rel, url: `file://${dir}/rel` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const INSTALLED = [
  "etc/default/flanneld",
  "etc/systemd/system/flanneld.service",
  "usr/local/bin/flanneld",
  "usr/local/bin/mk-docker-opts.sh",
];

Deno.test("install.sh: installs a release from file:// into a staging root, upgrades, uninstalls", async () => {
  await withRelease(async ({ root, rel, url }) => {
    const env = { FLANNELD_RELEASE_URL: url, FLANNELD_ARCH: "x86_64" };
    const r = await sh(["--root", root], env);
    assertEquals(r.code, 0, r.out);
    assertEquals(files(root), INSTALLED, "no temp files left behind");
    const bin = `${root}/usr/local/bin/flanneld`;
    assertEquals(
      await Deno.readTextFile(bin),
      await Deno.readTextFile(`${rel}/flanneld-x86_64-unknown-linux-gnu`),
    );
    assertEquals((await Deno.stat(bin)).mode! & 0o777, 0o755);
    assertEquals(
      await Deno.readTextFile(`${root}/etc/systemd/system/flanneld.service`),
      await Deno.readTextFile(`${rel}/flanneld.service`),
    );
    assertStringIncludes(r.out, "next: set the flags in");

    // Upgrade to a given version on arm64: the binary is replaced, the edited env file kept.
    await Deno.writeTextFile(`${root}/etc/default/flanneld`, "FLANNELD_IFACE=eth1\n");
    const up = await sh(["--root", root, "--version", "9.9.9"], { ...env, FLANNELD_ARCH: "arm64" });
    assertEquals(up.code, 0, up.out);
    assertStringIncludes(await Deno.readTextFile(bin), "aarch64-unknown-linux-gnu");
    assertEquals(await Deno.readTextFile(`${root}/etc/default/flanneld`), "FLANNELD_IFACE=eth1\n");
    assertStringIncludes(up.out, "kept the existing");
    assertStringIncludes(up.out, "systemctl restart flanneld");

    const un = await sh(["--root", root, "--uninstall"]);
    assertEquals(un.code, 0, un.out);
    assertEquals(files(root), ["etc/default/flanneld"], "only the env file is kept");
    const purge = await sh(["--root", root, "--uninstall", "--purge"]);
    assertEquals(purge.code, 0, purge.out);
    assertEquals(files(root), []);
  });
});

Deno.test("install.sh: --prefix, --no-systemd, --dry-run, DESTDIR", async () => {
  await withRelease(async ({ root, url }) => {
    const env = { FLANNELD_RELEASE_URL: url, FLANNELD_ARCH: "amd64" };
    const dry = await sh(["--root", root, "--dry-run"], env);
    assertEquals(dry.code, 0, dry.out);
    assertStringIncludes(dry.out, "would install");
    assertEquals(files(root), []);

    const r = await sh(["--prefix", "/opt/fl", "--no-systemd"], { ...env, DESTDIR: root });
    assertEquals(r.code, 0, r.out);
    assertEquals(files(root), ["opt/fl/bin/flanneld", "opt/fl/bin/mk-docker-opts.sh"]);

    const unit = await sh(["--prefix", "/opt/fl", "--root", root], env);
    assertEquals(unit.code, 0, unit.out);
    const text = await Deno.readTextFile(`${root}/etc/systemd/system/flanneld.service`);
    assertStringIncludes(text, "ExecStart=/opt/fl/bin/flanneld");
    assert(!text.includes("/usr/local/bin/"), "unit follows --prefix");
  });
});

Deno.test("install.sh: bad checksum, failed download, unsupported OS/arch: refused, nothing installed", async () => {
  await withRelease(async ({ root, rel, url }) => {
    const env = { FLANNELD_RELEASE_URL: url, FLANNELD_ARCH: "x86_64" };
    // An installed binary must survive a failed upgrade untouched.
    const prev = `${root}/usr/local/bin/flanneld`;
    await Deno.mkdir(`${root}/usr/local/bin`, { recursive: true });
    await Deno.writeTextFile(prev, "previous\n");

    const good = await Deno.readTextFile(`${rel}/flanneld-x86_64-unknown-linux-gnu`);
    await Deno.writeTextFile(`${rel}/flanneld-x86_64-unknown-linux-gnu`, good + "# tampered\n");
    const bad = await sh(["--root", root], env);
    assert(bad.code !== 0);
    assertStringIncludes(bad.out, "checksum mismatch for flanneld-x86_64-unknown-linux-gnu");
    assertEquals(files(root), ["usr/local/bin/flanneld"]);
    assertEquals(await Deno.readTextFile(prev), "previous\n");
    await Deno.writeTextFile(`${rel}/flanneld-x86_64-unknown-linux-gnu`, good);

    for (
      const [args, extra, want] of [
        [["--version", "1.2.3"], {}, "download failed"],
        [[], { FLANNELD_RELEASE_URL: `${url}/nowhere` }, "download failed"],
        [[], { FLANNELD_RELEASE_URL: "http://127.0.0.1:9/releases" }, "download failed"],
        [[], { FLANNELD_ARCH: "riscv64" }, "unsupported architecture 'riscv64'"],
        [[], { FLANNELD_ARCH: "armv7l" }, "unsupported architecture 'armv7l'"],
        [[], { FLANNELD_OS: "Darwin" }, "unsupported OS 'Darwin': flanneld runs on Linux only"],
        [["--bogus"], {}, "unknown option --bogus"],
      ] as [string[], Record<string, string>, string][]
    ) {
      const r = await sh(["--root", root, ...args], { ...env, ...extra });
      assert(r.code !== 0, `${args.join(" ")} ${JSON.stringify(extra)}`);
      assertStringIncludes(r.out, want);
      assertEquals(files(root), ["usr/local/bin/flanneld"], want);
    }
    await Deno.remove(`${rel}/flanneld.service`);
    const missing = await sh(["--root", root], env);
    assert(missing.code !== 0);
    assertStringIncludes(missing.out, "download failed");
    assertEquals(await Deno.readTextFile(prev), "previous\n");
  });
});

Deno.test("deno task compile without a denort runtime fails with one clear line", async () => {
  const before = files(`${REPO}dist`);
  for (
    const [env, want] of [
      [
        {},
        "compile: cannot obtain the denort runtime for x86_64-unknown-linux-gnu: set DENORT_BIN=/path/to/denort or run where dl.deno.land is reachable",
      ],
      [
        { DENORT_BIN: "/nonexistent/denort" },
        "cannot obtain the denort runtime for x86_64-unknown-linux-gnu (DENORT_BIN=/nonexistent/denort",
      ],
    ] as [Record<string, string>, string][]
  ) {
    const r = await compileTask([], env);
    const err = r.stderr;
    assert(r.code !== 0, err);
    assertStringIncludes(err, want);
    assert(!/Stack backtrace|^\s+at /m.test(err), `no stack trace: ${err}`);
  }
  // A DENORT_BIN that is no runtime yields no binary: the smoke test removes what it made.
  const r = await compileTask(["--target", `${Deno.build.arch}-unknown-linux-gnu`], {
    DENORT_BIN: "/bin/true",
  });
  assertEquals(r.code, 1);
  assertStringIncludes(r.stderr, "does not run");
  assertEquals(files(`${REPO}dist`), before, "no binary left in dist/");
});

Deno.test({
  name: "install.sh --from-source without a runtime: the launcher runs --version and a udp cluster",
  ignore: !isRoot,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "flinst-" });
  try {
    const prefix = `${dir}/prefix`;
    const r = await sh(["--from-source", REPO, "--prefix", prefix, "--no-systemd"]);
    assertEquals(r.code, 0, r.out);
    assertStringIncludes(r.out, "no denort runtime: installing a launcher");
    assertStringIncludes(r.out, `flanneld ${VERSION} is installed at ${prefix}/bin/flanneld`);
    const launcher = `${prefix}/bin/flanneld`;
    assertStringIncludes(
      await Deno.readTextFile(launcher),
      (await run(Deno.execPath(), ["run", `${REPO}dist/compile.ts`, "--print-permissions"])).stdout
        .trim(),
    );
    const v = await run(launcher, ["--version"]);
    assertEquals([v.code, v.stderr.trim()], [0, VERSION]);
    // The modules imported only when needed have their npm packages cached too (aws-vpc's SDK).
    assert(
      (await Deno.stat(
        `${prefix}/lib/flanneld/deno_dir/npm/registry.npmjs.org/@aws-sdk/client-ec2`,
      ))
        .isDirectory,
    );

    // The permissions are enough for the daemon: leases, subnet.env, TUN, netlink, Workers,
    // iptables, the health server.
    {
      await using c = await Cluster.create({
        hosts: 2,
        containersPerHost: 1,
        backend: "udp",
        daemonCommand: [launcher],
        daemonArgs: ["--ip-masq", "--healthz-ip=127.0.0.1", "--healthz-port=9180"],
      });
      const pairs = await c.pingAll({ count: 2, timeout: 2 });
      assertEquals(pairs.filter((p) => !p.result.ok).map((p) => `${p.from.name}→${p.to.name}`), []);
      const h0 = c.hosts[0].ns;
      assertStringIncludes(
        (await nsExec(h0, "iptables-save", ["-t", "nat"])).stdout,
        "flanneld masq",
      );
      const ready = await nsExec(h0, "curl", [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9180/readyz",
      ]);
      assertEquals(ready.stdout, "200", ready.stderr);
    }

    const un = await sh(["--uninstall", "--no-systemd", "--prefix", prefix]);
    assertEquals(un.code, 0, un.out);
    assertEquals(files(prefix), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
