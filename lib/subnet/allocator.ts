/**
 * Subnet choice, pure: whether a lease fits the config, and which free subnets are
 * candidates (the first 100 free from SubnetMin upward, as upstream, one picked uniformly
 * at random).
 * @module
 */

import type { NetworkConfig } from "../values/config.ts";
import {
  contains4,
  contains6,
  type IP4Net,
  type IP6Net,
  overlaps4,
  overlaps6,
  size4,
  size6,
} from "../core/ip.ts";

/** How many free candidates upstream collects before picking one at random. */
export const MAX_CANDIDATES = 100;

/** Whether an existing lease's subnets are valid under `cfg` (range, prefix, IPv6 presence). */
export function isCompatible(
  cfg: NetworkConfig,
  l: { subnet: IP4Net; ipv6Subnet?: IP6Net },
): boolean {
  if (cfg.enableIPv4) {
    if (!cfg.network || !contains4(cfg.network, l.subnet.ip)) return false;
    if (l.subnet.prefix !== cfg.subnetLen) return false;
    if (l.subnet.ip < cfg.subnetMin || l.subnet.ip > cfg.subnetMax) return false;
  }
  if (!cfg.enableIPv6) return l.ipv6Subnet === undefined;
  if (!l.ipv6Subnet) return false;
  return l.ipv6Subnet.prefix === cfg.ipv6SubnetLen && l.ipv6Subnet.ip >= cfg.ipv6SubnetMin &&
    l.ipv6Subnet.ip <= cfg.ipv6SubnetMax;
}

/**
 * Why a remote lease must not be routed, or null when it is fine: its subnet must lie in
 * the Network with the configured SubnetLen, so a hand-written `0.0.0.0-0` or a lease from
 * another network can never capture traffic. SubnetMin/Max are not checked: they only
 * bound allocation, and upstream hosts with other bounds are still peers.
 */
export function remoteLeaseProblem(
  cfg: NetworkConfig,
  l: { subnet: IP4Net; ipv6Subnet?: IP6Net; attrs: { publicIP: number } },
): string | null {
  if (cfg.enableIPv4) {
    if (
      !cfg.network || !contains4(cfg.network, l.subnet.ip) || l.subnet.prefix < cfg.network.prefix
    ) {
      return "subnet is outside the Network";
    }
    if (l.subnet.prefix !== cfg.subnetLen) {
      return `subnet prefix is not SubnetLen /${cfg.subnetLen}`;
    }
    if (l.attrs.publicIP === 0) return "lease has no PublicIP";
  }
  // IPv6-only: the IPv6 subnet is all there is to route (the IPv4 part is 0.0.0.0/0).
  if (!cfg.enableIPv4 && cfg.enableIPv6 && !l.ipv6Subnet) return "lease has no IPv6 subnet";
  if (cfg.enableIPv6 && l.ipv6Subnet && cfg.ipv6Network) {
    if (!contains6(cfg.ipv6Network, l.ipv6Subnet.ip) || l.ipv6Subnet.prefix !== cfg.ipv6SubnetLen) {
      return "IPv6 subnet is outside the IPv6Network or not IPv6SubnetLen";
    }
  }
  return null;
}

/** First free v4 subnets (at most `max`), in address order. */
export function freeSubnets4(cfg: NetworkConfig, taken: IP4Net[], max = MAX_CANDIDATES): IP4Net[] {
  const out: IP4Net[] = [];
  const step = size4(cfg.subnetLen);
  // Sort taken once so the walk is linear even with thousands of leases.
  const sorted = [...taken].sort((a, b) => a.ip - b.ip);
  let t = 0;
  for (let ip = cfg.subnetMin; ip <= cfg.subnetMax && out.length < max; ip += step) {
    const cand = { ip, prefix: cfg.subnetLen };
    // Leases wholly below the candidate can never overlap a later one: skip them for good.
    while (t < sorted.length && sorted[t].ip + size4(sorted[t].prefix) <= ip) t++;
    let busy = false;
    for (let k = t; k < sorted.length && sorted[k].ip < ip + step; k++) {
      if (overlaps4(cand, sorted[k])) busy = true;
    }
    if (!busy) out.push(cand);
  }
  return out;
}

/** First free v6 subnets (at most `max`). */
export function freeSubnets6(cfg: NetworkConfig, taken: IP6Net[], max = MAX_CANDIDATES): IP6Net[] {
  const out: IP6Net[] = [];
  const step = size6(cfg.ipv6SubnetLen);
  for (let ip = cfg.ipv6SubnetMin; ip <= cfg.ipv6SubnetMax && out.length < max; ip += step) {
    const cand = { ip, prefix: cfg.ipv6SubnetLen };
    if (!taken.some((n) => overlaps6(cand, n))) out.push(cand);
  }
  return out;
}

/** Picks one element uniformly at random; `rand` returns [0,1). */
export function pickRandom<T>(items: T[], rand: () => number = Math.random): T | undefined {
  if (items.length === 0) return undefined;
  return items[Math.floor(rand() * items.length)];
}
