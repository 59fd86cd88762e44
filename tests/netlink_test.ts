/**
 * rtnetlink against the real kernel (root): every operation runs in a private network
 * namespace, is read back through our layer and compared with iproute2's view of the same
 * namespace. Nothing is configured in the root namespace.
 */

import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  addrAdd,
  addrDel,
  addrList,
  addrReplace,
  fdbDel,
  fdbList,
  fdbReplace,
  IFA_F_NODAD,
  isNetlinkError,
  type Link,
  linkByIndex,
  linkByName,
  linkDel,
  linkList,
  linkSetDown,
  linkSetMAC,
  linkSetMTU,
  linkSetUp,
  neighDel,
  neighList,
  neighReplace,
  NetlinkError,
  NetlinkSocket,
  NUD_PERMANENT,
  routeAdd,
  routeDel,
  routeGet,
  routeList,
  routeReplace,
  RTM_NEWLINK,
  RTNLGRP_LINK,
  vxlanCreate,
} from "../ffi/netlink/mod.ts";
import { getTxChecksum, setTxChecksum } from "../ffi/ethtool.ts";
import { formatIP, formatIP4, formatIP6, formatNet, parseIP6 } from "../lib/core/ip.ts";
import { formatMAC, parseMAC } from "../lib/core/mac.ts";
import { selectExtIface } from "../lib/values/iface.ts";
import { bridgeJSON, createTestNetns, inNetns, ipJSON } from "./helpers/netlink_ns.ts";
import { deleteNetnsSync, ip, isRoot } from "./helpers/netns.ts";
import { sleep } from "./helpers/wait.ts";
import { ip4, net4 } from "./helpers/addr.ts";

const VTEP_MAC = parseMAC("0e:11:22:33:44:55")!;
const PEER_MAC = parseMAC("0e:aa:bb:cc:dd:ee")!;

/** Expects `fn` to fail with a NetlinkError of `code` whose message starts with `op`. */
function assertNetlinkError(fn: () => unknown, code: string, op: string): void {
  const e = assertThrows(fn, NetlinkError);
  assertEquals(e.code, code);
  assert(e.message.startsWith(`${op}: ${code}: `), e.message);
}

Deno.test({
  name: "netlink in a private namespace, checked against iproute2",
  ignore: !isRoot,
  async fn(t) {
    const ns = await createTestNetns();
    const nl = inNetns(ns, () => NetlinkSocket.open());
    try {
      await ip(ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1");
      const v0 = linkByName(nl, "v0")!, v1 = linkByName(nl, "v1")!;
      let vx: Link;

      await t.step("links: list and lookup agree with ip -d link", async () => {
        const ours = linkList(nl);
        const theirs = await ipJSON(ns, "-d", "link", "show");
        assertEquals(
          ours.map((l) => [l.index, l.name, l.mtu]),
          theirs.map((l) => [l.ifindex, l.ifname, l.mtu]),
        );
        assertEquals(formatMAC(v0.mac!), theirs.find((l) => l.ifname === "v0").address);
        assertEquals(v0.kind, "veth");
        assertEquals(linkByIndex(nl, v1.index)?.name, "v1");
        assertEquals(linkByName(nl, "missing0"), null);
        assertEquals(linkByIndex(nl, 9999), null);
      });

      await t.step("links: up, MTU, MAC; ENODEV for a missing device", async () => {
        linkSetMTU(nl, v0.index, 1400);
        linkSetMAC(nl, v0.index, PEER_MAC);
        linkSetUp(nl, v0.index);
        linkSetUp(nl, v1.index);
        const [j] = await ipJSON(ns, "link", "show", "v0");
        assertEquals([j.mtu, j.address, j.flags.includes("UP")], [1400, formatMAC(PEER_MAC), true]);
        const l = linkByName(nl, "v0")!;
        assertEquals([l.mtu, formatMAC(l.mac!), l.up], [1400, formatMAC(PEER_MAC), true]);
        linkSetDown(nl, v1.index);
        assertEquals(linkByName(nl, "v1")!.up, false);
        linkSetUp(nl, v1.index);
        assertNetlinkError(() => linkSetUp(nl, 9999), "ENODEV", "link set 9999 up");
        assertNetlinkError(() => linkSetMTU(nl, 9999, 1000), "ENODEV", "link set 9999 mtu 1000");
      });

      await t.step("addresses: replace, add (EEXIST), list, delete", async () => {
        addrReplace(nl, v0.index, { ip: ip4("10.9.0.1"), prefix: 24 });
        addrReplace(nl, v0.index, { ip: ip4("10.9.0.1"), prefix: 24 }); // idempotent
        addrAdd(nl, v1.index, { ip: ip4("10.9.0.2"), prefix: 24 });
        addrAdd(nl, v0.index, { ip: parseIP6("fd00::1")!, prefix: 64, flags: IFA_F_NODAD });
        assertNetlinkError(
          () => addrAdd(nl, v1.index, { ip: ip4("10.9.0.2"), prefix: 24 }),
          "EEXIST",
          `addr add 10.9.0.2/24 dev ${v1.index}`,
        );
        const ours = addrList(nl, { index: v0.index }).filter((a) =>
          !(a.v6 && (a.ip as bigint) >> 118n === 0x3fan)
        );
        const [j] = await ipJSON(ns, "addr", "show", "dev", "v0");
        const theirs = j.addr_info.filter((a: any) => a.scope === "global");
        assertEquals(
          ours.map((a) =>
            `${a.v6 ? formatIP6(a.ip as bigint) : formatIP4(a.ip as number)}/${a.prefix}`
          ),
          theirs.map((a: any) => `${a.local}/${a.prefixlen}`),
        );
        assertEquals(addrList(nl, { index: v0.index, family: 4 }).length, 1);
        addrAdd(nl, v1.index, { ip: ip4("10.9.9.9"), prefix: 32 });
        addrDel(nl, v1.index, { ip: ip4("10.9.9.9"), prefix: 32 });
        assert(!(await ip(ns, "addr", "show", "dev", "v1")).includes("10.9.9.9"));
        assertNetlinkError(
          () => addrDel(nl, v1.index, { ip: ip4("10.9.9.9"), prefix: 32 }),
          "EADDRNOTAVAIL",
          `addr del 10.9.9.9/32 dev ${v1.index}`,
        );
      });

      await t.step("vxlan: create, read back, compare with ip -d link, EEXIST", async () => {
        const want = {
          vni: 1,
          port: 4789,
          local: ip4("10.9.0.1"),
          underlayIndex: v0.index,
          learning: false,
          gbp: true,
        };
        vx = vxlanCreate(nl, { name: "flannel.1", mtu: 1350, mac: VTEP_MAC, ...want });
        assertEquals(vx.kind, "vxlan");
        assertEquals([vx.mtu, formatMAC(vx.mac!)], [1350, formatMAC(VTEP_MAC)]);
        assertEquals(vx.vxlan, { ...want, l2miss: false, l3miss: false });
        const [j] = await ipJSON(ns, "-d", "link", "show", "flannel.1");
        const d = j.linkinfo.info_data;
        assertEquals(
          [
            j.linkinfo.info_kind,
            d.id,
            d.port,
            d.local,
            d.link,
            d.learning,
            d.gbp,
            j.mtu,
            j.address,
          ],
          ["vxlan", 1, 4789, "10.9.0.1", "v0", false, true, 1350, formatMAC(VTEP_MAC)],
        );
        assertNetlinkError(
          () => vxlanCreate(nl, { name: "flannel.1", vni: 1 }),
          "EEXIST",
          "link add flannel.1 type vxlan id 1",
        );
        // Kernel defaults: port 8472, learning explicitly off, no underlay.
        const vx2 = vxlanCreate(nl, { name: "flannel.2", vni: 2 });
        assertEquals([vx2.vxlan!.port, vx2.vxlan!.learning, vx2.vxlan!.underlayIndex], [
          8472,
          false,
          0,
        ]);
        linkDel(nl, vx2.index);
        linkSetUp(nl, vx.index);
      });

      await t.step("ethtool: TX checksum offload toggles", () => {
        inNetns(ns, () => {
          setTxChecksum("flannel.1", false);
          assertEquals(getTxChecksum("flannel.1"), false);
          setTxChecksum("flannel.1", true);
          assertEquals(getTxChecksum("flannel.1"), true);
          assertThrows(() => setTxChecksum("missing0", false), Error, "ENODEV");
        });
      });

      await t.step("routes: replace, onlink, EEXIST, list vs ip route, delete", async () => {
        const viaGw = { dst: net4("10.5.53.0/24"), gw: ip4("10.9.0.2"), dev: v0.index };
        const onlink = {
          dst: net4("10.5.54.0/24"),
          gw: ip4("10.5.54.0"),
          dev: vx.index,
          onlink: true,
        };
        const devOnly = { dst: net4("10.5.0.0/16"), dev: vx.index };
        routeReplace(nl, viaGw);
        routeReplace(nl, viaGw); // idempotent
        routeReplace(nl, onlink);
        routeReplace(nl, devOnly);
        routeAdd(nl, {
          dst: net4("0.0.0.0/0"),
          gw: ip4("10.9.0.254"),
          dev: v0.index,
          onlink: true,
        });
        assertNetlinkError(
          () => routeAdd(nl, viaGw),
          "EEXIST",
          `route add 10.5.53.0/24 via 10.9.0.2 dev ${v0.index}`,
        );
        assertNetlinkError(
          () => routeReplace(nl, { dst: net4("10.5.55.0/24"), dev: 9999 }),
          "ENODEV",
          "route replace 10.5.55.0/24 dev 9999",
        );

        const names = new Map(linkList(nl).map((l) => [l.index, l.name]));
        const ours = routeList(nl).map((r) =>
          [
            r.dst.prefix === 0 ? "default" : formatNet(r.dst),
            r.gw === undefined ? null : formatIP(r.gw),
            names.get(r.dev!),
            r.onlink,
          ].join(" ")
        ).sort();
        const theirs = (await ipJSON(ns, "route", "show")).map((r) =>
          [
            r.dst.includes("/") || r.dst === "default" ? r.dst : `${r.dst}/32`,
            r.gateway ?? null,
            r.dev,
            (r.flags ?? []).includes("onlink"),
          ].join(" ")
        ).sort();
        assertEquals(ours, theirs);
        assert(ours.includes(`10.5.54.0/24 10.5.54.0 flannel.1 true`));
        assertEquals(routeList(nl, { dev: vx.index }).length, 2);
        assertEquals(routeList(nl, { dst: viaGw.dst }).map((r) => r.gw), [viaGw.gw]);
        // Upstream's protocol (boot): iproute2 prints no "proto" for our routes.
        assert(!(await ip(ns, "route", "show", "10.5.53.0/24")).includes("proto"));

        routeDel(nl, viaGw);
        assertNetlinkError(
          () => routeDel(nl, viaGw),
          "ESRCH",
          `route del 10.5.53.0/24 via 10.9.0.2 dev ${v0.index}`,
        );
        assertEquals((await ip(ns, "route", "show", "10.5.53.0/24")).trim(), "");
      });

      await t.step("route get: device, gateway and source as ip route get", async () => {
        const r = routeGet(nl, ip4("8.8.8.8"));
        const [j] = await ipJSON(ns, "route", "get", "8.8.8.8");
        assertEquals([r.dev, formatIP(r.gw!), formatIP(r.src!)], [
          v0.index,
          j.gateway,
          j.prefsrc,
        ]);
        // 10.9.0.2 is local here (both veth ends are in this namespace); .3 is on the link.
        const direct = routeGet(nl, ip4("10.9.0.3"));
        assertEquals([direct.dev, direct.gw], [v0.index, undefined]);
      });

      await t.step("neighbours: replace, list vs ip neigh, delete", async () => {
        const n = { index: vx.index, ip: ip4("10.5.54.0"), mac: PEER_MAC };
        neighReplace(nl, n);
        neighReplace(nl, n);
        const ours = neighList(nl, { index: vx.index });
        assertEquals(ours.map((x) => [formatIP(x.ip), formatMAC(x.mac!), x.state]), [
          ["10.5.54.0", formatMAC(PEER_MAC), NUD_PERMANENT],
        ]);
        const theirs = await ipJSON(ns, "neigh", "show", "dev", "flannel.1");
        assertEquals(theirs.map((x) => [x.dst, x.lladdr, x.state]), [[
          "10.5.54.0",
          formatMAC(PEER_MAC),
          ["PERMANENT"],
        ]]);
        neighDel(nl, n);
        assertEquals(neighList(nl, { index: vx.index }), []);
        assertNetlinkError(() => neighDel(nl, n), "ENOENT", `neigh del 10.5.54.0 dev ${vx.index}`);
      });

      await t.step("fdb: replace, list vs bridge fdb show, delete", async () => {
        const f = { index: vx.index, mac: PEER_MAC, dst: ip4("10.9.0.2") };
        fdbReplace(nl, f);
        fdbReplace(nl, f);
        const ours = fdbList(nl, { index: vx.index }).filter((e) => e.dst !== undefined);
        assertEquals(ours.map((e) => [formatMAC(e.mac), formatIP(e.dst!), e.state]), [
          [formatMAC(PEER_MAC), "10.9.0.2", NUD_PERMANENT],
        ]);
        const theirs = (await bridgeJSON(ns, "fdb", "show", "dev", "flannel.1")).filter((e) =>
          e.dst
        );
        assertEquals(theirs.map((e) => [e.mac, e.dst, e.state, e.flags]), [
          [formatMAC(PEER_MAC), "10.9.0.2", "permanent", ["self"]],
        ]);
        fdbDel(nl, f);
        assertEquals(fdbList(nl, { index: vx.index }).filter((e) => e.dst !== undefined), []);
        assertNetlinkError(
          () => fdbDel(nl, f),
          "ENOENT",
          `fdb del ${formatMAC(PEER_MAC)} dev ${vx.index} dst 10.9.0.2`,
        );
      });

      await t.step("interface selection reads the namespace", () => {
        const ext = selectExtIface(nl, {});
        assertEquals([ext.name, formatIP4(ext.ifaceAddr), formatIP4(ext.extAddr), ext.mtu], [
          "v0",
          "10.9.0.1",
          "10.9.0.1",
          1400,
        ]);
        assertEquals(selectExtIface(nl, { ifaceCanReach: "10.9.0.3" }).name, "v0");
        assertEquals(selectExtIface(nl, { iface: ["10.9.0.2"] }).name, "v1");
        assertEquals(selectExtIface(nl, { ifaceRegex: ["^10\\.9\\.0\\.2$"] }).name, "v1");
      });

      await t.step("events: link notifications arrive, close ends the reader", async () => {
        const ev = inNetns(ns, () => NetlinkSocket.open());
        ev.subscribe([RTNLGRP_LINK]);
        const reader = (async () => {
          for await (const m of ev.events()) {
            if (m.type === RTM_NEWLINK && linkByIndex(nl, v1.index)?.mtu === 1300) return m;
          }
          return null;
        })();
        linkSetMTU(nl, v1.index, 1300);
        const m = await reader;
        assert(m !== null);
        ev.close();
        // A reader that is waiting in poll is woken by close.
        const idle = inNetns(ns, () => NetlinkSocket.open());
        idle.subscribe([RTNLGRP_LINK]);
        const it = idle.events();
        const pending = it.next();
        await sleep(50); // the reader is parked in poll() by now, not yet to enter it
        idle.close();
        assertEquals((await pending).done, true);
      });

      await t.step("delete link", async () => {
        linkDel(nl, vx.index);
        assertEquals(linkByName(nl, "flannel.1"), null);
        assert(!(await ip(ns, "link", "show")).includes("flannel.1"));
        assertNetlinkError(() => linkDel(nl, vx.index), "ENODEV", `link del ${vx.index}`);
        assert(isNetlinkError(new NetlinkError("x", 19, "ENODEV", "No such device"), "ENODEV"));
      });
    } finally {
      nl.close();
      deleteNetnsSync(ns);
    }
  },
});
