/**
 * Reference data paths built by hand with iproute2 in a cluster whose daemons are not
 * started: plain routes over the underlay (what host-gw programs) and a kernel VXLAN
 * device with static neighbour and FDB entries (what the vxlan backend programs).
 * @module
 */

import { type Cluster, type Host } from "../tests/helpers/cluster.ts";
import { ip, must, run } from "../tests/helpers/netns.ts";

/** Subnet `10.5.<i+1>.0/24` of host `i` in the reference paths. */
function subnetOf(h: Host): string {
  return `10.5.${h.index + 1}.0`;
}

/** Puts cni0 and the containers of every host on the host's subnet with MTU `mtu`. */
async function addressHosts(c: Cluster, mtu: number): Promise<void> {
  await Promise.all(c.hosts.map((h) => c.configureHostSubnet(h, `10.5.${h.index + 1}.1/24`, mtu)));
}

/** Every ordered pair of distinct hosts. */
function pairs(c: Cluster): [Host, Host][] {
  return c.hosts.flatMap((a) => c.hosts.filter((b) => b !== a).map((b) => [a, b] as [Host, Host]));
}

/** Raw underlay: each host routes the others' subnets via their underlay addresses. */
export async function buildRawUnderlay(c: Cluster): Promise<void> {
  await addressHosts(c, 1500);
  for (const [h, peer] of pairs(c)) {
    await ip(h.ns, "route", "replace", `${subnetOf(peer)}/24`, "via", peer.ip, "dev", "eth0");
  }
}

/** Name, VNI and UDP port of the hand-built VXLAN device. */
export const KERNEL_VXLAN = { dev: "vx42", vni: 42, port: 4789, mtu: 1450 };

/** The VTEP MAC of host `h`. */
function vtepMac(h: Host): string {
  return `02:42:0a:05:${(h.index + 1).toString(16).padStart(2, "0")}:00`;
}

/**
 * Kernel VXLAN: device `vx42` (VNI 42, port 4789, no learning) on every host with address
 * `<subnet>.0/32`; per peer an onlink route via the peer's VTEP address, a permanent
 * neighbour entry for it and an FDB entry sending its MAC to the peer's underlay address.
 */
export async function buildKernelVxlan(c: Cluster): Promise<void> {
  const { dev, vni, port, mtu } = KERNEL_VXLAN;
  await addressHosts(c, mtu);
  for (const h of c.hosts) {
    await ip(
      h.ns,
      "link",
      "add",
      dev,
      "type",
      "vxlan",
      "id",
      String(vni),
      "local",
      h.ip,
      "dev",
      "eth0",
      "dstport",
      String(port),
      "nolearning",
    );
    await ip(h.ns, "link", "set", dev, "address", vtepMac(h), "mtu", String(mtu), "up");
    await ip(h.ns, "addr", "add", `${subnetOf(h)}/32`, "dev", dev);
  }
  for (const [h, peer] of pairs(c)) {
    const vtep = subnetOf(peer);
    await ip(
      h.ns,
      "neigh",
      "replace",
      vtep,
      "lladdr",
      vtepMac(peer),
      "dev",
      dev,
      "nud",
      "permanent",
    );
    must(
      await run("bridge", ["-n", h.ns, "fdb", "append", vtepMac(peer), "dev", dev, "dst", peer.ip]),
      `bridge fdb append in ${h.ns}`,
    );
    await ip(h.ns, "route", "replace", `${vtep}/24`, "via", vtep, "dev", dev, "onlink");
  }
}
