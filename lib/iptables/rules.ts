/**
 * The iptables rules flanneld installs, as upstream (v0.20+) words them, and the
 * `iptables-restore` payloads that install, repair and remove them. Pure: the applier
 * (iptables.ts) feeds in what `iptables-save` printed and runs what comes out.
 * @module
 */

/** IP family of a rule set: picks iptables or ip6tables, and the multicast range. */
export type Family = 4 | 6;

/** One rule, appended (`-A`) to `chain` of `table`; `spec` is iptables' argument list. */
export interface Rule {
  table: "nat" | "filter";
  chain: string;
  spec: string[];
}

/** Chain of the masquerade rules in table `nat`. */
export const MASQ_CHAIN = "FLANNEL-POSTRTG";
/** Chain of the forward rules in table `filter`. */
export const FORWARD_CHAIN = "FLANNEL-FWD";
/** kube-proxy's masquerade mark: such packets are left to kube-proxy (no double NAT). */
export const KUBE_PROXY_MARK = "0x4000/0x4000";

const MASQ_COMMENT = ["-m", "comment", "--comment", "flanneld masq"];
const FORWARD_COMMENT = ["-m", "comment", "--comment", "flanneld forward"];

/**
 * The masquerade rules of upstream's order for cluster network `network` and own lease
 * `subnet` (CIDR strings). `randomFully` adds `--random-fully` to both MASQUERADE rules.
 */
export function masqRules(
  network: string,
  subnet: string,
  family: Family,
  randomFully: boolean,
): Rule[] {
  const multicast = family === 4 ? "224.0.0.0/4" : "ff00::/8";
  const masq = randomFully ? ["-j", "MASQUERADE", "--random-fully"] : ["-j", "MASQUERADE"];
  const rule = (chain: string, ...spec: string[]): Rule => ({ table: "nat", chain, spec });
  return [
    rule("POSTROUTING", ...MASQ_COMMENT, "-j", MASQ_CHAIN),
    rule(MASQ_CHAIN, "-m", "mark", "--mark", KUBE_PROXY_MARK, ...MASQ_COMMENT, "-j", "RETURN"),
    // Pod to pod inside the overlay keeps its source address.
    rule(MASQ_CHAIN, "-s", subnet, "-d", network, ...MASQ_COMMENT, "-j", "RETURN"),
    rule(MASQ_CHAIN, "-s", network, "-d", subnet, ...MASQ_COMMENT, "-j", "RETURN"),
    // Outside traffic arriving for a local pod (e.g. a NodePort) is not rewritten.
    rule(MASQ_CHAIN, "!", "-s", network, "-d", subnet, ...MASQ_COMMENT, "-j", "RETURN"),
    rule(MASQ_CHAIN, "-s", network, "!", "-d", multicast, ...MASQ_COMMENT, ...masq),
    // The host talking to the overlay uses its flannel address, so replies come back.
    rule(MASQ_CHAIN, "!", "-s", network, "-d", network, ...MASQ_COMMENT, ...masq),
  ];
}

/** The forward rules for cluster network `network`: accept anything from or to it. */
export function forwardRules(network: string): Rule[] {
  const rule = (chain: string, ...spec: string[]): Rule => ({ table: "filter", chain, spec });
  return [
    rule("FORWARD", ...FORWARD_COMMENT, "-j", FORWARD_CHAIN),
    rule(FORWARD_CHAIN, "-s", network, ...FORWARD_COMMENT, "-j", "ACCEPT"),
    rule(FORWARD_CHAIN, "-d", network, ...FORWARD_COMMENT, "-j", "ACCEPT"),
  ];
}

/**
 * A rule as one `iptables-save`/`iptables-restore` line, e.g.
 * `-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`;
 * the comment is quoted as upstream's payload quotes it (and as iptables-save prints it).
 */
export function formatRule(r: Rule, action = "-A"): string {
  const words = r.spec.map((w, i) => (r.spec[i - 1] === "--comment" ? `"${w}"` : w));
  return [action, r.chain, ...words].join(" ");
}

/** What `iptables-save` shows of one table: its chains and its rule lines in order. */
export interface SavedTable {
  chains: Set<string>;
  /** `-A …` lines, verbatim. */
  rules: string[];
}

/** Parses `iptables-save` output into tables by name. */
export function parseSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | null = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      cur = { chains: new Set(), rules: [] };
      tables.set(line.slice(1).trim(), cur);
    } else if (!cur) continue;
    else if (line.startsWith(":")) cur.chains.add(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-A ")) cur.rules.push(line.trimEnd());
  }
  return tables;
}

const BUILTIN_CHAINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);

/** True when every rule (and so its chain) is present in `saved`. */
export function allPresent(rules: Rule[], saved: Map<string, SavedTable>): boolean {
  return rules.every((r) => saved.get(r.table)?.rules.includes(formatRule(r)) ?? false);
}

/** Groups restore lines by table into one `*table … COMMIT` payload. */
function payload(lines: Map<string, string[]>): string {
  let s = "";
  for (const [table, body] of lines) {
    if (body.length > 0) s += `*${table}\n${body.join("\n")}\nCOMMIT\n`;
  }
  return s;
}

function linesFor(map: Map<string, string[]>, table: string): string[] {
  let l = map.get(table);
  if (!l) map.set(table, l = []);
  return l;
}

/**
 * The `iptables-restore --noflush` payload that (re)installs `rules` in order, upstream's
 * way: flannel chains are declared (created, or flushed if `flush` or missing: a declared
 * chain is flushed by --noflush restore), every rule still present elsewhere is deleted
 * and all are appended again, in one transaction per table so no foreign rule gets
 * between them.
 */
export function installPayload(
  rules: Rule[],
  saved: Map<string, SavedTable>,
  flush: boolean,
): string {
  const decls = new Map<string, string[]>();
  const body = new Map<string, string[]>();
  const flushed = new Set<string>();
  for (const r of rules) {
    const t = saved.get(r.table);
    const key = `${r.table}/${r.chain}`;
    if (!BUILTIN_CHAINS.has(r.chain) && !flushed.has(key) && (flush || !t?.chains.has(r.chain))) {
      linesFor(decls, r.table).push(`:${r.chain} - [0:0]`);
      flushed.add(key);
    }
    if (!flushed.has(key) && t?.rules.includes(formatRule(r))) {
      linesFor(body, r.table).push(formatRule(r, "-D"));
    }
    linesFor(body, r.table).push(formatRule(r));
  }
  for (const [table, l] of body) linesFor(decls, table).push(...l);
  return payload(decls);
}

/** The payload deleting those of `rules` that are present (stale rules of a previous run). */
export function deletePayload(rules: Rule[], saved: Map<string, SavedTable>): string {
  const body = new Map<string, string[]>();
  for (const r of rules) {
    const l = linesFor(body, r.table);
    const del = formatRule(r, "-D");
    // Each line deletes one copy: a rule listed twice must not be deleted twice.
    if (saved.get(r.table)?.rules.includes(formatRule(r)) && !l.includes(del)) l.push(del);
  }
  return payload(body);
}

/**
 * The payload removing every flannel artifact from `saved` (used in nftables mode): rules
 * jumping to a FLANNEL-* chain, then those chains (flushed, then deleted).
 */
export function purgePayload(saved: Map<string, SavedTable>): string {
  const body = new Map<string, string[]>();
  for (const [table, t] of saved) {
    const ours: string[] = [...t.chains].filter((c) => c === MASQ_CHAIN || c === FORWARD_CHAIN);
    if (ours.length === 0) continue;
    const l = linesFor(body, table);
    for (const line of t.rules) {
      const chain = line.split(" ")[1];
      if (!ours.includes(chain) && ours.some((c) => line.endsWith(`-j ${c}`))) {
        l.push(`-D${line.slice(2)}`);
      }
    }
    for (const c of ours) l.push(`-F ${c}`);
    for (const c of ours) l.push(`-X ${c}`);
  }
  return payload(body);
}

/**
 * Whether MASQUERADE `--random-fully` is usable: iptables ≥ 1.6.2 (as go-iptables decides)
 * and a kernel ≥ 3.13 (NF_NAT_RANGE_PROTO_RANDOM_FULLY).
 */
export function supportsRandomFully(iptablesVersion: string, kernelRelease: string): boolean {
  const v = /v(\d+)\.(\d+)\.(\d+)/.exec(iptablesVersion);
  const k = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!v || !k) return false;
  return atLeast([+v[1], +v[2], +v[3]], [1, 6, 2]) && atLeast([+k[1], +k[2]], [3, 13]);
}

/** Whether `iptables-restore` takes `--wait` (added in 1.6.2, as upstream checks). */
export function supportsRestoreWait(iptablesVersion: string): boolean {
  const v = /v(\d+)\.(\d+)\.(\d+)/.exec(iptablesVersion);
  return v !== null && atLeast([+v[1], +v[2], +v[3]], [1, 6, 2]);
}

/** Lexicographic version comparison `have >= want`. */
function atLeast(have: number[], want: number[]): boolean {
  for (let i = 0; i < want.length; i++) {
    if ((have[i] ?? 0) !== want[i]) return (have[i] ?? 0) > want[i];
  }
  return true;
}

/** Which iptables backend `iptables --version` names: "nf_tables", "legacy" or unknown (old). */
export function iptablesVariant(iptablesVersion: string): "nft" | "legacy" | "unknown" {
  if (iptablesVersion.includes("(nf_tables)")) return "nft";
  if (iptablesVersion.includes("(legacy)")) return "legacy";
  return "unknown";
}
