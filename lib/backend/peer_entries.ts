/**
 * Writing and deleting the kernel entries of one peer (neighbour, FDB entry, route), with
 * rollback on a failed install and "already gone" treated as success on delete.
 * @module
 */

import {
  fdbDel,
  fdbReplace,
  isNetlinkError,
  neighDel,
  neighReplace,
  type Requester,
  routeDel,
  routeReplace,
} from "../../ffi/netlink/mod.ts";
import { equalNet } from "../core/ip.ts";
import { sameMAC } from "../core/mac.ts";
import type { PeerEntries, PeerFdb, PeerNeigh } from "./peer_state.ts";

const ABSENT = new Set(["ENOENT", "ESRCH", "ENODEV", "EADDRNOTAVAIL"]);

/** Runs a delete, treating "already gone" as success. */
export function deleteQuietly(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(isNetlinkError(e) && ABSENT.has(e.code))) throw e;
  }
}

/** Deletes a neighbour entry if present. */
export function removeNeigh(nl: Requester, n: PeerNeigh): void {
  deleteQuietly(() => neighDel(nl, { index: n.dev, ip: n.ip }));
}

/** Deletes an FDB entry if present. */
export function removeFdb(nl: Requester, f: PeerFdb): void {
  deleteQuietly(() => fdbDel(nl, { index: f.dev, mac: f.mac, dst: f.dst }));
}

/** Installs neighbour, FDB entry and route, in that order; undoes the earlier ones on failure. */
export function installEntries(nl: Requester, e: PeerEntries): void {
  const undo: (() => void)[] = [];
  try {
    if (e.neigh) {
      neighReplace(nl, { index: e.neigh.dev, ip: e.neigh.ip, mac: e.neigh.mac });
      undo.push(() => removeNeigh(nl, e.neigh!));
    }
    if (e.fdb) {
      fdbReplace(nl, { index: e.fdb.dev, mac: e.fdb.mac, dst: e.fdb.dst });
      undo.push(() => removeFdb(nl, e.fdb!));
    }
    routeReplace(nl, e.route);
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch { /* best effort: the original error is what matters */ }
    }
    throw err;
  }
}

/** Deletes what {@link installEntries} wrote; entries already gone are fine. */
export function removeEntries(nl: Requester, e: PeerEntries): void {
  deleteQuietly(() => routeDel(nl, { dst: e.route.dst, gw: e.route.gw, dev: e.route.dev }));
  if (e.fdb) removeFdb(nl, e.fdb);
  if (e.neigh) removeNeigh(nl, e.neigh);
}

/**
 * Removes the parts of a lease's previous entries (`prev`, one set per family) that its
 * new entries (`next`) no longer cover: a replace would leave them behind (a new VTEP MAC,
 * a switch to a direct route, a family the lease no longer offers).
 */
export function removeSuperseded(
  nl: Requester,
  prev: readonly PeerEntries[],
  next: readonly PeerEntries[],
): void {
  for (const p of prev) {
    if (!next.some((n) => equalNet(n.route.dst, p.route.dst))) {
      deleteQuietly(() => routeDel(nl, { dst: p.route.dst, gw: p.route.gw, dev: p.route.dev }));
    }
    if (
      p.neigh && !next.some(({ neigh: n }) => n && n.dev === p.neigh!.dev && n.ip === p.neigh!.ip)
    ) {
      removeNeigh(nl, p.neigh);
    }
    if (
      p.fdb && !next.some(({ fdb: f }) => f && f.dev === p.fdb!.dev && sameMAC(f.mac, p.fdb!.mac))
    ) {
      removeFdb(nl, p.fdb);
    }
  }
}
