/** The check that keeps a dynamically linked busybox out of the containers' image. */

import { assert, assertThrows } from "../helpers/assert.ts";
import { elfHasInterpreter } from "../helpers/docker.ts";

Deno.test("elfHasInterpreter: a dynamically linked executable asks for one", () => {
  assert(elfHasInterpreter(Deno.readFileSync(Deno.execPath())), "deno is dynamically linked");
});

Deno.test("elfHasInterpreter: a static ELF has none; anything else is refused", () => {
  // The smallest 64-bit little-endian ELF header with one PT_LOAD program header.
  const elf = new Uint8Array(64 + 56);
  const v = new DataView(elf.buffer);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setBigUint64(0x20, 64n, true); // e_phoff
  v.setUint16(0x36, 56, true); // e_phentsize
  v.setUint16(0x38, 1, true); // e_phnum
  v.setUint32(64, 1, true); // PT_LOAD
  assert(!elfHasInterpreter(elf));
  v.setUint32(64, 3, true); // PT_INTERP
  assert(elfHasInterpreter(elf));
  assertThrows(() => elfHasInterpreter(new TextEncoder().encode("#!/bin/sh\necho hi\n")));
});
