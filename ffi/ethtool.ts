/**
 * The one ethtool setting flanneld needs: TX checksum offload of a device (upstream turns it
 * off on the vxlan device to dodge kernel checksum bugs). This is the legacy SIOCETHTOOL
 * ioctl on any socket, not netlink.
 * @module
 */

import {
  addressOf,
  AF_INET,
  close,
  cstr,
  ioctl,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  socket,
} from "./libc.ts";

const SIOCETHTOOL = 0x8946;
const ETHTOOL_GTXCSUM = 0x16;
const ETHTOOL_STXCSUM = 0x17;
/** struct ifreq: name[IFNAMSIZ=16], then a union whose `ifr_data` pointer we use; 40 bytes. */
const IFREQ_SIZE = 40;

/** Runs one ethtool_value command (`{u32 cmd; u32 data}`) against `name`; returns `data`. */
function ethtoolValue(name: string, cmd: number, data: number): number {
  const value = new Uint8Array(8);
  const v = new DataView(value.buffer);
  v.setUint32(0, cmd, true);
  v.setUint32(4, data, true);
  const ifr = new Uint8Array(IFREQ_SIZE);
  const n = cstr(name);
  if (n.byteLength > 16) throw new RangeError(`interface name too long: ${name}`);
  ifr.set(n);
  new DataView(ifr.buffer).setBigUint64(16, addressOf(value), true);
  const fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    ioctl(fd, SIOCETHTOOL, ifr, `ethtool ${name} cmd ${cmd}`);
  } finally {
    close(fd, true);
  }
  return v.getUint32(4, true);
}

/** `ethtool -K <name> tx on|off`. */
export function setTxChecksum(name: string, on: boolean): void {
  ethtoolValue(name, ETHTOOL_STXCSUM, on ? 1 : 0);
}

/** Whether TX checksum offload is on for `name`. */
export function getTxChecksum(name: string): boolean {
  return ethtoolValue(name, ETHTOOL_GTXCSUM, 0) !== 0;
}
