/**
 * Hand-made IPv4 packets for data-path tests, and sending them as UDP datagrams from a
 * chosen address inside a namespace (through `udp_inject.ts`).
 * @module
 */

import { internetChecksum } from "../../lib/backend/udp/packet.ts";
import { parseIP4 } from "../../lib/core/ip.ts";
import { nsExec } from "./netns.ts";

/** A well-formed IPv4/UDP packet (to port 9, zero UDP checksum) with a valid header checksum. */
export function ipv4Packet(
  src: string,
  dst: string,
  ttl = 64,
  payload = 16,
): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(20 + 8 + payload);
  const v = new DataView(b.buffer);
  v.setUint32(0, 0x45000000 | b.length);
  v.setUint32(4, 0x4000_0000 >>> 16); // DF
  b[8] = ttl;
  b[9] = 17;
  v.setUint32(12, parseIP4(src)!);
  v.setUint32(16, parseIP4(dst)!);
  v.setUint16(10, internetChecksum(v, 0, 20));
  v.setUint16(20, 40000);
  v.setUint16(22, 9); // discard
  v.setUint16(24, 8 + payload);
  return b;
}

/**
 * Sends each of `payloads` as one UDP datagram from `from` (an address in `ns`) to
 * `to:port`; throws when the sender fails.
 */
export async function injectUdp(
  ns: string,
  from: string,
  to: string,
  port: number,
  payloads: Uint8Array[],
): Promise<void> {
  const b64 = (b: Uint8Array) => btoa(Array.from(b, (x) => String.fromCharCode(x)).join(""));
  const r = await nsExec(ns, Deno.execPath(), [
    "run",
    "-A",
    new URL("./udp_inject.ts", import.meta.url).pathname,
    from,
    to,
    String(port),
    ...payloads.map(b64),
  ]);
  if (r.code !== 0) throw new Error(`udp_inject from ${from} failed: ${r.stderr}`);
}
