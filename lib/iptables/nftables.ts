/**
 * Applies `EnableNFTables` mode's tables with `nft -f -`. Each chain is declared and
 * flushed in the same script as its rules, so one run replaces it atomically.
 * @module
 */

import { check, runTool } from "./exec.ts";
import { nftRandomFullyProbe, nftRuleCounts, nftTable } from "./nft_rules.ts";
import type { Family } from "./rules.ts";
import type { RuleSet } from "./rule_set.ts";

/** The `nft` tool of this host. */
export class Nft {
  private constructor() {}

  /** Null when `nft` is not installed. */
  static async detect(): Promise<Nft | null> {
    return (await runTool("nft", ["--version"])).code === 0 ? new Nft() : null;
  }

  /** Runs a script in one transaction. */
  async apply(script: string): Promise<void> {
    check(await runTool("nft", ["-f", "-"], script), `nft -f - with\n${script}`);
  }

  /** Whether the kernel takes `masquerade fully-random` (checked with `nft -c`, nothing committed). */
  async randomFully(): Promise<boolean> {
    return (await runTool("nft", ["-c", "-f", "-"], nftRandomFullyProbe())).code === 0;
  }

  /** Rules per chain of the family's flannel table; null when the table does not exist. */
  async ruleCounts(family: Family): Promise<Map<string, number> | null> {
    const t = nftTable(family);
    const r = await runTool("nft", ["-j", "list", "table", t.family, t.name]);
    return r.code === 0 ? nftRuleCounts(r.stdout) : null;
  }

  /** Deletes the family's flannel table if present (switching to iptables mode); returns whether it was. */
  async deleteTable(family: Family): Promise<boolean> {
    const t = nftTable(family);
    if (await this.ruleCounts(family) === null) return false;
    check(
      await runTool("nft", ["delete", "table", t.family, t.name]),
      `nft delete table ${t.family} ${t.name}`,
    );
    return true;
  }
}

/** One chain of a flannel nftables table, kept with `rules` rules. */
export class NftRuleSet implements RuleSet {
  constructor(
    private readonly nft: Nft,
    readonly name: string,
    private readonly family: Family,
    private readonly chain: string,
    /** Declares, flushes and fills the chain (nft_rules.ts). */
    private readonly script: string,
    private readonly rules: number,
  ) {}

  /** Runs the script. */
  install(): Promise<void> {
    return this.nft.apply(this.script);
  }

  /** Re-runs the script when the chain is gone or lacks rules. */
  async ensure(): Promise<boolean> {
    const counts = await this.nft.ruleCounts(this.family);
    if ((counts?.get(this.chain) ?? -1) >= this.rules) return false;
    await this.install();
    return true;
  }
}
