/**
 * `/run/flannel/subnet.env`: the file Docker, CNI and mk-docker-opts.sh read. Formatting
 * and parsing are pure; {@link writeSubnetEnv} writes atomically (temp file + rename) with
 * mode 0644 regardless of umask, so a reader never sees half a file.
 * @module
 */

import {
  formatIP4,
  formatIP6,
  formatNet4,
  formatNet6,
  type IP4Net,
  type IP6Net,
  parseCIDR4,
  parseCIDR6,
} from "../core/ip.ts";

/** What subnet.env says. */
export interface SubnetEnv {
  network?: IP4Net;
  subnet?: IP4Net;
  ipv6Network?: IP6Net;
  ipv6Subnet?: IP6Net;
  mtu: number;
  ipMasq: boolean;
}

/** The exact text upstream writes: `FLANNEL_SUBNET` is the subnet's first host address. */
export function formatSubnetEnv(e: SubnetEnv): string {
  let s = "";
  if (e.network && e.subnet) {
    s += `FLANNEL_NETWORK=${formatNet4(e.network)}\n`;
    s += `FLANNEL_SUBNET=${formatIP4(e.subnet.ip + 1)}/${e.subnet.prefix}\n`;
  }
  if (e.ipv6Network && e.ipv6Subnet) {
    s += `FLANNEL_IPV6_NETWORK=${formatNet6(e.ipv6Network)}\n`;
    s += `FLANNEL_IPV6_SUBNET=${formatIP6(e.ipv6Subnet.ip + 1n)}/${e.ipv6Subnet.prefix}\n`;
  }
  s += `FLANNEL_MTU=${e.mtu}\n`;
  s += `FLANNEL_IPMASQ=${e.ipMasq}\n`;
  return s;
}

/** Parses dotenv-style text into a map; tolerant of quotes, comments, `export` and CRLF. */
export function parseDotenv(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (let line of text.split(/\r?\n/)) {
    line = line.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2];
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1);
    out.set(m[1], v);
  }
  return out;
}

/** The subnets of a previous run, as the allocator's "previous subnet" hint. */
export interface PreviousSubnets {
  subnet?: IP4Net;
  ipv6Subnet?: IP6Net;
  /** `FLANNEL_NETWORK`: with `subnet`, names the masquerade rules a previous run left. */
  network?: IP4Net;
  /** `FLANNEL_IPV6_NETWORK`, likewise. */
  ipv6Network?: IP6Net;
}

/**
 * Reads the previous subnet(s) from subnet.env text. Host bits are masked off
 * (`10.5.52.1/24` → `10.5.52.0/24`); a comma-separated list counts as none, as upstream.
 * Returns `{}` for anything unparseable: a corrupt file loses only the hint, never the run.
 */
export function previousSubnets(text: string): PreviousSubnets {
  const env = parseDotenv(text);
  const out: PreviousSubnets = {};
  const v4 = env.get("FLANNEL_SUBNET");
  if (v4 && !v4.includes(",")) {
    const n = parseCIDR4(v4);
    if (n) out.subnet = n;
  }
  const v6 = env.get("FLANNEL_IPV6_SUBNET");
  if (v6 && !v6.includes(",")) {
    const n = parseCIDR6(v6);
    if (n) out.ipv6Subnet = n;
  }
  const net4 = parseCIDR4(env.get("FLANNEL_NETWORK") ?? "");
  if (net4) out.network = net4;
  const net6 = parseCIDR6(env.get("FLANNEL_IPV6_NETWORK") ?? "");
  if (net6) out.ipv6Network = net6;
  return out;
}

/** Reads the previous subnets from a file; missing or unreadable gives `{}` plus the reason. */
export async function readPreviousSubnets(
  path: string,
): Promise<{ prev: PreviousSubnets; problem?: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { prev: {} };
    return { prev: {}, problem: `cannot read ${path}: ${(e as Error).message}` };
  }
  const prev = previousSubnets(text);
  if (!prev.subnet && !prev.ipv6Subnet && text.trim() !== "") {
    return { prev, problem: `${path} holds no usable FLANNEL_SUBNET; ignoring it` };
  }
  return { prev };
}

/** Writes the file atomically: directory 0755 created, temp file 0644 in the same dir, rename. */
export async function writeSubnetEnv(path: string, e: SubnetEnv): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    await Deno.writeTextFile(tmp, formatSubnetEnv(e), { mode: 0o644 });
    await Deno.chmod(tmp, 0o644); // mode at create is filtered by umask
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
