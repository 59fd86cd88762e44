/**
 * The nftables rules of `EnableNFTables` mode, as `nft -f` scripts in upstream's words:
 * table `flannel-ipv4` (family ip) / `flannel-ipv6` (ip6) with chains
 * `forward` and `postrtg`. Pure text; nftables.ts runs it.
 * @module
 */

import type { Family } from "./rules.ts";

/** Chain accepting the overlay's forwarded traffic. */
export const NFT_FORWARD_CHAIN = "forward";
/** Chain masquerading traffic leaving the overlay. */
export const NFT_POSTRTG_CHAIN = "postrtg";

/** nft family keyword and flannel's table name for an IP family. */
export function nftTable(family: Family): { family: "ip" | "ip6"; name: string } {
  return family === 4
    ? { family: "ip", name: "flannel-ipv4" }
    : { family: "ip6", name: "flannel-ipv6" };
}

/** `add table` for the family's table, with upstream's comment; idempotent in nft. */
export function nftTableScript(family: Family): string {
  const t = nftTable(family);
  return `add table ${t.family} ${t.name} { comment "rules for ${t.name}" ; }\n`;
}

/** One base chain, declared then flushed, then its rules: re-running it restores the chain exactly. */
function chainScript(family: Family, chain: string, decl: string, rules: string[]): string {
  const t = `${nftTable(family).family} ${nftTable(family).name}`;
  return `add chain ${t} ${chain} { ${decl} ; }\n` +
    `flush chain ${t} ${chain}\n` +
    rules.map((r) => `add rule ${t} ${chain} ${r}\n`).join("");
}

/** Rule bodies of the `forward` chain. */
export function nftForwardRules(family: Family, network: string): string[] {
  const ip = nftTable(family).family;
  return [`${ip} saddr ${network} accept`, `${ip} daddr ${network} accept`];
}

/**
 * Rule bodies of the `postrtg` chain. As upstream, the kube-proxy mark is matched exactly
 * and the 4th rule reads "saddr != subnet, daddr network → return".
 */
export function nftMasqRules(
  family: Family,
  network: string,
  subnet: string,
  randomFully: boolean,
): string[] {
  const ip = nftTable(family).family;
  const masq = randomFully ? "masquerade fully-random" : "masquerade";
  const multicast = family === 4 ? "224.0.0.0/4" : "ff00::/8";
  return [
    "meta mark 0x4000 return",
    `${ip} saddr ${subnet} ${ip} daddr ${network} return`,
    `${ip} saddr ${network} ${ip} daddr ${subnet} return`,
    `${ip} saddr != ${subnet} ${ip} daddr ${network} return`,
    `${ip} saddr ${network} ${ip} daddr != ${multicast} ${masq}`,
    `${ip} saddr != ${network} ${ip} daddr ${network} ${masq}`,
  ];
}

/** Script (re)installing the `forward` chain: filter hook forward, filter priority. */
export function nftForwardScript(family: Family, network: string): string {
  return nftTableScript(family) + chainScript(
    family,
    NFT_FORWARD_CHAIN,
    `type filter hook forward priority filter ; comment "chain to accept flannel traffic"`,
    nftForwardRules(family, network),
  );
}

/** Script (re)installing the `postrtg` chain: nat hook postrouting, srcnat priority. */
export function nftMasqScript(
  family: Family,
  network: string,
  subnet: string,
  randomFully: boolean,
): string {
  return nftTableScript(family) + chainScript(
    family,
    NFT_POSTRTG_CHAIN,
    `type nat hook postrouting priority srcnat ; comment "chain to manage traffic masquerading by flannel"`,
    nftMasqRules(family, network, subnet, randomFully),
  );
}

/**
 * Script for `nft -c` telling whether the kernel takes `masquerade fully-random`, as
 * upstream probes it (a throw-away chain; check mode commits nothing).
 */
export function nftRandomFullyProbe(): string {
  return nftTableScript(4) + chainScript(
    4,
    "masqueradeTest",
    "type nat hook postrouting priority srcnat",
    ["ip saddr != 127.0.0.1 masquerade fully-random"],
  );
}

/** Counts the rules per chain of a table in `nft -j list table` output. */
export function nftRuleCounts(json: string): Map<string, number> {
  const counts = new Map<string, number>();
  const doc = JSON.parse(json) as {
    nftables?: Record<string, { name?: string; chain?: string }>[];
  };
  for (const item of doc.nftables ?? []) {
    if (item.chain?.name) counts.set(item.chain.name, counts.get(item.chain.name) ?? 0);
    if (item.rule?.chain) counts.set(item.rule.chain, (counts.get(item.rule.chain) ?? 0) + 1);
  }
  return counts;
}
