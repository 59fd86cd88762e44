/**
 * Address literals for tests: the project's parsers, throwing on a typo instead of
 * handing a null on.
 * @module
 */

import {
  type IP4Net,
  type IP6Net,
  parseCIDR4,
  parseCIDR6,
  parseIP4,
  parseIP6,
} from "../../lib/core/ip.ts";
import { parseMAC } from "../../lib/core/mac.ts";

function must<T>(v: T | null, what: string, s: string): T {
  if (v === null) throw new Error(`not ${what}: ${JSON.stringify(s)}`);
  return v;
}

/** `10.5.1.2` as a u32. */
export const ip4 = (s: string): number => must(parseIP4(s), "an IPv4 address", s);
/** `10.5.1.0/24` (host bits masked). */
export const net4 = (s: string): IP4Net => must(parseCIDR4(s), "an IPv4 CIDR", s);
/** `fd00::1` as a bigint. */
export const ip6 = (s: string): bigint => must(parseIP6(s), "an IPv6 address", s);
/** `fd00::/64` (host bits masked). */
export const net6 = (s: string): IP6Net => must(parseCIDR6(s), "an IPv6 CIDR", s);
/** `0e:aa:bb:cc:dd:ee` as 6 bytes. */
export const mac = (s: string): Uint8Array => must(parseMAC(s), "a MAC address", s);
