/**
 * flanneld: flags and wiring only. The work is in lib/ (control plane, backends) and
 * ffi/ (libc, TUN, netlink).
 * @module
 */

import { FlagError, type FlagValues, parseFlags, usage } from "./lib/values/flags.ts";
import { createEtcdClient, parseEndpoints } from "./lib/subnet/etcd_store.ts";
import { type DaemonState, runDaemon } from "./lib/daemon/daemon.ts";
import { startHealth } from "./lib/daemon/health/start.ts";
import { sdNotify } from "./ffi/sd_notify.ts";
import { startMemoryLog } from "./lib/daemon/health/memory.ts";
import { selectExternalInterface } from "./lib/values/iface.ts";
import { logger, setVerbosity } from "./lib/core/log.ts";
import { DEFAULT_ENV_FILE, reloadVerbosity } from "./lib/daemon/log_reload.ts";
import { VERSION } from "./lib/core/version.ts";

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
    if (p.positionals.length > 0) {
      fail(`unexpected argument ${JSON.stringify(p.positionals[0])} (flags only; see -h)`);
    }
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
  if (f["kube-subnet-mgr"]) {
    fail("--kube-subnet-mgr is not supported: this flanneld uses etcd only", 1);
  }
  let endpoints: string[];
  try {
    endpoints = parseEndpoints(f["etcd-endpoints"] as string);
  } catch (e) {
    fail((e as Error).message);
  }
  const etcdOptions = {
    endpoints,
    keyFile: f["etcd-keyfile"] as string,
    certFile: f["etcd-certfile"] as string,
    caFile: f["etcd-cafile"] as string,
    username: f["etcd-username"] as string,
    password: f["etcd-password"] as string,
  };
  let client;
  try {
    client = createEtcdClient(etcdOptions);
  } catch (e) {
    fail((e as Error).message, 1);
  }

  const abort = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      log.info(`received ${sig}`);
      sdNotify("STOPPING=1");
      abort.abort();
    });
  }
  // SIGHUP (systemctl reload): log level from the EnvironmentFile; without FLANNELD_V there,
  // what a restart would give (-v on the command line, else 0).
  const envFile = Deno.env.get("FLANNELD_ENV_FILE") || DEFAULT_ENV_FILE;
  const argvLevel = parseFlags(Deno.args, {}).values["v"] as number;
  Deno.addSignalListener("SIGHUP", () => void reloadVerbosity(envFile, argvLevel));
  log.info("starting flanneld", {
    version: VERSION,
    endpoints: endpoints.join(","),
    prefix: f["etcd-prefix"],
  });
  startMemoryLog(log); // FLANNEL_MEMORY_LOG_SECONDS or -v=2
  const state: DaemonState = { subnetEnvWritten: false };
  const health = startHealth({
    // Own connection: probe timeouts must not trip the daemon client's circuit breaker.
    probeClient: () => createEtcdClient({ ...etcdOptions, callTimeoutMs: 2000 }),
    prefix: f["etcd-prefix"] as string,
    hostname: f["healthz-ip"] as string,
    port: f["healthz-port"] as number,
    state,
  });
  const code = await runDaemon(
    {
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
      reconcileIntervalSeconds: f["reconcile-interval"] as number,
      rules: {
        ipMasq: f["ip-masq"] as boolean,
        forwardRules: f["iptables-forward-rules"] as boolean,
        fullyRandomDisable: f["ip-masq-fully-random-disable"] as boolean,
        resyncSeconds: f["iptables-resync"] as number,
      },
    },
    abort.signal,
    state,
  );
  await health.stop();
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
