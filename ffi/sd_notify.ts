/**
 * systemd's sd_notify protocol: one datagram per state change to the unix socket named by
 * `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). Deno has no API to *send*
 * on an unbound unix datagram socket, so this uses socket(AF_UNIX, SOCK_DGRAM) + sendto
 * through FFI. Without `$NOTIFY_SOCKET` every call is a no-op, as with libsystemd.
 * @module
 */

import {
  AF_UNIX,
  check,
  close,
  libc,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  sockaddrUn,
  socket,
} from "./libc.ts";
import { logger } from "../lib/core/log.ts";

const log = logger("sd_notify");
const enc = new TextEncoder();

/**
 * Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. Returns false when the variable is
 * unset; failures are logged, never thrown: notification must not take the daemon down.
 */
export function sdNotify(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  let fd = -1;
  try {
    const addr = sockaddrUn(socketPath);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const msg = enc.encode(state);
    check("sendto", libc.sendto(fd, msg, msg.byteLength, 0, addr, addr.byteLength), socketPath);
    log.debug(1, "notified systemd", { state });
    return true;
  } catch (e) {
    log.warn("sd_notify failed", { state, socket: socketPath, error: e });
    return false;
  } finally {
    if (fd >= 0) close(fd, true);
  }
}

/**
 * Watchdog interval from `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, which must be us when
 * set), halved as sd_watchdog_enabled(3) recommends; null when the watchdog is off.
 */
export function watchdogIntervalMs(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  pid = Deno.pid,
): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * Pings the systemd watchdog every `intervalMs`, but only while `healthy()` is true, so a
 * daemon that lost etcd or its lease for too long gets restarted by systemd. Returns a
 * function that stops the pings.
 */
export function startWatchdog(intervalMs: number, healthy: () => boolean): () => void {
  const t = setInterval(() => {
    if (healthy()) sdNotify("WATCHDOG=1");
  }, intervalMs);
  Deno.unrefTimer(t);
  return () => clearInterval(t);
}
