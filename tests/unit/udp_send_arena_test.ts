import { assertEquals } from "../helpers/assert.ts";
import { GSO_MAX_SEGMENTS, SendArena } from "../../lib/backend/udp/send_arena.ts";

/** Entries as [offset, bytes, datagrams, GSO size]. */
function entries(a: SendArena): number[][] {
  return Array.from(
    { length: a.count },
    (_, i) => [a.offsets[i] - a.dataStart, a.byteLengths[i], a.segments[i], a.gsoSize(i)],
  );
}

Deno.test("SendArena.append: back-to-back equal datagrams to one peer share a GSO send", () => {
  const a = new SendArena(8, 1 << 20);
  const p1 = Uint32Array.of(0xc0a84d02, 8285), p2 = Uint32Array.of(0xc0a84d03, 8285);
  let off = a.dataStart;
  const put = (len: number, peer: Uint32Array, gso = true, gap = 0) => {
    off += gap;
    a.append(off, len, peer, gso);
    off += len;
  };
  put(100, p1);
  put(100, p1);
  put(100, p1);
  put(60, p1); // shorter: ends the entry
  put(60, p1); // so this one starts a new one
  put(60, p2); // other peer
  put(60, p2, true, 4); // not right behind the previous one
  put(80, p2); // longer than the entry's size
  assertEquals(entries(a), [
    [0, 360, 4, 100],
    [360, 60, 1, 0],
    [420, 60, 1, 0],
    [484, 60, 1, 0],
    [544, 80, 1, 0],
  ]);
  a.clear();
  off = a.dataStart;
  for (let i = 0; i < GSO_MAX_SEGMENTS + 2; i++) put(100, p1, true);
  put(100, p1, false); // without GSO: one datagram per entry
  assertEquals(entries(a), [
    [0, 100 * GSO_MAX_SEGMENTS, GSO_MAX_SEGMENTS, 100],
    [100 * GSO_MAX_SEGMENTS, 200, 2, 100],
    [100 * (GSO_MAX_SEGMENTS + 2), 100, 1, 0],
  ]);
  a.clear();
  off = a.dataStart;
  for (let i = 0; i < 50; i++) put(1400, p1); // 65507-byte limit of one send
  assertEquals(entries(a).map((e) => e[2]), [46, 4]);
});
