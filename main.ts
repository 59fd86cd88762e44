/**
 * flanneld: flags and wiring only. The work is in lib/ (control plane, backends) and
 * ffi/ (libc, TUN, netlink).
 * @module
 */

import { FlagError, type FlagValues, parseFlags, usage } from "./lib/values/flags.ts";
import { EtcdStore, parseEndpoints } from "./lib/subnet/etcd_store.ts";
import { type DaemonState, runDaemon } from "./lib/daemon/daemon.ts";
import { startHealth } from "./lib/daemon/health/start.ts";
import { sdNotify } from "./ffi/sd_notify.ts";
import { startMemoryLog } from "./lib/daemon/health/memory.ts";
import { selectExternalInterface } from "./lib/values/iface.ts";
import { logger, parseVmodule, setModuleVerbosity, setVerbosity } from "./lib/core/log.ts";
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
  setVerbosity(f["v"]);
  setModuleVerbosity(parseVmodule(f["vmodule"])); // checked while parsing the flags
  let endpoints: string[];
  try {
    endpoints = parseEndpoints(f["etcd-endpoints"]);
  } catch (e) {
    fail((e as Error).message);
  }
  const etcdOptions = {
    endpoints,
    keyFile: f["etcd-keyfile"],
    certFile: f["etcd-certfile"],
    caFile: f["etcd-cafile"],
    username: f["etcd-username"],
    password: f["etcd-password"],
  };
  let store: EtcdStore;
  try {
    store = new EtcdStore(etcdOptions);
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
  const argvLevel = parseFlags(Deno.args, {}).values["v"];
  Deno.addSignalListener("SIGHUP", () => void reloadVerbosity(envFile, argvLevel));
  log.info("starting flanneld", {
    version: VERSION,
    endpoints: endpoints.join(","),
    prefix: f["etcd-prefix"],
  });
  startMemoryLog(log); // FLANNEL_MEMORY_LOG_SECONDS or -v=2
  const state: DaemonState = { subnetEnvWritten: false };
  const health = startHealth({
    // Own connection: a wedged daemon connection must not fool the probe, nor the probe's
    // short deadlines disturb the daemon's calls.
    probeStore: () => new EtcdStore({ ...etcdOptions, callTimeoutMs: 2000 }),
    prefix: f["etcd-prefix"],
    hostname: f["healthz-ip"],
    port: f["healthz-port"],
    state,
  });
  const code = await runDaemon(
    {
      store,
      prefix: f["etcd-prefix"],
      subnetFile: f["subnet-file"],
      ipMasq: f["ip-masq"],
      leaseTTLSeconds: f["subnet-lease-ttl"],
      renewMarginMinutes: f["subnet-lease-renew-margin"],
      selectInterface: (cfg) =>
        selectExternalInterface({
          iface: f["iface"],
          ifaceRegex: f["iface-regex"],
          ifaceCanReach: f["iface-can-reach"],
          publicIP: f["public-ip"],
          publicIPv6: f["public-ipv6"],
          enableIPv4: cfg.enableIPv4,
          enableIPv6: cfg.enableIPv6,
        }),
      reconcileIntervalSeconds: f["reconcile-interval"],
      rules: {
        ipMasq: f["ip-masq"],
        forwardRules: f["iptables-forward-rules"],
        fullyRandomDisable: f["ip-masq-fully-random-disable"],
        resyncSeconds: f["iptables-resync"],
      },
      blackholeRoute: f["ip-blackhole-route"]
        ? { intervalSeconds: f["iptables-resync"] }
        : undefined,
    },
    abort.signal,
    state,
  );
  await health.stop();
  store.close();
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
