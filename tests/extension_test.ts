/**
 * The extension backend end to end in a namespace cluster (root only): upstream's two
 * documented examples (host-gw by commands, vxlan by commands) carry traffic and clean up
 * after a lease is removed; a failing command is retried and a hanging one killed without
 * holding back other leases; and the lease value is upstream's, byte for byte, checked
 * against upstream's own flanneld where it is available.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { formatIP4, formatNet4, type IP4Net } from "../lib/core/ip.ts";
import { Cluster, type Host, UNDERLAY } from "./helpers/cluster.ts";
import { DEFAULT_DAEMON_COMMAND } from "./helpers/daemon.ts";
import { DAEMON_PERMISSIONS, DAEMON_RUNTIME_FLAGS } from "../dist/compile.ts";
import { scrapeMetrics } from "./helpers/health_http.ts";
import {
  assertAllAnswered,
  execOk,
  hostSubnet,
  joinAndLeave,
  logCount,
  rawLease,
} from "./helpers/peer_datapath.ts";
import { sleep, timeUntil } from "./helpers/wait.ts";
import { ROOT_TEST } from "./helpers/netns.ts";
import { UPSTREAM_FLANNELD, UPSTREAM_PRESENT, UPSTREAM_SKIP } from "./helpers/upstream.ts";

const opts = ROOT_TEST;

/** Upstream's host-gw example (Documentation/extension.md), verbatim. */
const HOSTGW_EXAMPLE = {
  Network: "10.0.0.0/16",
  Backend: {
    Type: "extension",
    SubnetAddCommand: "ip route add $SUBNET via $PUBLIC_IP",
    SubnetRemoveCommand: "ip route del $SUBNET via $PUBLIC_IP",
  },
};

/**
 * Upstream's vxlan example, verbatim, plus a SubnetRemoveCommand (upstream's has none, so
 * a removed lease would keep its route, neighbour and FDB entry).
 */
const VXLAN_EXAMPLE = {
  Network: "10.50.0.0/16",
  Backend: {
    Type: "extension",
    PreStartupCommand:
      "export VNI=1; export IF_NAME=flannel-vxlan; ip link del $IF_NAME 2>/dev/null; ip link add $IF_NAME type vxlan id $VNI dstport 8472 && cat /sys/class/net/$IF_NAME/address",
    PostStartupCommand:
      "export IF_NAME=flannel-vxlan; export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; ip addr add $SUBNET_IP/32 dev $IF_NAME && ip link set $IF_NAME up",
    SubnetAddCommand:
      "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; ip route add $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink && arp -s $SUBNET_IP $VTEP dev $IF_NAME && bridge fdb add $VTEP dev $IF_NAME self dst $PUBLIC_IP",
    SubnetRemoveCommand:
      "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; ip route del $SUBNET via $SUBNET_IP dev $IF_NAME; ip neigh del $SUBNET_IP dev $IF_NAME; bridge fdb del $VTEP dev $IF_NAME self dst $PUBLIC_IP",
  },
};

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** `ip route` of a host in iproute2's text. */
function routes(c: Cluster, h: Host): Promise<string> {
  return execOk(c, h.ns, ["ip", "route"]);
}

/** Every remaining host ran SubnetRemoveCommand once for `sn`, and no command failed. */
function assertRemovesRan(c: Cluster, sn: IP4Net): void {
  for (const h of c.hosts) {
    const log = c.daemonLog(h);
    const line = `ran SubnetRemoveCommand subnet=${formatNet4(sn)} `;
    assertEquals(logCount(c, h, line), 1, `${h.name}: ${log}`);
    assertEquals(logCount(c, h, "Command failed"), 0, `${h.name}: ${log}`);
  }
}

/** `ip route`, `ip neigh` and `bridge fdb` of the vxlan example's device. */
function kernelText(c: Cluster, h: Host): Promise<string[]> {
  return Promise.all([
    routes(c, h),
    execOk(c, h.ns, ["ip", "neigh", "show", "dev", "flannel-vxlan"]),
    execOk(c, h.ns, ["bridge", "fdb", "show", "dev", "flannel-vxlan"]),
  ]);
}

async function vtepMAC(c: Cluster, h: Host): Promise<string> {
  return (await execOk(c, h.ns, ["cat", "/sys/class/net/flannel-vxlan/address"])).trim();
}

Deno.test(
  { name: "extension: upstream's host-gw example, 3 hosts × 2 containers", ...opts },
  async (t) => {
    await using c = await Cluster.create({
      hosts: 3,
      containersPerHost: 2,
      backend: "extension",
      network: HOSTGW_EXAMPLE.Network,
      config: HOSTGW_EXAMPLE,
    });
    const check = async (h: Host) => {
      assertEquals(
        await rawLease(c, h),
        `{"PublicIP":"${h.ip}","PublicIPv6":null,"BackendType":"extension"}`,
        "no PreStartupCommand: no BackendData, as upstream",
      );
      assertEquals(c.hostSubnetEnv(h)!.FLANNEL_MTU, "1500");
      const text = await routes(c, h);
      for (const p of c.hosts.filter((x) => x !== h)) {
        const sn = formatNet4(hostSubnet(c, p));
        assert(
          new RegExp(`^${escapeRe(sn)} via ${escapeRe(p.ip)} dev eth0`, "m").test(text),
          `${h.name} has no route ${sn} via ${p.ip}:\n${text}`,
        );
      }
    };

    await t.step("all pairs ping", async () => {
      assertAllAnswered(await c.pingAll({ count: 1 }));
    });
    await t.step("lease value, MTU and a route per peer", async () => {
      for (const h of c.hosts) await check(h);
    });
    await t.step("a host joins and leaves: its routes come and go", async () => {
      let left = hostSubnet(c, 0);
      await joinAndLeave(c, c.hosts[0].containers[0], async (h, sn) => {
        left = sn;
        return !(await routes(c, h)).includes(`${formatNet4(sn)} `);
      }, check);
      assertRemovesRan(c, left);
    });
  },
);

Deno.test(
  { name: "extension: upstream's vxlan example, 3 hosts × 2 containers", ...opts },
  async (t) => {
    await using c = await Cluster.create({
      hosts: 3,
      containersPerHost: 2,
      backend: "extension",
      network: VXLAN_EXAMPLE.Network,
      config: VXLAN_EXAMPLE,
    });
    const check = async (h: Host) => {
      const mac = await vtepMAC(c, h);
      assertEquals(
        await rawLease(c, h),
        `{"PublicIP":"${h.ip}","PublicIPv6":null,"BackendType":"extension","BackendData":"${mac}"}`,
        "BackendData: what PreStartupCommand printed, as a JSON string",
      );
      const [r, n, f] = await kernelText(c, h);
      for (const p of c.hosts.filter((x) => x !== h)) {
        const sn = hostSubnet(c, p);
        const gw = formatIP4(sn.ip);
        const pmac = await vtepMAC(c, p);
        const want = [
          [r, `^${escapeRe(formatNet4(sn))} via ${escapeRe(gw)} dev flannel-vxlan onlink`],
          [n, `^${escapeRe(gw)} lladdr ${pmac} PERMANENT`],
          [f, `^${pmac} dst ${escapeRe(p.ip)} self permanent`],
        ];
        for (const [text, re] of want) {
          assert(new RegExp(re, "m").test(text), `${h.name}: no /${re}/ in:\n${text}`);
        }
      }
    };

    await t.step("all pairs ping", async () => {
      assertAllAnswered(await c.pingAll({ count: 1 }));
    });
    await t.step("lease value with the VTEP MAC; route, neighbour and FDB per peer", async () => {
      for (const h of c.hosts) await check(h);
    });
    await t.step(
      "a restart: a new VTEP MAC; peers remove the old entries, add the new",
      async () => {
        const h1 = c.hosts[1];
        const old = await vtepMAC(c, h1);
        await c.restartDaemon(h1);
        const mac = await vtepMAC(c, h1);
        assert(mac !== old, "PreStartupCommand recreated the device");
        const gw = formatIP4(hostSubnet(c, h1).ip);
        for (const h of [c.hosts[0], c.hosts[2]]) {
          const ms = await timeUntil(`${h.name} has h1's new MAC`, async () => {
            const [, n, f] = await kernelText(c, h);
            return n.includes(`${gw} lladdr ${mac} PERMANENT`) &&
              f.includes(`${mac} dst ${h1.ip}`) && !f.includes(old);
          });
          console.log(`  ${h.name}: h1's entries replaced ${ms} ms after its restart`);
        }
        assertAllAnswered(await c.pingAll({ count: 1 }));
        for (const h of c.hosts) await check(h);
      },
    );
    await t.step(
      "a host joins and leaves: route, neighbour and FDB entry come and go",
      async () => {
        let left = hostSubnet(c, 0);
        await joinAndLeave(c, c.hosts[0].containers[0], async (h, sn) => {
          left = sn;
          const [r, n, f] = await kernelText(c, h);
          const live = new Set(c.hosts.map((x) => x.ip));
          const strayFdb = [...f.matchAll(/ dst (\S+) self permanent/g)].some((m) =>
            !live.has(m[1])
          );
          return !r.includes(`${formatNet4(sn)} `) && !n.includes(`${formatIP4(sn.ip)} `) &&
            !strayFdb;
        }, check);
        assertRemovesRan(c, left);
      },
    );
  },
);

/** Processes in namespace `ns` whose command line is `argv`. */
async function nsProcesses(ns: string, argv: string[]): Promise<number[]> {
  const out = await new Deno.Command("ip", { args: ["netns", "pids", ns] }).output();
  const want = argv.join("\0");
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).map(Number).filter(
    (p) => {
      try {
        return Deno.readTextFileSync(`/proc/${p}/cmdline`).replace(/\0$/, "") === want;
      } catch {
        return false;
      }
    },
  );
}

Deno.test({
  name:
    "extension: failing commands are retried, hanging ones killed, other leases go on (binary's permissions)",
  ...opts,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "flext-" });
  const [ip1, ip2] = [UNDERLAY.host(1), UNDERLAY.host(2)];
  await Deno.writeTextFile(`${dir}/hang-${ip1}`, "");
  await Deno.writeTextFile(`${dir}/fail-${ip2}`, "");
  const port = 9181;
  try {
    await using c = await Cluster.create({
      hosts: 3,
      containersPerHost: 1,
      backend: "extension",
      // The compiled binary's permissions: `sh` is all it may run, and enough (kill included).
      daemonCommand: [
        Deno.execPath(),
        "run",
        ...DAEMON_RUNTIME_FLAGS,
        ...DAEMON_PERMISSIONS,
        DEFAULT_DAEMON_COMMAND.at(-1)!,
      ],
      daemonArgs: [`--healthz-ip=127.0.0.1`, `--healthz-port=${port}`],
      config: {
        Backend: {
          Type: "extension",
          CommandTimeout: 2,
          SubnetAddCommand: `if [ -e ${dir}/hang-$PUBLIC_IP ]; then sleep 3599; fi; ` +
            `if [ -e ${dir}/fail-$PUBLIC_IP ]; then echo "refusing $SUBNET via $PUBLIC_IP" >&2; exit 1; fi; ` +
            "ip route replace $SUBNET via $PUBLIC_IP",
          SubnetRemoveCommand: "ip route del $SUBNET via $PUBLIC_IP",
        },
      },
    });
    const [h0, h1, h2] = c.hosts;
    const [sn0, sn1, sn2] = c.hosts.map((h) => formatNet4(hostSubnet(c, h)));
    const metric = async (h: Host, name: string) => {
      const fam = (await scrapeMetrics(h, port)).get(`flannel_backend_${name}_total`);
      return fam?.samples.find((s) => s.labels.backend === "extension")?.value ?? 0;
    };
    const hanging = async () =>
      (await Promise.all(c.hosts.map((h) => nsProcesses(h.ns, ["sleep", "3599"])))).map((p) =>
        p.length
      );

    await t.step("a hanging add for one lease does not hold back another's", async () => {
      // h2: h1's lease hangs, h0's is added at once.
      await timeUntil("h2 routes h0", async () => (await routes(c, h2)).includes(`${sn0} via`));
      const log = c.daemonLog(h2);
      const ran = log.indexOf(`ran SubnetAddCommand subnet=${sn0}`);
      const killed = log.indexOf("timed out after 2 s");
      assert(
        ran >= 0 && (killed < 0 || ran < killed),
        `h0 added before h1's add was killed:\n${log}`,
      );
      assertEquals((await hanging())[2], 1, "one hanging command on h2");
    });

    await t.step(
      "the hanging add is killed after CommandTimeout, with its sleep, and retried",
      async () => {
        const ms = await timeUntil(
          "h2 logs the kill",
          () =>
            c.daemonLog(h2).split("\n").some((l) =>
              l.includes("SubnetAddCommand failed; retrying") && l.includes(`subnet=${sn1}`) &&
              l.includes("timed out after 2 s; killed with its children")
            ),
          10_000,
        );
        console.log(`  kill logged after ${ms} ms`);
        await timeUntil("a retry", async () => await metric(h2, "command_retries") >= 1, 10_000);
        assert(await metric(h2, "commands_timed_out") >= 1);
        for (let i = 0; i < 5; i++) {
          const n = await hanging();
          assert(
            n.every((x) => x <= 1),
            `never more than one hanging sleep per host: ${n}`,
          );
          await sleep(300);
        }
      },
    );

    await t.step("a failing add is retried with backoff, logged once with its output", async () => {
      // h1: h2's lease fails, h0's is fine.
      // A retry is counted when it starts, a failure when it ends: wait for both.
      await timeUntil(
        "h1 retried 3 times, each failed",
        async () =>
          await metric(h1, "command_retries") >= 3 && await metric(h1, "commands_failed") >= 4,
        20_000,
      );
      const warns = c.daemonLog(h1).split("\n").filter((l) =>
        l.startsWith("W") && l.includes("SubnetAddCommand failed")
      );
      assertEquals(warns.length, 1, warns.join("\n"));
      assertStringIncludes(warns[0], `stderr="refusing ${sn2} via ${ip2}"`);
      assertStringIncludes(warns[0], 'status="exit 1"');
      assert((await routes(c, h1)).includes(`${sn0} via ${h0.ip}`), "h0's lease is programmed");
    });

    await t.step("both recover once the cause is gone; nothing is left running", async () => {
      await Deno.remove(`${dir}/hang-${ip1}`);
      await Deno.remove(`${dir}/fail-${ip2}`);
      const ms = await timeUntil("every host routes every peer", async () => {
        for (const h of c.hosts) {
          const r = await routes(c, h);
          for (const p of c.hosts.filter((x) => x !== h)) {
            if (!r.includes(`${formatNet4(hostSubnet(c, p))} via ${p.ip}`)) return false;
          }
        }
        return true;
      }, 40_000);
      console.log(`  all routes ${ms} ms after the causes were removed`);
      assertAllAnswered(await c.pingAll({ count: 1 }));
      for (const h of [h1, h2]) {
        assertEquals(logCount(c, h, "lease commands succeed again"), 1, h.name);
      }
      await timeUntil("no hanging sleep left", async () => (await hanging()).every((n) => n === 0));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "extension: the lease value is upstream's, byte for byte (with upstream flanneld)",
  ...opts,
}, async (t) => {
  if (!UPSTREAM_PRESENT) return console.log(UPSTREAM_SKIP);
  const dir = await Deno.makeTempDir({ prefix: "flext-" });
  try {
    await using c = await Cluster.create({
      hosts: 2,
      containersPerHost: 1,
      backend: "extension",
      startDaemons: false,
      daemonCommand: (h) => h === "h1" ? [UPSTREAM_FLANNELD] : DEFAULT_DAEMON_COMMAND,
      config: {
        Backend: {
          Type: "extension",
          PreStartupCommand: `echo '  tag<1> & "two"  '`,
          SubnetAddCommand:
            `cat > ${dir}/stdin-$PUBLIC_IP; ip route replace $SUBNET via $PUBLIC_IP`,
          SubnetRemoveCommand: "ip route del $SUBNET via $PUBLIC_IP",
        },
      },
    });
    const [ours, theirs] = c.hosts;
    await c.startDaemon(ours);
    await sleep(2000); // upstream races when started together with a peer
    await c.startDaemon(theirs);

    await t.step("the same lease value from ours and upstream's", async () => {
      const data = '"BackendData":"tag\\u003c1\\u003e \\u0026 \\"two\\""';
      assertEquals(
        await rawLease(c, ours),
        `{"PublicIP":"${ours.ip}","PublicIPv6":null,"BackendType":"extension",${data}}`,
      );
      assertEquals(
        (await rawLease(c, theirs)).replace(theirs.ip, ours.ip),
        await rawLease(c, ours),
      );
    });
    await t.step("each runs the other's add with the same stdin; containers ping", async () => {
      const stdin = (ip: string) => Deno.readTextFile(`${dir}/stdin-${ip}`).catch(() => null);
      await timeUntil(
        "both adds ran",
        async () => !!(await stdin(ours.ip)) && !!(await stdin(theirs.ip)),
      );
      assertEquals(await stdin(ours.ip), 'tag<1> & "two"\n', "upstream's add, our lease");
      assertEquals(await stdin(theirs.ip), 'tag<1> & "two"\n', "our add, upstream's lease");
      assertAllAnswered(await c.pingAll({ count: 2 }));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
