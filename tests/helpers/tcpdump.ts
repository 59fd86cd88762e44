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

/**
 * Source address of the first ICMP echo request tcpdump sees on `dev` in `ns` while
 * `send` runs (tcpdump is listening before `send` starts).
 */
export async function echoSource(
  ns: string,
  dev: string,
  send: () => Promise<unknown>,
): Promise<string> {
  const p = await startTcpdump(ns, dev, "-c 1 'icmp[icmptype] = icmp-echo'");
  try {
    await send();
    const line = await p.waitFor((l) => l.includes("ICMP echo request"), "echo request", 5_000);
    return / IP (\S+) > /.exec(line)![1];
  } finally {
    await p.kill();
  }
}
