/**
 * Command-line flags with upstream flanneld's names and defaults, accepted the way Go's
 * `flag` package accepts them: `-flag` and `--flag`, `-flag=v` and `-flag v`, booleans
 * only as `-flag` or `-flag=false`, parsing stops at the first non-flag argument, and a
 * flag not given falls back to the environment variable `FLANNELD_<NAME>`.
 *
 * Go's syntax is normalized to canonical `--name=value` tokens, which `node:util`'s
 * `parseArgs` then assigns with defaults and repeats.
 * @module
 */

import { parseArgs } from "node:util";
import { parseVmodule } from "../core/log.ts";

const KUBE = "Kubernetes mode is not supported: this flanneld uses etcd only";

/** Kinds of flag values. */
export type FlagKind = "string" | "bool" | "int" | "list" | "duration";

/** The value type of each kind. */
interface KindValue {
  string: string;
  bool: boolean;
  int: number;
  list: string[];
  duration: number;
}

/** One flag definition. */
export interface FlagDef {
  name: string;
  kind: FlagKind;
  default: KindValue[FlagKind];
  help: string;
  /**
   * Why the flag is refused when given with a value other than its default: upstream's
   * flags that have no meaning here fail with one line instead of being ignored.
   */
  unsupported?: string;
  /** Checks a string value; returns why it is invalid, or null. */
  check?: (v: string) => string | null;
  /** Inclusive bounds for ints (and durations, in seconds). */
  min?: number;
  max?: number;
}

/** Every flag we accept: upstream's plus ours, marked "(ours)". */
export const FLAGS = [
  {
    name: "etcd-endpoints",
    kind: "string",
    default: "http://127.0.0.1:4001,http://127.0.0.1:2379",
    help: "a comma-delimited list of etcd endpoints",
  },
  { name: "etcd-prefix", kind: "string", default: "/coreos.com/network", help: "etcd prefix" },
  {
    name: "etcd-keyfile",
    kind: "string",
    default: "",
    help: "SSL key file used to secure etcd communication",
  },
  {
    name: "etcd-certfile",
    kind: "string",
    default: "",
    help: "SSL certification file used to secure etcd communication",
  },
  {
    name: "etcd-cafile",
    kind: "string",
    default: "",
    help: "SSL Certificate Authority file used to secure etcd communication",
  },
  { name: "etcd-username", kind: "string", default: "", help: "username for BasicAuth to etcd" },
  { name: "etcd-password", kind: "string", default: "", help: "password for BasicAuth to etcd" },
  {
    name: "iface",
    kind: "list",
    default: [],
    help:
      "interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each option in order. Returns the first match found.",
  },
  {
    name: "iface-regex",
    kind: "list",
    default: [],
    help:
      "regex expression to match the first interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each regex in order. Returns the first match found. Regexes are checked after specific interfaces specified by the iface option have already been checked.",
  },
  {
    name: "iface-can-reach",
    kind: "string",
    default: "",
    help:
      "detect interface to use (IP or name) for inter-host communication based on which will be used for provided IP. This is exactly the interface to use of command 'ip route get <ip-address>'",
  },
  {
    name: "public-ip",
    kind: "string",
    default: "",
    help: "IP accessible by other nodes for inter-host communication",
  },
  {
    name: "public-ipv6",
    kind: "string",
    default: "",
    help: "IPv6 accessible by other nodes for inter-host communication",
  },
  {
    name: "subnet-file",
    kind: "string",
    default: "/run/flannel/subnet.env",
    help: "filename where env variables (subnet, MTU, ... ) will be written to",
  },
  {
    name: "subnet-lease-renew-margin",
    kind: "int",
    default: 60,
    min: 1,
    max: 1439,
    help: "subnet lease renewal margin, in minutes, ranging from 1 to 1439",
  },
  {
    name: "subnet-lease-ttl",
    kind: "duration",
    default: 86400,
    min: 10,
    max: 315360000,
    help:
      "(ours) TTL of the subnet lease in etcd, e.g. 24h, 30m, 90s; shorter frees dead hosts' subnets sooner",
  },
  {
    name: "ip-masq",
    kind: "bool",
    default: false,
    help: "setup IP masquerade rule for traffic destined outside of overlay network",
  },
  {
    name: "ip-masq-fully-random-disable",
    kind: "bool",
    default: false,
    help: "disable --random-fully in the MASQUERADE rules",
  },
  {
    name: "iptables-resync",
    kind: "int",
    default: 5,
    min: 1,
    max: 86400,
    help: "resync period for iptables rules, in seconds",
  },
  {
    name: "iptables-forward-rules",
    kind: "bool",
    default: true,
    help: "add default accept rules to FORWARD chain in iptables",
  },
  {
    name: "ip-blackhole-route",
    kind: "bool",
    default: false,
    help: "add a blackhole route for the node's own subnet",
  },
  {
    name: "healthz-ip",
    kind: "string",
    default: "0.0.0.0",
    help: "the IP address for healthz server to listen",
  },
  {
    name: "healthz-port",
    kind: "int",
    default: 0,
    min: 0,
    max: 65535,
    help: "the port for healthz server to listen(0 to disable)",
  },
  {
    name: "reconcile-interval",
    kind: "duration",
    default: 10,
    min: 1,
    max: 86400,
    help: "(ours) how often kernel routes, neighbours and FDB entries are checked and repaired",
  },
  {
    name: "kube-subnet-mgr",
    kind: "bool",
    default: false,
    help:
      "contact the Kubernetes API for subnet assignment instead of etcd (not supported by this implementation)",
    unsupported: KUBE,
  },
  {
    name: "kube-api-url",
    kind: "string",
    default: "",
    help: "Kubernetes API server URL (kube mode, not supported)",
    unsupported: KUBE,
  },
  {
    name: "kubeconfig-file",
    kind: "string",
    default: "",
    help: "kubeconfig file location (kube mode, not supported)",
    unsupported: KUBE,
  },
  {
    name: "kube-annotation-prefix",
    kind: "string",
    default: "flannel.alpha.coreos.com",
    help: "Kubernetes annotation prefix (kube mode, not supported)",
    unsupported: KUBE,
  },
  {
    name: "net-config-path",
    kind: "string",
    default: "/etc/kube-flannel/net-conf.json",
    help: "path to the network configuration file (kube mode, not supported)",
    unsupported: KUBE,
  },
  {
    name: "set-node-network-unavailable",
    kind: "bool",
    default: true,
    help: "set NodeNetworkUnavailable after ready (kube mode, not supported)",
    unsupported: KUBE,
  },
  { name: "version", kind: "bool", default: false, help: "print version and exit" },
  { name: "v", kind: "int", default: 0, min: 0, max: 10, help: "log level for V logs" },
  {
    name: "vmodule",
    kind: "string",
    default: "",
    help:
      "comma-separated list of pattern=N settings for component-filtered logging (components are the names in log lines, e.g. watch=2,subnet=1)",
    check: (v) => {
      try {
        parseVmodule(v);
        return null;
      } catch (e) {
        return (e as Error).message;
      }
    },
  },
  {
    name: "log_backtrace_at",
    kind: "string",
    default: "",
    help: "when logging hits line file:N, emit a stack trace (not supported)",
    unsupported: "klog's stack trace at a source line has no equivalent in this flanneld",
  },
] as const satisfies readonly FlagDef[];

/** Parsed flag values by name, each typed by its kind (`"iface"` → `string[]`…). */
export type FlagValues = {
  -readonly [F in (typeof FLAGS)[number] as F["name"]]: KindValue[F["kind"]];
};

/** The outcome of parsing: values, whether help was asked for, the rest of argv. */
export interface ParsedFlags {
  values: FlagValues;
  help: boolean;
  positionals: string[];
  /** Names given on the command line or in the environment (not defaulted). */
  explicit: Set<string>;
}

/** A usage error: main prints its message on one line and exits 2. */
export class FlagError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "FlagError";
  }
}

const BY_NAME = new Map<string, FlagDef>(FLAGS.map((f) => [f.name, f]));

function parseGoBool(s: string, name: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  throw new FlagError(`invalid boolean value ${JSON.stringify(s)} for -${name}`);
}

/** Parses a Go duration (`24h`, `1h30m`, `90s`, `500ms`) or plain seconds into seconds. */
export function parseDuration(s: string): number | null {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let total = 0, consumed = 0;
  for (const m of s.matchAll(re)) {
    if (m.index !== consumed) return null;
    total += Number(m[1]) * units[m[2]];
    consumed += m[0].length;
  }
  return consumed === s.length && consumed > 0 ? total : null;
}

function convert(
  def: FlagDef,
  raw: string | boolean | string[],
  from: string,
): string | boolean | number | string[] {
  if (def.kind === "int" || def.kind === "duration") {
    const s = String(raw);
    const n = def.kind === "int" ? (/^-?\d+$/.test(s) ? Number(s) : null) : parseDuration(s);
    if (n === null) {
      throw new FlagError(`invalid value ${JSON.stringify(s)} for ${from}: parse error`);
    }
    if ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max)) {
      throw new FlagError(
        `invalid value ${JSON.stringify(s)} for ${from}: must be between ${def.min} and ${def.max}`,
      );
    }
    return n;
  }
  if (typeof raw === "string" && def.check) {
    const why = def.check(raw);
    if (why) throw new FlagError(`invalid value ${JSON.stringify(raw)} for ${from}: ${why}`);
  }
  return raw;
}

/** Environment variable name for a flag: `FLANNELD_ETCD_ENDPOINTS`. */
export function envName(flag: string): string {
  return "FLANNELD_" + flag.toUpperCase().replace(/[-.]/g, "_");
}

/**
 * Parses argv and the environment. Throws {@link FlagError} for an unknown flag, a
 * missing argument or a bad value.
 */
export function parseFlags(
  argv: string[],
  env: Record<string, string | undefined> = {},
): ParsedFlags {
  const tokens: string[] = [];
  const explicit = new Set<string>();
  let help = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const body = a.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    if (name === "h" || name === "help") {
      help = true;
      continue;
    }
    const def = BY_NAME.get(name);
    if (!def) throw new FlagError(`flag provided but not defined: -${name}`);
    explicit.add(name);
    if (def.kind === "bool") {
      tokens.push(inline === undefined || parseGoBool(inline, name) ? `--${name}` : `--no-${name}`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
      value = argv[++i];
    }
    tokens.push(`--${name}=${value}`);
  }
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const f of FLAGS) {
    options[f.name] = {
      type: f.kind === "bool" ? "boolean" : "string",
      multiple: f.kind === "list",
    };
  }
  const { values: parsed } = parseArgs({
    args: tokens,
    options,
    strict: true,
    allowNegative: true,
  });
  const values: Record<string, KindValue[FlagKind]> = {};
  for (const f of FLAGS as readonly FlagDef[]) {
    let raw = (parsed as Record<string, string | boolean | string[] | undefined>)[f.name];
    let from = `flag -${f.name}`;
    if (raw === undefined) {
      const e = env[envName(f.name)];
      if (e !== undefined && e !== "") {
        explicit.add(f.name);
        from = `${envName(f.name)}`;
        raw = f.kind === "bool" ? parseGoBool(e, f.name) : f.kind === "list" ? [e] : e;
      }
    }
    values[f.name] = raw === undefined ? f.default : convert(f, raw, from);
    if (f.unsupported && JSON.stringify(values[f.name]) !== JSON.stringify(f.default)) {
      throw new FlagError(`${from}: ${f.unsupported}`);
    }
  }
  // Every name of FLAGS was assigned a value of its kind just above.
  return { values: values as FlagValues, help, positionals: argv.slice(i), explicit };
}

/** Usage text in the layout of Go's `flag.PrintDefaults`. */
export function usage(): string {
  const lines = ["Usage: flanneld [OPTION]...", ""];
  for (const f of FLAGS) {
    const type = f.kind === "bool"
      ? ""
      : f.kind === "list"
      ? " value"
      : f.kind === "duration"
      ? " duration"
      : f.kind === "int"
      ? " int"
      : " string";
    lines.push(`  -${f.name}${type}`);
    let dflt = "";
    if (f.kind === "string" && f.default !== "") dflt = ` (default ${JSON.stringify(f.default)})`;
    else if ((f.kind === "int" && f.default !== 0) || (f.kind === "bool" && f.default === true)) {
      dflt = ` (default ${f.default})`;
    } else if (f.kind === "duration") dflt = ` (default ${f.default}s)`;
    lines.push(`    \t${f.help}${dflt}`);
  }
  lines.push(
    "",
    "Every flag can also be set through FLANNELD_<NAME> (e.g. FLANNELD_ETCD_ENDPOINTS).",
  );
  return lines.join("\n") + "\n";
}
