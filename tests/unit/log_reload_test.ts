/** SIGHUP's log level reload from the environment file, without a daemon. */

import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { reloadVerbosity } from "../../lib/daemon/log_reload.ts";
import { getVerbosity, setSink, setVerbosity } from "../../lib/core/log.ts";

Deno.test("reloadVerbosity: FLANNELD_V from the file, fallback without it, unchanged on errors", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/flanneld`;
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  setVerbosity(0);
  try {
    const cases: [string | null, number, string][] = [
      ["FLANNELD_V=4\n", 4, "log level now 4 (was 0)"],
      ["FLANNELD_V=11\n", 4, "must be between 0 and 10"],
      ["FLANNELD_V=x\n", 4, 'invalid value "x" for FLANNELD_V'],
      [null, 4, "cannot read"],
      ["FLANNELD_IFACE=eth0\n", 2, "log level now 2 (was 4)"],
    ];
    for (const [text, want, line] of cases) {
      if (text === null) await Deno.remove(file);
      else await Deno.writeTextFile(file, text);
      lines.length = 0;
      assertEquals(await reloadVerbosity(file, 2), want);
      assertEquals(getVerbosity(), want);
      assertEquals(lines.length, 1, lines.join("\n"));
      assertStringIncludes(lines[0], line);
    }
  } finally {
    setSink(prev);
    setVerbosity(0);
    await Deno.remove(dir, { recursive: true });
  }
});
