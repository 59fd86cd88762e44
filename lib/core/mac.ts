/**
 * Ethernet (MAC) addresses as 6-byte arrays, and their text form `aa:bb:cc:dd:ee:ff`
 * (lowercase, as Go's `net.HardwareAddr.String` writes `VtepMAC` into leases). Pure.
 * @module
 */

// The three 48-bit forms Go's net.ParseMAC reads (upstream reads VtepMAC with it).
const COLON = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const DASH = /^[0-9a-f]{2}(-[0-9a-f]{2}){5}$/i;
const DOT = /^[0-9a-f]{4}(\.[0-9a-f]{4}){2}$/i;

/**
 * Parses `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` or `aabb.ccdd.eeff` (any case); null when
 * invalid. Go also reads 8- and 20-byte addresses, which no VXLAN device can carry.
 */
export function parseMAC(s: string): Uint8Array | null {
  if (!COLON.test(s) && !DASH.test(s) && !DOT.test(s)) return null;
  const hex = s.replace(/[:.-]/g, "");
  return Uint8Array.from({ length: 6 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

/** Formats bytes as lowercase colon-separated hex (any length, like Go). */
export function formatMAC(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Byte-wise MAC equality; a missing address equals nothing. */
export function sameMAC(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}
