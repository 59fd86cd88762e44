/**
 * Ethernet (MAC) addresses as 6-byte arrays, and their text form `aa:bb:cc:dd:ee:ff`
 * (lowercase, as Go's `net.HardwareAddr.String` writes `VtepMAC` into leases). Pure.
 * @module
 */

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** Parses `aa:bb:cc:dd:ee:ff`; null when invalid. */
export function parseMAC(s: string): Uint8Array | null {
  if (!MAC_RE.test(s)) return null;
  return Uint8Array.from(s.split(":"), (h) => parseInt(h, 16));
}

/** Formats bytes as lowercase colon-separated hex (any length, like Go). */
export function formatMAC(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
