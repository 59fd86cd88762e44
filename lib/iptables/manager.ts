/**
 * Traffic rules of one flanneld run (README section "ip-masq and forward rules"): clean the other engine's leftovers,
 * drop a previous run's stale masquerade rules, install masquerade (`--ip-masq`) and
 * forward (`--iptables-forward-rules`) rules, then check them every `--iptables-resync`
 * seconds and reinstall any set that lost a rule (kube-proxy or an admin flushing chains
 * must not silently break the overlay). Rules are left in place on exit, as upstream.
 * @module
 */

import type { NetworkConfig } from "../values/config.ts";
import { formatNet4, formatNet6, type IP4Net, type IP6Net } from "../core/ip.ts";
import type { Lease } from "../values/lease.ts";
import { logger } from "../core/log.ts";
import { Iptables, IptablesRuleSet } from "./iptables.ts";
import { Nft, NftRuleSet } from "./nftables.ts";
import {
  NFT_FORWARD_CHAIN,
  NFT_POSTRTG_CHAIN,
  nftForwardRules,
  nftForwardScript,
  nftMasqRules,
  nftMasqScript,
} from "./nft_rules.ts";
import { type Family, forwardRules, masqRules } from "./rules.ts";
import type { RuleSet } from "./rule_set.ts";

const log = logger("iptables");

/** What to install, from flags and the network config. */
export interface TrafficRulesOptions {
  /** Config `EnableNFTables`: nftables tables instead of iptables chains. */
  nftables: boolean;
  /** `--ip-masq`. */
  ipMasq: boolean;
  /** `--iptables-forward-rules`. */
  forwardRules: boolean;
  /** `--ip-masq-fully-random-disable`. */
  fullyRandomDisable: boolean;
  /** `--iptables-resync`, seconds. */
  resyncSeconds: number;
  /** Told whenever the rules go from complete to incomplete or back. */
  onState?: (inPlace: boolean) => void;
}

/** Cluster network and own lease per family; a family without both is skipped. */
export interface RulesNets {
  network?: IP4Net;
  subnet?: IP4Net;
  ipv6Network?: IP6Net;
  ipv6Subnet?: IP6Net;
}

/** The networks of `cfg` and the subnets of `lease`, for the families the config enables. */
export function leaseNets(cfg: NetworkConfig, lease: Lease): RulesNets {
  return {
    network: cfg.enableIPv4 ? cfg.network : undefined,
    subnet: cfg.enableIPv4 ? lease.subnet : undefined,
    ipv6Network: cfg.enableIPv6 ? cfg.ipv6Network : undefined,
    ipv6Subnet: cfg.enableIPv6 ? lease.ipv6Subnet : undefined,
  };
}

/** The families present in `n`, as CIDR strings. */
function families(n: RulesNets): { family: Family; network: string; subnet: string }[] {
  const out: { family: Family; network: string; subnet: string }[] = [];
  if (n.network && n.subnet) {
    out.push({ family: 4, network: formatNet4(n.network), subnet: formatNet4(n.subnet) });
  }
  if (n.ipv6Network && n.ipv6Subnet) {
    out.push({ family: 6, network: formatNet6(n.ipv6Network), subnet: formatNet6(n.ipv6Subnet) });
  }
  return out;
}

/** Installs the rules and keeps them; see the module doc. */
export class TrafficRules {
  /** Times the resync found a rule missing and reinstalled its set. */
  restorations = 0;
  /** Whether every set was installed and found complete by the latest check. */
  inPlace = false;
  #sets: RuleSet[] = [];
  /** Networks of the last start/update; the sets are rebuilt from them after a failure. */
  #cur: RulesNets = {};
  /** Building the sets failed (e.g. tool missing): the next pass tries again. */
  #unbuilt = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #running: Promise<void> = Promise.resolve();

  constructor(readonly opts: TrafficRulesOptions) {}

  #setInPlace(ok: boolean): void {
    if (ok === this.inPlace) return;
    this.inPlace = ok;
    this.opts.onState?.(ok);
  }

  /**
   * First installation; `prev` is what the previous subnet.env said. Failures are logged
   * and retried by the resync loop (readiness stays false meanwhile), never fatal.
   */
  async start(cur: RulesNets, prev: RulesNets): Promise<void> {
    await this.#cleanOtherEngine();
    if (!this.opts.nftables && this.opts.ipMasq) await this.#dropStale(cur, prev);
    await this.update(cur);
    this.#schedule();
  }

  /** (Re)installs the sets for `cur`, e.g. after the lease moved to another subnet. */
  async update(cur: RulesNets): Promise<void> {
    await this.#running;
    this.#cur = cur;
    await this.#install();
  }

  async #install(): Promise<void> {
    try {
      this.#sets = await this.#buildSets(this.#cur);
      this.#unbuilt = false;
    } catch (e) {
      log.error("cannot set up traffic rules; retrying at the next resync", {
        error: (e as Error).message,
      });
      this.#sets = [];
      this.#unbuilt = true;
      return this.#setInPlace(false);
    }
    let ok = true;
    for (const s of this.#sets) {
      try {
        await s.install();
        log.info("rules installed", { set: s.name });
      } catch (e) {
        ok = false;
        log.error("cannot install rules; retrying at the next resync", {
          set: s.name,
          error: (e as Error).message,
        });
      }
    }
    this.#setInPlace(ok);
  }

  /** Stops the resync loop; the rules stay. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One resync pass: reinstalls any set that lost a rule (or retries a failed setup). */
  async resync(): Promise<void> {
    if (this.#unbuilt) return await this.#install();
    let ok = true;
    for (const s of this.#sets) {
      try {
        if (await s.ensure()) {
          this.restorations++;
          log.warn("some rules were missing; deleted and re-added them in order", {
            set: s.name,
            restorations: this.restorations,
          });
        }
      } catch (e) {
        ok = false;
        log.error("cannot check or restore rules", { set: s.name, error: (e as Error).message });
      }
    }
    this.#setInPlace(ok);
  }

  #schedule(): void {
    if (this.#stopped || (!this.opts.ipMasq && !this.opts.forwardRules)) return;
    this.#timer = setTimeout(() => {
      this.#running = this.resync().finally(() => this.#schedule());
    }, this.opts.resyncSeconds * 1000);
  }

  async #buildSets(cur: RulesNets): Promise<RuleSet[]> {
    const o = this.opts;
    const fams = families(cur);
    if (!o.ipMasq && !o.forwardRules) return [];
    const sets: RuleSet[] = [];
    if (o.nftables) {
      const nft = await Nft.detect();
      if (!nft) {
        throw new Error(
          "EnableNFTables is set but the nft tool is not installed (Debian package nftables)",
        );
      }
      const randomFully = !o.fullyRandomDisable && o.ipMasq && await nft.randomFully();
      for (const { family, network, subnet } of fams) {
        const v = `(IPv${family})`;
        if (o.ipMasq) {
          const script = nftMasqScript(family, network, subnet, randomFully);
          const n = nftMasqRules(family, network, subnet, randomFully).length;
          sets.push(
            new NftRuleSet(nft, `nftables masq ${v}`, family, NFT_POSTRTG_CHAIN, script, n),
          );
        }
        if (o.forwardRules) {
          const n = nftForwardRules(family, network).length;
          sets.push(
            new NftRuleSet(
              nft,
              `nftables forward ${v}`,
              family,
              NFT_FORWARD_CHAIN,
              nftForwardScript(family, network),
              n,
            ),
          );
        }
      }
      return sets;
    }
    for (const { family, network, subnet } of fams) {
      const ipt = await Iptables.detect(family);
      if (!ipt) {
        throw new Error(
          `${family === 4 ? "iptables" : "ip6tables"} is not installed (Debian package iptables)`,
        );
      }
      const v = `(IPv${family})`;
      log.info("using iptables", { version: ipt.version, variant: ipt.variant });
      const randomFully = !o.fullyRandomDisable && ipt.randomFully;
      if (o.ipMasq) {
        sets.push(
          new IptablesRuleSet(
            ipt,
            `iptables masq ${v}`,
            masqRules(network, subnet, family, randomFully),
          ),
        );
      }
      if (o.forwardRules) {
        sets.push(new IptablesRuleSet(ipt, `iptables forward ${v}`, forwardRules(network)));
      }
    }
    return sets;
  }

  /** Deletes the masquerade rules of a previous run whose network or subnet differ. */
  async #dropStale(cur: RulesNets, prev: RulesNets): Promise<void> {
    const now = new Map(families(cur).map((f) => [f.family, f]));
    for (const p of families(prev)) {
      const c = now.get(p.family);
      if (c && c.network === p.network && c.subnet === p.subnet) continue;
      try {
        const ipt = await Iptables.detect(p.family);
        // random-fully unknown for the old rules: try both spellings.
        const old = [
          ...masqRules(p.network, p.subnet, p.family, true),
          ...masqRules(p.network, p.subnet, p.family, false),
        ];
        if (await ipt?.deleteRules(old)) {
          log.info("removed stale masquerade rules of a previous run", {
            network: p.network,
            subnet: p.subnet,
          });
        }
      } catch (e) {
        log.warn("cannot remove stale masquerade rules", {
          network: p.network,
          subnet: p.subnet,
          error: (e as Error).message,
        });
      }
    }
  }

  /** Removes the other engine's flannel artifacts, so two rule sets never fight. */
  async #cleanOtherEngine(): Promise<void> {
    const fams: Family[] = [4, 6];
    try {
      if (this.opts.nftables) {
        for (const f of fams) {
          const ipt = await Iptables.detect(f);
          if (await ipt?.purge()) {
            log.info(`removed flannel iptables chains (IPv${f}): nftables mode`);
          }
        }
      } else {
        const nft = await Nft.detect();
        for (const f of fams) {
          if (await nft?.deleteTable(f)) {
            log.info(`removed flannel nftables table (IPv${f}): iptables mode`);
          }
        }
      }
    } catch (e) {
      log.warn("cannot clean the other rule engine's flannel rules", {
        error: (e as Error).message,
      });
    }
  }
}
