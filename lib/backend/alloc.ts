/**
 * `alloc`: upstream's lease-only backend. It leases a subnet and writes subnet.env but
 * carries no traffic; useful where something else programs the network.
 * @module
 */

import type { Backend, BackendKind } from "./backend.ts";

/** The alloc backend: lease without BackendType, MTU of the external interface; no options. */
export const allocBackend: BackendKind<Record<never, never>> = {
  parse: () => ({}),
  create(ctx): Backend {
    let events = 0;
    return {
      leaseType: "",
      mtu: ctx.ext.mtu,
      prepare: () => Promise.resolve({}),
      start: () => Promise.resolve(),
      handle: (evs) => {
        events += evs.length;
        return Promise.resolve();
      },
      stop: () => Promise.resolve(),
      stats: () => ({ lease_events: events }),
    };
  },
};
