/**
 * The network config stored at `<prefix>/config`: parsing with Go's case-insensitive
 * JSON field matching, upstream's defaults, and its validation rules with messages that
 * name the field and the rule. Pure; no I/O.
 * @module
 */

import { field } from "../core/json.ts";
import {
  contains4,
  contains6,
  formatIP4,
  formatIP6,
  type IP4Net,
  type IP6Net,
  mask4,
  mask6,
  parseCIDR4,
  parseCIDR6,
  parseIP4,
  parseIP6,
  size4,
  size6,
} from "../core/ip.ts";

/** A parsed, validated network config with every default filled in. */
export interface NetworkConfig {
  enableIPv4: boolean;
  enableIPv6: boolean;
  enableNFTables: boolean;
  network?: IP4Net;
  subnetLen: number;
  /** First allocatable subnet address (u32). */
  subnetMin: number;
  /** Last allocatable subnet address (u32, inclusive). */
  subnetMax: number;
  ipv6Network?: IP6Net;
  ipv6SubnetLen: number;
  ipv6SubnetMin: bigint;
  ipv6SubnetMax: bigint;
  /** Lower-cased backend type; `udp` when Backend is absent (upstream's code, not its docs). */
  backendType: string;
  /** The raw Backend object, for the backend's own options. */
  backend: Record<string, unknown>;
}

/** A config that upstream would reject; `field` names the offending field. */
export class ConfigError extends Error {
  constructor(readonly field: string, msg: string) {
    super(msg);
    this.name = "ConfigError";
  }
}

/** The key of a field given by its path (`Backend.VNI` → `VNI`): errors name the path. */
const keyOf = (path: string) => path.slice(path.lastIndexOf(".") + 1);

/** Optional boolean field (case-insensitive name, or `Parent.Name`); `dflt` when absent or null. */
export function optBool(o: Record<string, unknown>, name: string, dflt: boolean): boolean {
  const v = field(o, keyOf(name));
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") {
    throw new ConfigError(name, `${name} must be true or false, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Optional non-negative integer field (case-insensitive name, or `Parent.Name`); 0 when absent or null. */
export function optUint(o: Record<string, unknown>, name: string): number {
  const v = field(o, keyOf(name));
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(name, `${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optString(o: Record<string, unknown>, name: string): string | undefined {
  const v = field(o, name);
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") {
    throw new ConfigError(name, `${name} must be a string, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Parses and validates config JSON text. Throws {@link ConfigError} naming the field and
 * the rule; never returns a partially valid config.
 */
export function parseNetworkConfig(text: string): NetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError("", `config is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError("", "config must be a JSON object");
  }
  const o = raw as Record<string, unknown>;
  const cfg: NetworkConfig = {
    enableIPv4: optBool(o, "EnableIPv4", true),
    enableIPv6: optBool(o, "EnableIPv6", false),
    enableNFTables: optBool(o, "EnableNFTables", false),
    subnetLen: optUint(o, "SubnetLen"),
    subnetMin: 0,
    subnetMax: 0,
    ipv6SubnetLen: optUint(o, "IPv6SubnetLen"),
    ipv6SubnetMin: 0n,
    ipv6SubnetMax: 0n,
    backendType: "udp",
    backend: {},
  };
  // As upstream: udp only when Backend is absent. A Backend that is present (even null or
  // {}) names its type, and one without a Type is refused when the backend is chosen.
  const backend = field(o, "Backend");
  if (backend !== undefined) {
    if (backend !== null && (typeof backend !== "object" || Array.isArray(backend))) {
      throw new ConfigError("Backend", "Backend must be a JSON object");
    }
    cfg.backend = (backend ?? {}) as Record<string, unknown>;
    const t = field(cfg.backend, "Type");
    if (t !== undefined && t !== null && typeof t !== "string") {
      throw new ConfigError("Backend.Type", "Backend.Type must be a string");
    }
    cfg.backendType = ((t as string | null | undefined) ?? "").toLowerCase();
  }
  if (!cfg.enableIPv4 && !cfg.enableIPv6) {
    throw new ConfigError(
      "EnableIPv4",
      "EnableIPv4 and EnableIPv6 are both false: nothing to allocate",
    );
  }
  if (cfg.enableIPv4) validateV4(o, cfg);
  if (cfg.enableIPv6) validateV6(o, cfg);
  return cfg;
}

function validateV4(o: Record<string, unknown>, cfg: NetworkConfig): void {
  const netStr = optString(o, "Network");
  if (netStr === undefined) {
    throw new ConfigError(
      "Network",
      'Network is required when EnableIPv4 is true (e.g. "10.5.0.0/16")',
    );
  }
  const net = parseCIDR4(netStr);
  if (!net) {
    throw new ConfigError("Network", `Network ${JSON.stringify(netStr)} is not an IPv4 CIDR`);
  }
  if (net.prefix === 0) {
    // Upstream's words; a /0 would hand out subnets across the whole address space.
    throw new ConfigError(
      "Network",
      `please define a correct Network parameter in the flannel config: ${netStr} is the whole IPv4 address space`,
    );
  }
  cfg.network = net;
  if (cfg.subnetLen > 0) {
    if (cfg.subnetLen > 30) throw new ConfigError("SubnetLen", "SubnetLen must be less than /31");
    if (cfg.subnetLen < net.prefix + 2) {
      throw new ConfigError(
        "SubnetLen",
        `SubnetLen /${cfg.subnetLen}: Network /${net.prefix} must be able to accommodate at least four subnets (SubnetLen >= ${
          net.prefix + 2
        })`,
      );
    }
  } else if (net.prefix > 28) {
    throw new ConfigError("Network", "Network is too small. Minimum useful network prefix is /28");
  } else {
    cfg.subnetLen = net.prefix <= 22 ? 24 : net.prefix + 2;
  }
  const step = size4(cfg.subnetLen);
  const end = net.ip + size4(net.prefix); // one past the broadcast, as a float-safe number
  cfg.subnetMin = boundV4(o, "SubnetMin", net, net.ip + step);
  cfg.subnetMax = boundV4(o, "SubnetMax", net, end - step);
  const m = mask4(cfg.subnetLen);
  for (const [name, v] of [["SubnetMin", cfg.subnetMin], ["SubnetMax", cfg.subnetMax]] as const) {
    if (((v & m) >>> 0) !== v) {
      throw new ConfigError(
        name,
        `${name} is not on a SubnetLen boundary: ${formatIP4(v)} (SubnetLen /${cfg.subnetLen})`,
      );
    }
  }
  if (cfg.subnetMin > cfg.subnetMax) {
    throw new ConfigError(
      "SubnetMin",
      `SubnetMin ${formatIP4(cfg.subnetMin)} is above SubnetMax ${formatIP4(cfg.subnetMax)}`,
    );
  }
}

function boundV4(o: Record<string, unknown>, name: string, net: IP4Net, dflt: number): number {
  const s = optString(o, name);
  if (s === undefined) return dflt >>> 0;
  const ip = parseIP4(s);
  if (ip === null) {
    throw new ConfigError(name, `${name} ${JSON.stringify(s)} is not an IPv4 address`);
  }
  if (ip === 0) return dflt >>> 0; // Go's zero IP means "unset"
  if (!contains4(net, ip)) {
    throw new ConfigError(name, `${name} is not in the range of the Network`);
  }
  return ip;
}

function validateV6(o: Record<string, unknown>, cfg: NetworkConfig): void {
  const netStr = optString(o, "IPv6Network");
  if (netStr === undefined) {
    throw new ConfigError(
      "IPv6Network",
      'IPv6Network is required when EnableIPv6 is true (e.g. "fd00:10:5::/48")',
    );
  }
  const net = parseCIDR6(netStr);
  if (!net) {
    throw new ConfigError(
      "IPv6Network",
      `IPv6Network ${JSON.stringify(netStr)} is not an IPv6 CIDR`,
    );
  }
  if (net.prefix === 0) {
    throw new ConfigError(
      "IPv6Network",
      `please define a correct IPv6Network parameter in the flannel config: ${netStr} is the whole IPv6 address space`,
    );
  }
  cfg.ipv6Network = net;
  if (cfg.ipv6SubnetLen > 0) {
    if (cfg.ipv6SubnetLen > 126) {
      throw new ConfigError("IPv6SubnetLen", "IPv6SubnetLen must be less than /127");
    }
    if (cfg.ipv6SubnetLen < net.prefix + 2) {
      throw new ConfigError(
        "IPv6SubnetLen",
        `IPv6SubnetLen /${cfg.ipv6SubnetLen}: IPv6Network /${net.prefix} must be able to accommodate at least four subnets (IPv6SubnetLen >= ${
          net.prefix + 2
        })`,
      );
    }
  } else if (net.prefix > 124) {
    throw new ConfigError(
      "IPv6Network",
      "IPv6Network is too small. Minimum useful network prefix is /124",
    );
  } else {
    cfg.ipv6SubnetLen = net.prefix <= 62 ? 64 : net.prefix + 2;
  }
  const step = size6(cfg.ipv6SubnetLen);
  cfg.ipv6SubnetMin = boundV6(o, "IPv6SubnetMin", net, net.ip + step);
  cfg.ipv6SubnetMax = boundV6(o, "IPv6SubnetMax", net, net.ip + size6(net.prefix) - step);
  const m = mask6(cfg.ipv6SubnetLen);
  for (
    const [name, v] of [["IPv6SubnetMin", cfg.ipv6SubnetMin], [
      "IPv6SubnetMax",
      cfg.ipv6SubnetMax,
    ]] as const
  ) {
    if ((v & m) !== v) {
      throw new ConfigError(
        name,
        `${name} is not on a SubnetLen boundary: ${
          formatIP6(v)
        } (IPv6SubnetLen /${cfg.ipv6SubnetLen})`,
      );
    }
  }
  if (cfg.ipv6SubnetMin > cfg.ipv6SubnetMax) {
    throw new ConfigError("IPv6SubnetMin", "IPv6SubnetMin is above IPv6SubnetMax");
  }
}

function boundV6(o: Record<string, unknown>, name: string, net: IP6Net, dflt: bigint): bigint {
  const s = optString(o, name);
  if (s === undefined) return dflt;
  const ip = parseIP6(s);
  if (ip === null) {
    throw new ConfigError(name, `${name} ${JSON.stringify(s)} is not an IPv6 address`);
  }
  if (ip === 0n) return dflt;
  if (!contains6(net, ip)) {
    throw new ConfigError(name, `${name} is not in the range of the IPv6Network`);
  }
  return ip;
}
