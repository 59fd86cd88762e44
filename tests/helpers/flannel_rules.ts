/**
 * Upstream flanneld's ip-masq and forward rules (README "ip-masq and forward rules"), in
 * upstream's wording and order, as `iptables-save` / `nft list` print them: the expected
 * text of the unit and namespace tests, written out by hand rather than produced by
 * lib/iptables, so that a change there cannot agree with itself.
 * @module
 */

/** Upstream's 7 masquerade rules (table nat) for network `n` and lease subnet `s`, in order. */
export function upstreamMasqLines(
  n: string,
  s: string,
  randomFully: boolean,
  multicast = "224.0.0.0/4",
): string[] {
  const c = `-m comment --comment "flanneld masq"`;
  const rf = randomFully ? " --random-fully" : "";
  return [
    `-A POSTROUTING ${c} -j FLANNEL-POSTRTG`,
    `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${s} -d ${n} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${n} -d ${s} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG ! -s ${n} -d ${s} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${n} ! -d ${multicast} ${c} -j MASQUERADE${rf}`,
    `-A FLANNEL-POSTRTG ! -s ${n} -d ${n} ${c} -j MASQUERADE${rf}`,
  ];
}

/** Upstream's 3 forward rules (table filter) for network `n`, in order. */
export function upstreamForwardLines(n: string): string[] {
  const c = `-m comment --comment "flanneld forward"`;
  return [
    `-A FORWARD ${c} -j FLANNEL-FWD`,
    `-A FLANNEL-FWD -s ${n} ${c} -j ACCEPT`,
    `-A FLANNEL-FWD -d ${n} ${c} -j ACCEPT`,
  ];
}

/** The `postrtg` chain's rules as `nft list` prints them (IPv4; mark shown in full width). */
export function upstreamNftMasqLines(n: string, s: string, randomFully: boolean): string[] {
  const m = randomFully ? "masquerade fully-random" : "masquerade";
  return [
    "meta mark 0x00004000 return",
    `ip saddr ${s} ip daddr ${n} return`,
    `ip saddr ${n} ip daddr ${s} return`,
    `ip saddr != ${s} ip daddr ${n} return`,
    `ip saddr ${n} ip daddr != 224.0.0.0/4 ${m}`,
    `ip saddr != ${n} ip daddr ${n} ${m}`,
  ];
}
