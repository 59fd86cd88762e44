/**
 * Test helper for bulk TCP transfers through an overlay (run it inside a namespace):
 *
 *   serve <addr> <port>            accept one connection, read to EOF, print
 *                                  `RECEIVED <n> <sha256> <ms from accept to EOF>`
 *   send <addr> <port> <bytes>     send pseudo-random bytes, print `SENT <n> <sha256>`
 *
 * `serve` prints `LISTENING` once it accepts connections.
 */

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

const [mode, hostname, portText, bytesText] = Deno.args;
const port = Number(portText);

if (mode === "serve") {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  console.log("LISTENING");
  const conn = await listener.accept();
  const t0 = performance.now();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of conn.readable) {
    chunks.push(c);
    n += c.byteLength;
  }
  const ms = performance.now() - t0;
  const all = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.byteLength;
  }
  console.log(`RECEIVED ${n} ${await sha256(all)} ${ms.toFixed(1)}`);
  listener.close();
} else if (mode === "send") {
  const data = new Uint8Array(Number(bytesText));
  for (let off = 0; off < data.length; off += 65536) {
    crypto.getRandomValues(data.subarray(off, Math.min(off + 65536, data.length)));
  }
  const conn = await Deno.connect({ hostname, port, transport: "tcp" });
  const w = conn.writable.getWriter();
  await w.write(data);
  await w.close(); // also closes the connection: the server sees EOF
  console.log(`SENT ${data.length} ${await sha256(data)}`);
} else {
  console.error("usage: tcp_blob.ts serve|send <addr> <port> [bytes]");
  Deno.exit(2);
}
