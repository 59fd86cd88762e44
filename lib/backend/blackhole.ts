/**
 * `--ip-blackhole-route`: a blackhole route for the host's own subnet (and, with IPv6, for
 * its IPv6 subnet), so that traffic to addresses of it that no container holds is dropped
 * on this host instead of following the default route out of it (vxlan and host-gw have no
 * route for the whole Network; without a bridge for the subnet such traffic would leak to
 * the underlay's gateway).
 *
 * The route has metric {@link BLACKHOLE_METRIC}, so the bridge's own route for the subnet
 * (`docker0`, `cni0`: metric 0, IPv6 256) wins whenever it exists and the blackhole only catches what
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
import { equalNet, formatNet, type IPNet } from "../core/ip.ts";
import { logger } from "../core/log.ts";
import type { Lease } from "../values/lease.ts";

const log = logger("blackhole");

/** Metric of our blackhole routes: above any connected route's, so a bridge always wins. */
export const BLACKHOLE_METRIC = 65535;

/** The route spec for `subnet`. */
function spec(subnet: IPNet) {
  return { dst: subnet, type: RTN_BLACKHOLE, priority: BLACKHOLE_METRIC, table: RT_TABLE_MAIN };
}

/**
 * The subnets of `lease` to blackhole: the IPv4 one, and the IPv6 one of a dual-stack or
 * IPv6-only lease. An IPv6-only lease's IPv4 part is 0.0.0.0/0: never blackholed.
 */
function subnetsOf(lease: Lease): IPNet[] {
  const out: IPNet[] = lease.subnet.prefix > 0 ? [lease.subnet] : [];
  if (lease.ipv6Subnet) out.push(lease.ipv6Subnet);
  return out;
}

/** Keeps the blackhole routes of our own subnets (IPv4 and IPv6) in place. */
export class BlackholeRoute {
  #subnets: IPNet[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Times a route was found missing and put back. */
  repairs = 0;

  /**
   * @param nl netlink requests (a test's in-memory kernel, or the real socket)
   * @param intervalSeconds how often the routes are checked (`--iptables-resync`)
   */
  constructor(private readonly nl: Requester, private readonly intervalSeconds: number) {}

  /** Installs the routes for `lease` and starts checking them. */
  start(lease: Lease): void {
    this.#subnets = subnetsOf(lease);
    this.check();
    this.#timer ??= setInterval(() => this.check(), this.intervalSeconds * 1000);
  }

  /** Our subnets changed: the old routes go, the new ones come. */
  update(lease: Lease): void {
    const old = this.#subnets;
    this.#subnets = subnetsOf(lease);
    for (const o of old.filter((o) => !this.#subnets.some((n) => equalNet(n, o)))) {
      try {
        routeDel(this.nl, spec(o));
        log.info("removed the blackhole route of our previous subnet", { subnet: formatNet(o) });
      } catch (e) {
        if (!isNetlinkError(e, "ESRCH")) {
          log.warn("cannot remove the blackhole route of our previous subnet", {
            subnet: formatNet(o),
            error: e,
          });
        }
      }
    }
    this.check();
  }

  /** Whether every route is in place now (false before {@link start}). */
  present(): boolean {
    return this.#subnets.length > 0 && this.#subnets.every((s) => this.#present(s));
  }

  #present(s: IPNet): boolean {
    return routeList(this.nl, { dst: s }).some((r) =>
      r.type === RTN_BLACKHOLE && r.priority === BLACKHOLE_METRIC
    );
  }

  /** Puts back the routes that are missing; returns whether it had to. */
  check(): boolean {
    let changed = false;
    for (const s of this.#subnets) {
      try {
        if (this.#present(s)) continue;
        routeReplace(this.nl, spec(s));
        changed = true;
        if (this.#timer !== undefined) {
          this.repairs++;
          log.warn("repaired: blackhole route was missing", { subnet: formatNet(s) });
        } else {
          log.info("blackhole route in place", { subnet: formatNet(s), metric: BLACKHOLE_METRIC });
        }
      } catch (e) {
        log.error("cannot install the blackhole route; retrying", {
          subnet: formatNet(s),
          error: e,
        });
      }
    }
    return changed;
  }

  /** Stops checking; the routes stay. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
