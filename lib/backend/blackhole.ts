/**
 * `--ip-blackhole-route`: a blackhole route for the host's own subnet, so that traffic to
 * addresses of it that no container holds is dropped on this host instead of following the
 * default route out of it (vxlan and host-gw have no route for the whole Network; without a
 * bridge for the subnet such traffic would leak to the underlay's gateway).
 *
 * The route has metric {@link BLACKHOLE_METRIC}, so the bridge's own route for the subnet
 * (`docker0`, `cni0`: metric 0) wins whenever it exists and the blackhole only catches what
 * nothing else claims. It is checked every `--iptables-resync` seconds (upstream's period
 * for it) and put back when missing; when our subnet changes, the old route is removed. On
 * shutdown it stays, like every other piece of kernel state we leave for a restart.
 * @module
 */

import {
  isNetlinkError,
  type Requester,
  routeDel,
  routeList,
  routeReplace,
  RT_TABLE_MAIN,
  RTN_BLACKHOLE,
} from "../../ffi/netlink/mod.ts";
import { equal4, formatNet4, type IP4Net } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import type { Lease } from "../values/lease.ts";

const log = logger("blackhole");

/** Metric of our blackhole routes: above any connected route's, so a bridge always wins. */
export const BLACKHOLE_METRIC = 65535;

/** The route spec for `subnet`. */
function spec(subnet: IP4Net) {
  return { dst: subnet, type: RTN_BLACKHOLE, priority: BLACKHOLE_METRIC, table: RT_TABLE_MAIN };
}

/** Keeps the blackhole route of our own subnet in place. */
export class BlackholeRoute {
  #subnet: IP4Net | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Times the route was found missing and put back. */
  repairs = 0;

  /**
   * @param nl netlink requests (a test's in-memory kernel, or the real socket)
   * @param intervalSeconds how often the route is checked (`--iptables-resync`)
   */
  constructor(private readonly nl: Requester, private readonly intervalSeconds: number) {}

  /** Installs the route for `lease` and starts checking it. */
  start(lease: Lease): void {
    this.#subnet = lease.subnet;
    this.check();
    this.#timer ??= setInterval(() => this.check(), this.intervalSeconds * 1000);
  }

  /** Our subnet changed: the old route goes, the new one comes. */
  update(lease: Lease): void {
    const old = this.#subnet;
    this.#subnet = lease.subnet;
    if (old && !equal4(old, lease.subnet)) {
      try {
        routeDel(this.nl, spec(old));
        log.info("removed the blackhole route of our previous subnet", { subnet: formatNet4(old) });
      } catch (e) {
        if (!isNetlinkError(e, "ESRCH")) {
          log.warn("cannot remove the blackhole route of our previous subnet", {
            subnet: formatNet4(old),
            error: e,
          });
        }
      }
    }
    this.check();
  }

  /** Whether the route is in place now. */
  present(): boolean {
    const s = this.#subnet;
    if (!s) return false;
    return routeList(this.nl, { dst: s }).some((r) =>
      r.type === RTN_BLACKHOLE && r.priority === BLACKHOLE_METRIC
    );
  }

  /** Puts the route back when it is missing; returns whether it had to. */
  check(): boolean {
    const s = this.#subnet;
    if (!s) return false;
    try {
      if (this.present()) return false;
      routeReplace(this.nl, spec(s));
      if (this.#timer !== undefined) {
        this.repairs++;
        log.warn("repaired: blackhole route was missing", { subnet: formatNet4(s) });
      } else {
        log.info("blackhole route in place", {
          subnet: formatNet4(s),
          metric: BLACKHOLE_METRIC,
        });
      }
      return true;
    } catch (e) {
      log.error("cannot install the blackhole route; retrying", {
        subnet: formatNet4(s),
        error: e,
      });
      return false;
    }
  }

  /** Stops checking; the route stays. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
