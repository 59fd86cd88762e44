/**
 * Applies rule sets with the host's own `iptables-restore --noflush` / `iptables-save`
 * (or the ip6tables ones). Those are Debian's alternatives, so whichever variant the host
 * uses (nf_tables or legacy) is the one that gets our rules, next to kube-proxy's and
 * Docker's; the variant is read from `iptables --version` for the log.
 * @module
 */

import { check, runTool } from "./exec.ts";
import {
  allPresent,
  deletePayload,
  type Family,
  installPayload,
  iptablesVariant,
  parseSave,
  purgePayload,
  type Rule,
  type SavedTable,
  supportsRandomFully,
  supportsRestoreWait,
} from "./rules.ts";
import type { RuleSet } from "./rule_set.ts";

/** The iptables tools of one family, as found on this host. */
export class Iptables {
  private constructor(
    readonly family: Family,
    /** `iptables --version` output, e.g. `iptables v1.8.9 (nf_tables)`. */
    readonly version: string,
  ) {}

  /** Looks the tools up; null when `iptables`/`ip6tables` is not installed. */
  static async detect(family: Family): Promise<Iptables | null> {
    const r = await runTool(family === 4 ? "iptables" : "ip6tables", ["--version"]);
    return r.code === 0 ? new Iptables(family, r.stdout.trim()) : null;
  }

  /** "nft" or "legacy" (or "unknown" for an iptables too old to say). */
  get variant(): string {
    return iptablesVariant(this.version);
  }

  /** Whether MASQUERADE may carry `--random-fully` here. */
  get randomFully(): boolean {
    return supportsRandomFully(this.version, Deno.osRelease());
  }

  #tool(suffix: string): string {
    return `${this.family === 4 ? "iptables" : "ip6tables"}${suffix}`;
  }

  /** Current tables as `iptables-save` prints them. */
  async save(): Promise<Map<string, SavedTable>> {
    return parseSave(check(await runTool(this.#tool("-save"), []), this.#tool("-save")));
  }

  /** Applies a payload with `--noflush` (and `--wait` where supported); no-op when empty. */
  async restore(payload: string): Promise<void> {
    if (payload === "") return;
    const args = supportsRestoreWait(this.version) ? ["--noflush", "--wait"] : ["--noflush"];
    check(
      await runTool(this.#tool("-restore"), args, payload),
      `${this.#tool("-restore")} with\n${payload}`,
    );
  }

  /** Deletes those of `rules` that are present (a previous run's rules); returns whether any was. */
  async deleteRules(rules: Rule[]): Promise<boolean> {
    const payload = deletePayload(rules, await this.save());
    await this.restore(payload);
    return payload !== "";
  }

  /** Removes every FLANNEL-* chain and the jumps to it (switching to nftables mode). */
  async purge(): Promise<boolean> {
    const payload = purgePayload(await this.save());
    await this.restore(payload);
    return payload !== "";
  }
}

/** A list of rules kept in place, in order, with iptables. */
export class IptablesRuleSet implements RuleSet {
  constructor(
    private readonly ipt: Iptables,
    readonly name: string,
    readonly rules: Rule[],
  ) {}

  /** Creates/flushes the flannel chain and appends every rule, replacing any left over. */
  async install(): Promise<void> {
    await this.ipt.restore(installPayload(this.rules, await this.ipt.save(), true));
  }

  /** If any rule is missing, deletes the rest and appends all again in order (upstream). */
  async ensure(): Promise<boolean> {
    const saved = await this.ipt.save();
    if (allPresent(this.rules, saved)) return false;
    await this.ipt.restore(installPayload(this.rules, saved, false));
    return true;
  }
}
