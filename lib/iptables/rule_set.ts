/**
 * What the resync loop keeps in place, whatever the engine.
 * @module
 */

/** A group of rules installed together and checked together. */
export interface RuleSet {
  /** For logs, e.g. `iptables masq (IPv4)`. */
  readonly name: string;
  /** First installation: chains created or flushed, rules appended in order. */
  install(): Promise<void>;
  /** Checks the rules; reinstalls them if any is missing. Returns whether it had to. */
  ensure(): Promise<boolean>;
}
