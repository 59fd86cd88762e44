/**
 * The flanneld command line as a user meets it: version, help, and one clear line with
 * exit status 2 for every kind of bad flag.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { VERSION } from "../lib/core/version.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function flanneld(args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: r.code,
    stdout: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

Deno.test("--version and -version print the version to stderr and exit 0", async () => {
  for (const flag of ["--version", "-version", "-version=true"]) {
    const r = await flanneld([flag]);
    assertEquals(r.code, 0, flag);
    assertEquals(r.stderr.trim(), VERSION);
  }
});

Deno.test("-h prints every flag and exits 0", async () => {
  const r = await flanneld(["-h"]);
  assertEquals(r.code, 0);
  for (
    const f of [
      "-etcd-endpoints string",
      "-iface value",
      "-ip-masq",
      "-subnet-lease-renew-margin int",
      "-healthz-port int",
    ]
  ) {
    assertStringIncludes(r.stderr, f);
  }
});

Deno.test("bad flags: one line, exit 2", async () => {
  const cases: [string[], Record<string, string>, string][] = [
    [["--no-such-flag"], {}, "flag provided but not defined: -no-such-flag"],
    [["-etcd-endpoints"], {}, "flag needs an argument: -etcd-endpoints"],
    [["-subnet-lease-renew-margin=0"], {}, "must be between 1 and 1439"],
    [["-healthz-port", "http"], {}, 'invalid value "http" for flag -healthz-port'],
    [["-ip-masq=maybe"], {}, 'invalid boolean value "maybe" for -ip-masq'],
    [[], { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "2000" }, "FLANNELD_SUBNET_LEASE_RENEW_MARGIN"],
    [["--etcd-endpoints=127.0.0.1:2379"], {}, "is not a URL (want http://host:port)"],
    [["--etcd-endpoints=unix:///x"], {}, "must use http or https"],
    [["-v=1", "extra"], {}, 'unexpected argument "extra"'],
  ];
  for (const [args, env, want] of cases) {
    const r = await flanneld(args, env);
    assertEquals(r.code, 2, `${args.join(" ")} → ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, `one line for ${args.join(" ")}: ${r.stderr}`);
    assertStringIncludes(lines[0], want);
    assert(lines[0].startsWith("flanneld: "));
  }
});
