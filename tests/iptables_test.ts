/**
 * ip-masq and forward rules through our daemon in the namespace cluster (root only):
 * upstream's rule text and order in `iptables-save`, a hand-deleted rule restored by the
 * resync, masquerading of container→outside traffic but not container↔container, and
 * nftables mode. Every rule lives in the cluster's namespaces, never the root one.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { formatNet4, parseCIDR4 } from "../lib/core/ip.ts";
import { supportsRandomFully } from "../lib/iptables/rules.ts";
import { Cluster, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { sleep, until } from "./helpers/wait.ts";
import {
  upstreamForwardLines,
  upstreamMasqLines,
  upstreamNftMasqLines,
} from "./helpers/flannel_rules.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { must, nsExec, ROOT_TEST } from "./helpers/netns.ts";
import { echoSource } from "./helpers/tcpdump.ts";

const RESTORED = "some rules were missing";

/** The flannel lines of one table of `iptables-save` (or `save`) inside `ns`, in order. */
async function flannelLines(ns: string, table: string, save = "iptables-save"): Promise<string[]> {
  const out = must(await nsExec(ns, save, ["-t", table]), `${save} -t ${table}`);
  return out.split("\n").filter((l) => l.includes("flanneld"));
}

/** Arguments of a "flanneld masq" RETURN rule from `src` to `dst`. */
function returnRule(src: string, dst: string): string[] {
  return ["-s", src, "-d", dst, "-m", "comment", "--comment", "flanneld masq", "-j", "RETURN"];
}

/** The host's lease subnet as a CIDR (`10.5.52.0/24`) from its subnet.env. */
function leaseSubnet(c: Cluster, h: Host): string {
  return formatNet4(parseCIDR4(c.hostSubnetEnv(h)!.FLANNEL_SUBNET)!);
}

Deno.test({
  name:
    "iptables mode: upstream rules in order, resync restores, masquerade only leaving the overlay",
  ...ROOT_TEST,
  fn: async (t) => {
    await using c = await Cluster.create({
      hosts: 2,
      containersPerHost: 1,
      backend: "udp",
      daemonArgs: ["--ip-masq", "--iptables-resync=1"],
    });
    const [h0, h1] = c.hosts;
    const n = c.hostSubnetEnv(h0)!.FLANNEL_NETWORK;
    const version = must(await nsExec(h0.ns, "iptables", ["--version"]), "iptables --version");
    const randomFully = supportsRandomFully(version, Deno.osRelease());
    console.log(`${version.trim()}; --random-fully ${randomFully ? "used" : "not supported"}`);

    await t.step("iptables-save shows upstream's text and order", async () => {
      for (const h of c.hosts) {
        assertEquals(
          await flannelLines(h.ns, "nat"),
          upstreamMasqLines(n, leaseSubnet(c, h), randomFully),
        );
        assertEquals(await flannelLines(h.ns, "filter"), upstreamForwardLines(n));
      }
      // Installed rules read back as complete: two resyncs (1 s) pass and leave them alone.
      await sleep(2_500);
      assert(!c.daemonLog(h0).includes(RESTORED), c.daemonLog(h0));
    });

    await t.step("rules deleted by hand come back within the resync period", async () => {
      const s = leaseSubnet(c, h0);
      const want = upstreamMasqLines(n, s, randomFully);
      must(
        await nsExec(h0.ns, "iptables", [
          "-t",
          "nat",
          "-D",
          "FLANNEL-POSTRTG",
          ...returnRule(s, n),
        ]),
        "iptables -D",
      );
      assertEquals((await flannelLines(h0.ns, "nat")).length, want.length - 1);
      const t0 = Date.now();
      await until(
        "masq rule restored",
        async () => (await flannelLines(h0.ns, "nat")).length === want.length,
        5_000,
        100,
      );
      console.log(`masq rule restored after ${Date.now() - t0} ms`);
      assertEquals(await flannelLines(h0.ns, "nat"), want);
      // A whole chain flushed (what an admin's `iptables -F` does).
      must(await nsExec(h0.ns, "iptables", ["-t", "filter", "-F", "FLANNEL-FWD"]), "iptables -F");
      await until(
        "forward rules restored",
        async () => (await flannelLines(h0.ns, "filter")).length === 3,
        5_000,
        100,
      );
      assertEquals(await flannelLines(h0.ns, "filter"), upstreamForwardLines(n));
      assert(c.daemonLog(h0).includes("restorations=2"), c.daemonLog(h0));
    });

    await t.step(
      "container→outside is masqueraded, container↔container keeps its address",
      async () => {
        const [c0, c1] = [h0.containers[0], h1.containers[0]];
        // The switch's gateway stands for "outside": it has no route back to 10.5/16, so
        // only a masqueraded ping gets a reply.
        let answered = false;
        const src = await echoSource(c.switchNs, "br0", async () => {
          answered = (await c.ping(c0.ns, UNDERLAY.gateway, { count: 1, timeout: 2 })).ok;
        });
        assertEquals(src, h0.ip);
        assert(answered, "masqueraded ping to the outside answered");
        const inner = await echoSource(
          h1.ns,
          "cni0",
          () => c.ping(c0.ns, c1.ip!, { count: 1, timeout: 2 }),
        );
        assertEquals(inner, c0.ip);
      },
    );

    await t.step(
      "a restart removes a previous subnet's rules and keeps rules in place meanwhile",
      async () => {
        const s = leaseSubnet(c, h0);
        const stale = "10.5.250.0/24";
        await c.stopDaemon(h0);
        // Rules stay after exit, as upstream's.
        assertEquals(await flannelLines(h0.ns, "nat"), upstreamMasqLines(n, s, randomFully));
        // A previous run on another subnet: its subnet.env and one of its rules.
        const file = `${h0.dir}/subnet.env`;
        const text = await Deno.readTextFile(file);
        await Deno.writeTextFile(
          file,
          text.replace(/^FLANNEL_SUBNET=.*$/m, "FLANNEL_SUBNET=10.5.250.1/24"),
        );
        const rule = returnRule(stale, n);
        must(
          await nsExec(h0.ns, "iptables", ["-t", "nat", "-I", "FLANNEL-POSTRTG", "1", ...rule]),
          "iptables -I",
        );
        await c.startDaemon(h0);
        assert(
          c.daemonLog(h0).includes(
            `removed stale masquerade rules of a previous run network=${n} subnet=${stale}`,
          ),
        );
        assertEquals(await flannelLines(h0.ns, "nat"), upstreamMasqLines(n, s, randomFully));
      },
    );
  },
});

Deno.test({
  name:
    "nftables mode: flannel-ipv4 table with forward and postrtg chains; iptables chains removed",
  ...ROOT_TEST,
  fn: async () => {
    await using c = await Cluster.create({
      hosts: 1,
      backend: "udp",
      config: { EnableNFTables: true },
      daemonArgs: ["--ip-masq", "--iptables-resync=1"],
      startDaemons: false,
    });
    const [h0] = c.hosts;
    // A previous iptables-mode run's chain, which nftables mode must clean away.
    must(await nsExec(h0.ns, "iptables", ["-t", "filter", "-N", "FLANNEL-FWD"]), "iptables -N");
    must(
      await nsExec(h0.ns, "iptables", [
        "-t",
        "filter",
        "-A",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "flanneld forward",
        "-j",
        "FLANNEL-FWD",
      ]),
      "iptables -A",
    );
    const env = await c.startDaemon(h0);
    const [n, s] = [env.FLANNEL_NETWORK, leaseSubnet(c, h0)];
    const rulesOf = async (chain: string) => {
      const out = must(
        await nsExec(h0.ns, "nft", ["list", "chain", "ip", "flannel-ipv4", chain]),
        `nft list chain ${chain}`,
      );
      return out.split("\n").map((l) => l.trim()).filter((l) => /^(ip|meta) /.test(l));
    };
    const table = must(
      await nsExec(h0.ns, "nft", ["list", "table", "ip", "flannel-ipv4"]),
      "nft list table",
    );
    console.log(table);
    assert(table.includes("type nat hook postrouting priority srcnat;"), table);
    assert(table.includes("type filter hook forward priority filter;"), table);
    assertEquals(await rulesOf("forward"), [`ip saddr ${n} accept`, `ip daddr ${n} accept`]);
    const masq = await rulesOf("postrtg");
    const randomFully = masq.at(-1)!.endsWith("fully-random");
    assertEquals(masq, upstreamNftMasqLines(n, s, randomFully));
    assertEquals(await flannelLines(h0.ns, "filter"), []);
    assert(!must(await nsExec(h0.ns, "iptables-save", []), "iptables-save").includes("FLANNEL-"));
    // The resync restores a flushed chain here too.
    must(
      await nsExec(h0.ns, "nft", ["flush", "chain", "ip", "flannel-ipv4", "postrtg"]),
      "nft flush chain",
    );
    await until(
      "postrtg restored",
      async () => (await rulesOf("postrtg")).length === masq.length,
      5_000,
      100,
    );
    assertEquals(await rulesOf("postrtg"), masq);
  },
});

Deno.test({
  name: "iptables-legacy hosts get the rules through the legacy tools",
  ...ROOT_TEST,
  fn: async () => {
    // What Debian's alternatives do on a legacy host: `iptables*` name the legacy binaries.
    const bin = await Deno.makeTempDir({ prefix: "flannel-legacy-bin-" });
    try {
      for (
        const tool of [
          "iptables",
          "iptables-save",
          "iptables-restore",
          "ip6tables",
          "ip6tables-save",
          "ip6tables-restore",
        ]
      ) {
        await Deno.symlink(`/usr/sbin/${tool.replace(/(tables)/, "$1-legacy")}`, `${bin}/${tool}`);
      }
      await using c = await Cluster.create({
        hosts: 1,
        backend: "udp",
        daemonArgs: ["--ip-masq"],
        daemonCommand: ["env", `PATH=${bin}:${Deno.env.get("PATH")}`, ...DEFAULT_DAEMON_COMMAND],
      });
      const [h0] = c.hosts;
      const n = c.hostSubnetEnv(h0)!.FLANNEL_NETWORK;
      const version = must(
        await nsExec(h0.ns, "iptables-legacy", ["--version"]),
        "iptables-legacy --version",
      );
      const randomFully = supportsRandomFully(version, Deno.osRelease());
      assertEquals(
        await flannelLines(h0.ns, "nat", "iptables-legacy-save"),
        upstreamMasqLines(n, leaseSubnet(c, h0), randomFully),
      );
      assertEquals(
        await flannelLines(h0.ns, "filter", "iptables-legacy-save"),
        upstreamForwardLines(n),
      );
      assert(c.daemonLog(h0).includes("variant=legacy"), c.daemonLog(h0));
      assertEquals(await flannelLines(h0.ns, "nat"), [], "nothing in the nf_tables variant");
    } finally {
      await Deno.remove(bin, { recursive: true });
    }
  },
});
