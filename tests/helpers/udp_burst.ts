/**
 * Test helper for bursts of UDP datagrams through an overlay (run it inside a namespace):
 *
 *   recv <addr> <port> <count> <ms>   print `LISTENING`, then `RECEIVED <n> <bad>` once
 *                                     `count` arrived or `ms` passed (`bad`: payloads
 *                                     not as sent)
 *   send <addr> <port> <count> <size> send `count` datagrams of `size` bytes with ONE
 *                                     sendmmsg, so they leave back to back; print `SENT`
 *
 * Datagram i carries i (u32) followed by bytes derived from i, so the receiver can check
 * every payload without knowing the order.
 */
import dgram from "node:dgram";
import { AF_INET, check, libc, SOCK_DGRAM, sockaddrIn, socket } from "../../ffi/libc.ts";
import { MsgBatch } from "../../lib/backend/udp/mmsg.ts";
import { parseIP4 } from "../../lib/core/ip.ts";

/** The payload of datagram `i`, `size` bytes. */
function payload(i: number, size: number): Uint8Array {
  const p = new Uint8Array(size);
  new DataView(p.buffer).setUint32(0, i);
  for (let k = 4; k < size; k++) p[k] = (i * 31 + k * 7) & 0xff;
  return p;
}

const [mode, addr, portText, countText, arg] = Deno.args;
const port = Number(portText), count = Number(countText);

if (mode === "send") {
  const size = Number(arg);
  const fd = socket(AF_INET, SOCK_DGRAM, 0);
  const to = sockaddrIn(parseIP4(addr)!, port);
  check("connect", libc.connect(fd, to, to.byteLength));
  const batch = new MsgBatch(count, size);
  for (let i = 0; i < count; i++) {
    batch.packets[i].set(payload(i, size));
    batch.setLength(i, size);
  }
  // Connected socket: no destination per message.
  for (let i = 0; i < count; i++) batch.view.setUint32(i * 64 + 8, 0, true);
  let sent = 0;
  while (sent < count) {
    sent += check("sendmmsg", libc.sendmmsg(fd, batch.headers[sent], count - sent, 0));
  }
  console.log("SENT");
} else {
  const sock = dgram.createSocket("udp4");
  let n = 0, bad = 0;
  const done = Promise.withResolvers<void>();
  sock.on("message", (m: Uint8Array) => {
    const i = new DataView(m.buffer, m.byteOffset).getUint32(0);
    const want = payload(i, m.length);
    if (i >= count || want.some((b, k) => b !== m[k])) bad++;
    if (++n === count) done.resolve();
  });
  await new Promise<void>((r) => sock.bind({ address: addr, port }, () => r()));
  console.log("LISTENING");
  const timer = setTimeout(() => done.resolve(), Number(arg));
  await done.promise;
  clearTimeout(timer);
  console.log(`RECEIVED ${n} ${bad}`);
  sock.close();
}
