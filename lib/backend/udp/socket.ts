/**
 * The udp backend's tunnel socket: one UDP socket bound to the external interface's
 * address and the configured port, with large kernel buffers (bursts from the TUN would
 * otherwise overflow the default ~200 KiB) and a receive timeout, so that the receiving
 * Worker, blocked in recvmmsg, notices a stop request within that time.
 * @module
 */

import {
  AF_INET,
  bind,
  check,
  close,
  libc,
  setsockoptInt,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_RCVTIMEO,
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
  /** Receive timeout in ms: bounds how long a stop request waits (default 100). */
  receiveTimeoutMs?: number;
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
    const ms = opts.receiveTimeoutMs ?? 100;
    const tv = new Uint8Array(16); // struct timeval: tv_sec, tv_usec (64-bit each)
    const v = new DataView(tv.buffer);
    v.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
    v.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
    check("setsockopt", libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16), "SO_RCVTIMEO");
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
