/**
 * flanneld: flags and wiring only. The work is in lib/ (control plane, backends) and
 * ffi/ (libc, TUN, netlink).
 * @module
 */

import { FlagError, type FlagValues, parseFlags, usage } from "./lib/flags.ts";
import { createEtcdClient, parseEndpoints } from "./lib/etcd/client.ts";
import { runDaemon } from "./lib/daemon.ts";
import { selectExternalInterface } from "./lib/iface.ts";
import { logger, setVerbosity } from "./lib/log.ts";
import { VERSION } from "./lib/version.ts";

const log = logger("main");

function fail(msg: string, code = 2): never {
  console.error(`flanneld: ${msg}`);
  Deno.exit(code);
}

function parse(): FlagValues {
  try {
    const p = parseFlags(Deno.args, Deno.env.toObject());
    if (p.help) {
      Deno.stderr.writeSync(new TextEncoder().encode(usage()));
      Deno.exit(0);
    }
    if (p.positionals.length > 0) fail(`unexpected argument ${JSON.stringify(p.positionals[0])} (flags only; see -h)`);
    return p.values;
  } catch (e) {
    if (e instanceof FlagError) fail(`${e.message} (see -h)`);
    throw e;
  }
}

async function main(): Promise<number> {
  const f = parse();
  if (f["version"]) {
    console.error(VERSION); // upstream prints the version to stderr
    return 0;
  }
  setVerbosity(f["v"] as number);
  if (f["kube-subnet-mgr"]) fail("--kube-subnet-mgr is not supported: this flanneld uses etcd only", 1);
  let endpoints: string[];
  try {
    endpoints = parseEndpoints(f["etcd-endpoints"] as string);
  } catch (e) {
    fail((e as Error).message);
  }
  let client;
  try {
    client = createEtcdClient({
      endpoints,
      keyFile: f["etcd-keyfile"] as string,
      certFile: f["etcd-certfile"] as string,
      caFile: f["etcd-cafile"] as string,
      username: f["etcd-username"] as string,
      password: f["etcd-password"] as string,
    });
  } catch (e) {
    fail((e as Error).message, 1);
  }

  const abort = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      log.info(`received ${sig}`);
      abort.abort();
    });
  }
  log.info("starting flanneld", { version: VERSION, endpoints: endpoints.join(","), prefix: f["etcd-prefix"] });
  const code = await runDaemon({
    client,
    prefix: f["etcd-prefix"] as string,
    subnetFile: f["subnet-file"] as string,
    ipMasq: f["ip-masq"] as boolean,
    leaseTTLSeconds: f["subnet-lease-ttl"] as number,
    renewMarginMinutes: f["subnet-lease-renew-margin"] as number,
    selectInterface: (cfg) =>
      selectExternalInterface({
        iface: f["iface"] as string[],
        ifaceRegex: f["iface-regex"] as string[],
        ifaceCanReach: f["iface-can-reach"] as string,
        publicIP: f["public-ip"] as string,
        publicIPv6: f["public-ipv6"] as string,
        enableIPv4: cfg.enableIPv4,
        enableIPv6: cfg.enableIPv6,
      }),
    backendOptions: { reconcileIntervalSeconds: f["reconcile-interval"] },
  }, abort.signal);
  client.close();
  return code;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    log.error(`fatal: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
