/**
 * tcpdump inside a namespace, its text output read line by line.
 * @module
 */

import { LineProcess } from "./line_process.ts";

/**
 * Starts `tcpdump -i dev -n -l --immediate-mode <args>` in `ns` (stderr folded into stdout)
 * and resolves once it captures, so that traffic sent afterwards is seen. Kill it when done.
 */
export async function startTcpdump(ns: string, dev: string, args: string): Promise<LineProcess> {
  const p = new LineProcess(`tcpdump ${dev}`, "ip", [
    "netns",
    "exec",
    ns,
    "sh",
    "-c",
    `exec tcpdump -i ${dev} -n -l --immediate-mode ${args} 2>&1`,
  ]);
  // "tcpdump: listening on …" when writing a file, "listening on …" otherwise.
  await p.waitLine(/-w /.test(args) ? "tcpdump: listening" : "listening on", 10_000).catch(
    async (e) => {
      await p.kill();
      throw e;
    },
  );
  return p;
}
