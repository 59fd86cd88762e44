/**
 * The udp backend's tunnel socket: one UDP socket bound to the external interface's
 * address and the configured port, with large kernel buffers (bursts from the TUN would
 * otherwise overflow the default ~200 KiB). The data path Worker receives from it without
 * blocking (it waits in poll()).
 * @module
 */

import {
  AF_INET,
  bind,
  close,
  setsockoptInt,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  sockaddrIn,
  socket,
  SOL_SOCKET,
  SOL_UDP,
  SyscallError,
} from "../../../ffi/libc.ts";
import { formatIP4 } from "../../core/ip.ts";
import { UDP_GRO, UDP_SEGMENT } from "./mmsg.ts";

/** Options of {@link openTunnelSocket}. */
export interface TunnelSocketOptions {
  /** Kernel send and receive buffer size in bytes (default 4 MiB). */
  bufferBytes?: number;
  /** Try UDP GSO (send) and UDP GRO (receive) (default false). */
  offloads?: boolean;
}

/** The open socket and the UDP offloads the kernel accepted on it. */
export interface TunnelSocket {
  fd: number;
  /** UDP_SEGMENT works: one send may carry many equal-sized datagrams. */
  gso: boolean;
  /** UDP_GRO is on: one receive may return many datagrams (with their size in a cmsg). */
  gro: boolean;
}

/** Sets an int option; false when this kernel does not know it. */
function trySetInt(fd: number, level: number, opt: number, value: number): boolean {
  try {
    setsockoptInt(fd, level, opt, value);
    return true;
  } catch (e) {
    if (e instanceof SyscallError) return false;
    throw e;
  }
}

/** Sets a buffer size, bypassing net.core.*mem_max when we may (root), else within it. */
function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  try {
    setsockoptInt(fd, SOL_SOCKET, force, bytes);
  } catch (e) {
    if (!(e instanceof SyscallError) || e.code !== "EPERM") throw e;
    setsockoptInt(fd, SOL_SOCKET, plain, bytes);
  }
}

/** Opens, tunes and binds the tunnel socket to `ip:port`. */
export function openTunnelSocket(
  ip: number,
  port: number,
  opts: TunnelSocketOptions = {},
): TunnelSocket {
  const fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    const bytes = opts.bufferBytes ?? 4 << 20;
    setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
    setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
    bind(fd, sockaddrIn(ip, port), `${formatIP4(ip)}:${port}`);
    // UDP_SEGMENT 0 keeps the socket's default "no GSO" (the size comes per send in a
    // cmsg): setting it only proves the kernel has UDP GSO (Linux ≥ 4.18).
    const gso = !!opts.offloads && trySetInt(fd, SOL_UDP, UDP_SEGMENT, 0);
    const gro = !!opts.offloads && trySetInt(fd, SOL_UDP, UDP_GRO, 1); // Linux ≥ 5.0
    return { fd, gso, gro };
  } catch (e) {
    close(fd, true);
    throw e;
  }
}
