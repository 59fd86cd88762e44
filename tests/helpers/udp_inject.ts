/**
 * Test helper: sends raw UDP datagrams from a chosen local address (run it inside a
 * namespace): `udp_inject.ts <from-addr> <to-addr> <port> <base64>…`, one datagram each.
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";

const [from, to, port, ...payloads] = Deno.args;
const sock = dgram.createSocket("udp4");
await new Promise<void>((resolve, reject) => {
  sock.once("error", reject);
  sock.bind({ address: from, port: 0 }, () => resolve());
});
for (const p of payloads) {
  await new Promise<void>((resolve, reject) =>
    sock.send(Buffer.from(p, "base64"), Number(port), to, (err) => err ? reject(err) : resolve())
  );
}
sock.close();
console.log(`SENT ${payloads.length}`);
