// Unit tests for lib/values/subnet_env.ts: subnet.env as upstream writes it (FLANNEL_NETWORK,
// FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ and the IPv6 keys), its atomic write, and
// reading back a previous run's subnets.
import { assert, assertEquals, assertMatch, assertRejects } from "../helpers/assert.ts";
import { eachCase } from "./table.ts";
import { formatNet4, formatNet6, parseCIDR4, parseCIDR6 } from "../../lib/core/ip.ts";
import {
  formatSubnetEnv,
  parseDotenv,
  previousSubnets,
  readPreviousSubnets,
  type SubnetEnv,
  writeSubnetEnv,
} from "../../lib/values/subnet_env.ts";

const V4: SubnetEnv = {
  network: parseCIDR4("10.5.0.0/16")!,
  subnet: parseCIDR4("10.5.52.0/24")!,
  mtu: 1450,
  ipMasq: true,
};
const DUAL: SubnetEnv = {
  ...V4,
  ipv6Network: parseCIDR6("2001:cafe:42::/56")!,
  ipv6Subnet: parseCIDR6("2001:cafe:42::/64")!,
  mtu: 1472,
  ipMasq: false,
};
const V4_TEXT =
  "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

Deno.test("formatSubnetEnv: exact text, v4 / dual-stack / v6-only", () => {
  assertEquals(formatSubnetEnv(V4), V4_TEXT);
  assertEquals(
    formatSubnetEnv(DUAL),
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\n" +
      "FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n" +
      "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
  );
  const v6only: SubnetEnv = {
    ...DUAL,
    network: undefined,
    subnet: undefined,
    ipv6Subnet: parseCIDR6("fd00:0:0:7::/64")!,
  };
  assertEquals(
    formatSubnetEnv(v6only),
    "FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:7::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
  );
  // Subnet IP + 1 carries across octets.
  assertMatch(
    formatSubnetEnv({ ...V4, subnet: parseCIDR4("10.5.0.0/23")! }),
    /^FLANNEL_SUBNET=10\.5\.0\.1\/23$/m,
  );
});

/** previousSubnets as text, for compact expectations. */
function prevText(text: string): [string?, string?] {
  const p = previousSubnets(text);
  return [p.subnet && formatNet4(p.subnet), p.ipv6Subnet && formatNet6(p.ipv6Subnet)];
}

Deno.test("previousSubnets masks host bits and reads both families", () => {
  const cases: [string, [string?, string?]][] = [
    [V4_TEXT, ["10.5.52.0/24", undefined]],
    [formatSubnetEnv(DUAL), ["10.5.52.0/24", "2001:cafe:42::/64"]],
    ["FLANNEL_SUBNET=10.5.52.77/26\n", ["10.5.52.64/26", undefined]],
    ["FLANNEL_IPV6_SUBNET=fd00::1:2/112", [undefined, "fd00::1:0/112"]],
    // dotenv tolerance: CRLF, export, quotes, comments, spaces around '='.
    ['# old file\r\nexport FLANNEL_SUBNET="10.5.52.1/24"\r\n', ["10.5.52.0/24", undefined]],
    ["FLANNEL_SUBNET = '10.5.53.1/24'", ["10.5.53.0/24", undefined]],
  ];
  eachCase(prevText, cases);
});

Deno.test("previousSubnets: comma lists count as none; corrupt input gives {} without throwing", () => {
  const none = [
    "FLANNEL_SUBNET=10.5.52.1/24,10.5.53.1/24\nFLANNEL_IPV6_SUBNET=fd00::1/64,fd00:1::1/64\n",
    "",
    "garbage\x00\xff\n===\n",
    "FLANNEL_SUBNET=10.5.52.1\n", // no prefix
    "FLANNEL_SUBNET=300.5.52.1/24\nFLANNEL_IPV6_SUBNET=not-an-ip/64\n",
    "FLANNEL_SUBNET=\n",
    "FLANNEL_SUBNET10.5.52.1/24\n",
  ];
  eachCase(previousSubnets, none.map((t) => [t, {}]));
  // One bad family does not lose the other.
  assertEquals(prevText("FLANNEL_SUBNET=10.5.52.1/24,x\nFLANNEL_IPV6_SUBNET=fd00::1/64\n"), [
    undefined,
    "fd00::/64",
  ]);
});

Deno.test("parseDotenv: last assignment wins, invalid names skipped", () => {
  const m = parseDotenv("A=1\nA=2\n1B=3\nC=has=equals\n  D =  x  \n");
  assertEquals([...m], [["A", "2"], ["C", "has=equals"], ["D", "x"]]);
});

/** Runs `fn` in a fresh temp dir with the given umask, restoring both afterwards. */
async function inTempDir(umask: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "subnet_env_test_" });
  const old = Deno.umask(umask);
  try {
    await fn(dir);
  } finally {
    Deno.umask(old);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("writeSubnetEnv: content, mode 0644 under umask 077, directory created, atomic", async () => {
  await inTempDir(0o077, async (dir) => {
    const path = `${dir}/run/flannel/subnet.env`;
    await writeSubnetEnv(path, V4);
    assertEquals(await Deno.readTextFile(path), V4_TEXT);
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o644);
    assert((await Deno.stat(`${dir}/run/flannel`)).isDirectory);
    // Overwrite an existing (read-only, stale) file: replaced, still 0644, no temp left over.
    // Atomic = a new inode renamed into place: a hard link to the old file keeps the old text.
    await Deno.chmod(path, 0o400);
    await Deno.link(path, `${dir}/old.link`);
    await writeSubnetEnv(path, DUAL);
    assertEquals(await Deno.readTextFile(path), formatSubnetEnv(DUAL));
    assertEquals(await Deno.readTextFile(`${dir}/old.link`), V4_TEXT);
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o644);
    const names = [];
    for await (const e of Deno.readDir(`${dir}/run/flannel`)) names.push(e.name);
    assertEquals(names, ["subnet.env"]);
  });
});

Deno.test("writeSubnetEnv: failure leaves no temp file and throws", async () => {
  await inTempDir(0o022, async (dir) => {
    const path = `${dir}/subnet.env`;
    await Deno.mkdir(path); // rename onto a directory fails
    await assertRejects(() => writeSubnetEnv(path, V4));
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assertEquals(names, ["subnet.env"]);
  });
});

Deno.test("readPreviousSubnets: missing file, usable file, unusable file", async () => {
  await inTempDir(0o022, async (dir) => {
    assertEquals(await readPreviousSubnets(`${dir}/absent.env`), { prev: {} });
    await writeSubnetEnv(`${dir}/ok.env`, DUAL);
    const ok = await readPreviousSubnets(`${dir}/ok.env`);
    const { subnet, ipv6Subnet, network, ipv6Network } = DUAL;
    assertEquals(ok, { prev: { subnet, ipv6Subnet, network, ipv6Network } });
    await Deno.writeTextFile(`${dir}/bad.env`, "FLANNEL_SUBNET=a,b\n");
    const bad = await readPreviousSubnets(`${dir}/bad.env`);
    assertEquals(bad.prev, {});
    assertMatch(bad.problem!, /no usable FLANNEL_SUBNET/);
    const dirRead = await readPreviousSubnets(dir); // a directory: unreadable, not fatal
    assertEquals(dirRead.prev, {});
    assertMatch(dirRead.problem!, /cannot read/);
  });
});
