/**
 * The etcd client against a real etcd that demands TLS client certificates, and one that
 * demands a username and password: our client leases a subnet through both, and the daemon
 * given a wrong password says so in one clear line instead of a stack trace or a flood.
 *
 * Wrong credentials are not fatal, by decision: the daemon keeps retrying (quietly, with a
 * reminder every 30 s), because the fix is usually made on the etcd side (adding the user,
 * its role or password) and a running daemon then proceeds without a restart, which the
 * test shows; a supervisor restart loop would only multiply the same line.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { hostManager, registryFor } from "./helpers/control.ts";
import { sleep, until } from "./helpers/wait.ts";
import { LogProcess } from "./helpers/log_process.ts";
import { EtcdServer } from "./helpers/etcd.ts";
import { makeTestPKI } from "./helpers/tls_certs.ts";
import { EtcdStore } from "../lib/subnet/etcd_store.ts";
import { formatNet4 } from "../lib/core/ip.ts";
import { SubnetRegistry } from "../lib/subnet/registry.ts";

const PREFIX = "/coreos.com/network";
const CONFIG = JSON.stringify({ Network: "10.5.0.0/16", Backend: { Type: "alloc" } });
const MAIN = new URL("../main.ts", import.meta.url).pathname;

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Changes a user's password (etcdctl reads it from stdin), authenticated as `as`. */
async function setPassword(
  etcd: EtcdServer,
  as: string[],
  user: string,
  password: string,
): Promise<void> {
  const p = new Deno.Command("etcdctl", {
    args: [`--endpoints=${etcd.endpoint}`, ...as, "user", "passwd", user, "--interactive=false"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(password + "\n"));
  await w.close();
  const r = await p.output();
  if (!r.success) throw new Error(`etcdctl user passwd: ${new TextDecoder().decode(r.stderr)}`);
}

/** Acquires a lease through `registry` and returns its key as etcd has it. */
async function leaseThrough(registry: SubnetRegistry, ip: string): Promise<string> {
  const m = hostManager(registry, CONFIG, ip);
  const l = await m.acquire();
  m.stop();
  return `${formatNet4(l.subnet)} as ${registry.keyOf(l.subnet)}`;
}

Deno.test({
  name: "etcd TLS: client certificate required; our client leases a subnet over https",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const pki = await makeTestPKI();
  await using etcd = await EtcdServer.start({
    scheme: "https",
    extraArgs: [
      `--cert-file=${pki.serverCert}`,
      `--key-file=${pki.serverKey}`,
      "--client-cert-auth",
      `--trusted-ca-file=${pki.caCert}`,
    ],
    ctlArgs: [`--cacert=${pki.caCert}`, `--cert=${pki.clientCert}`, `--key=${pki.clientKey}`],
  });
  const client = new EtcdStore({
    endpoints: [etcd.endpoint],
    keyFile: pki.clientKey,
    certFile: pki.clientCert,
    caFile: pki.caCert,
    callTimeoutMs: 3000,
  });
  // Without a client certificate the server refuses the handshake; under a name the
  // certificate does not carry (it has IP:127.0.0.1 only) we refuse the server.
  const anonymous = new EtcdStore({
    endpoints: [etcd.endpoint],
    caFile: pki.caCert,
    callTimeoutMs: 3000,
  });
  const misnamed = new EtcdStore({
    endpoints: [etcd.endpoint.replace("127.0.0.1", "localhost")],
    keyFile: pki.clientKey,
    certFile: pki.clientCert,
    caFile: pki.caCert,
    callTimeoutMs: 3000,
  });
  try {
    const got = await leaseThrough(new SubnetRegistry(client, PREFIX), "192.168.0.1");
    const keys = await etcd.ctl("get", "--prefix", `${PREFIX}/subnets`, "--keys-only");
    assertStringIncludes(keys, got.split(" as ")[1]);
    const refused = await anonymous.get(`${PREFIX}/config`).then(
      () => "answered",
      (e) => String(e),
    );
    // Refused as a TLS failure, whichever the server's refusal reached us as (an alert or,
    // more often, a dropped socket).
    assertStringIncludes(refused, `TLS with etcd at ${etcd.endpoint} failed`);
    const unverified = await misnamed.get(`${PREFIX}/config`).then(
      () => "answered",
      (e) => String(e),
    );
    assert(unverified !== "answered", "a server certificate without the host's name was accepted");
    // The same through the daemon's flags: with the client certificate it reaches etcd (and
    // waits for a config under --etcd-prefix); without it, one plain line about TLS.
    const daemon = async (flags: string[], want: string) => {
      const p = new LogProcess(Deno.execPath(), [
        "run",
        "-A",
        MAIN,
        `--etcd-endpoints=${etcd.endpoint}`,
        "--etcd-prefix=/tls/network/",
        `--etcd-cafile=${pki.caCert}`,
        ...flags,
      ]);
      try {
        await until(want, () => p.lines.some((l) => l.includes(want)), 15_000, 100);
      } finally {
        assertEquals((await p.stop()).code, 0, p.lines.join("\n"));
      }
      return p.lines.find((l) => l.includes(want))!;
    };
    await daemon(
      [`--etcd-certfile=${pki.clientCert}`, `--etcd-keyfile=${pki.clientKey}`],
      "flannel config not found in etcd store at /tls/network/config",
    );
    const tlsLine = await daemon(
      [],
      `cannot read network config: TLS with etcd at ${etcd.endpoint}`,
    );
    assert(!/UNAVAILABLE|Resolution note/.test(tlsLine), tlsLine);
    assertStringIncludes(tlsLine, "--etcd-certfile and --etcd-keyfile");
    console.log(
      `TLS: leased ${got} with a client certificate; without one: ${
        refused.split("\n")[0].slice(0, 160)
      }; daemon without one: ${tlsLine}; ` +
        `as "localhost": ${unverified.split("\n")[0].slice(0, 120)}`,
    );
  } finally {
    client.close();
    anonymous.close();
    misnamed.close();
    await Deno.remove(pki.dir, { recursive: true });
  }
});

Deno.test({
  name:
    "etcd auth: right password leases; wrong password → one clear line, retries until fixed in etcd",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using etcd = await EtcdServer.start();
  const dir = await Deno.makeTempDir({ prefix: "flannel-auth-" });
  const root = ["--user", "root:s3cret"];
  await etcd.ctl("put", `${PREFIX}/config`, CONFIG);
  await etcd.ctl("user", "add", "root:s3cret");
  await etcd.ctl("auth", "enable");
  // Auth is on: anonymous requests are refused.
  const { store: anon } = registryFor(etcd);
  const good = new EtcdStore({
    endpoints: [etcd.endpoint],
    username: "root",
    password: "s3cret",
    callTimeoutMs: 3000,
  });
  try {
    const anonErr = await anon.get(`${PREFIX}/config`).then(
      () => "answered",
      (e) => String(e),
    );
    assert(anonErr !== "answered", "etcd answered without credentials");
    const got = await leaseThrough(new SubnetRegistry(good, PREFIX), "192.168.0.2");
    assertStringIncludes(
      await etcd.ctl(...root, "get", "--prefix", `${PREFIX}/subnets`, "--keys-only"),
      got.split(" as ")[1],
    );

    const runFor = 5000;
    const child = new LogProcess(Deno.execPath(), [
      "run",
      "-A",
      MAIN,
      `--etcd-endpoints=${etcd.endpoint}`,
      "--etcd-username=root",
      "--etcd-password=wrong",
      `--subnet-file=${dir}/subnet.env`,
    ]);
    const lines = child.lines;
    try {
      await sleep(runFor); // the daemon runs with the wrong password this long
      const authLines = lines.filter((l) => /username or password/i.test(l));
      const errorLines = lines.filter((l) => l.startsWith("E"));
      console.log(
        `wrong password, ${
          runFor / 1000
        } s: ${lines.length} lines, ${authLines.length} naming authentication:\n  ${
          lines.join("\n  ")
        }`,
      );
      assert(
        authLines.length >= 1 && authLines.length <= 3,
        `lines naming authentication: ${authLines.length}\n${lines.join("\n")}`,
      );
      assert(errorLines.length <= 3, `error lines: ${errorLines.length}\n${lines.join("\n")}`);
      assert(!lines.some((l) => /^\s+at /.test(l)), `a stack trace:\n${lines.join("\n")}`);
      assert(
        authLines.some((l) =>
          l.includes(`etcd at ${etcd.endpoint} refused the username or password`)
        ),
        "the line says what is wrong",
      );
      assert(!(await exists(`${dir}/subnet.env`)), "no subnet.env without etcd");
      assert(await child.running(), "the daemon keeps running (retrying)");

      // The operator fixes it on the etcd side: the running daemon gets through, no restart.
      // (The config is removed first, so that the daemon then waits for it instead of
      // going on to pick an interface in this namespace.)
      await etcd.ctl(...root, "del", `${PREFIX}/config`);
      const t0 = Date.now();
      await setPassword(etcd, root, "root", "wrong");
      await until(
        "the daemon past authentication",
        () => lines.some((l) => l.includes("flannel config not found")),
        15_000,
        100,
      );
      console.log(
        `password fixed in etcd: the daemon got through ${
          ((Date.now() - t0) / 1000).toFixed(1)
        } s later, without a restart`,
      );
    } finally {
      const status = await child.stop();
      assertEquals(status.code, 0, `clean exit on SIGTERM:\n${lines.join("\n")}`);
    }
  } finally {
    anon.close();
    good.close();
    await Deno.remove(dir, { recursive: true });
  }
});
