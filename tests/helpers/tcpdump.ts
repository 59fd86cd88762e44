/**
 * tcpdump inside a namespace: its text output read line by line, or a capture file read
 * back as UDP datagrams.
 * @module
 */

import { LineProcess } from "./line_process.ts";
import { type CapturedUdp, udpDatagrams } from "./pcap.ts";
import { until } from "./wait.ts";

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
 * Captures on `dev` in `ns` into a pcap file (tcpdump filter `filter`) while `during` runs,
 * until the file stops growing; returns the UDP datagrams in it.
 */
export async function captureUdp(
  ns: string,
  dev: string,
  filter: string,
  during: () => Promise<unknown>,
): Promise<CapturedUdp[]> {
  const file = await Deno.makeTempFile({ prefix: "flcap-", suffix: ".pcap" });
  try {
    const dump = await startTcpdump(ns, dev, `-U -w ${file} ${filter}`);
    try {
      await during();
      // -U writes each packet as tcpdump handles it: once the file stops growing, every
      // packet `during` caused is in it.
      let size = -1;
      await until(
        "the capture to settle",
        async () => {
          const now = (await Deno.stat(file)).size;
          const settled = now === size;
          size = now;
          return settled;
        },
        10_000,
        200,
      );
    } finally {
      await dump.kill("SIGINT");
    }
    return udpDatagrams(await Deno.readFile(file));
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/**
 * Source address of the first ICMP echo request (ICMPv6 with `family` 6) tcpdump sees on
 * `dev` in `ns` while `send` runs (tcpdump is listening before `send` starts).
 */
export async function echoSource(
  ns: string,
  dev: string,
  send: () => Promise<unknown>,
  family: 4 | 6 = 4,
): Promise<string> {
  // ip6[40] is the ICMPv6 type right after a bare IPv6 header; 128 is echo request.
  const filter = family === 6 ? "'icmp6 and ip6[40] == 128'" : "'icmp[icmptype] = icmp-echo'";
  const p = await startTcpdump(ns, dev, `-c 1 ${filter}`);
  try {
    await send();
    const line = await p.waitFor((l) => /echo request/i.test(l), "echo request", 5_000);
    return (family === 6 ? / IP6 (\S+) > / : / IP (\S+) > /).exec(line)![1];
  } finally {
    await p.kill();
  }
}
