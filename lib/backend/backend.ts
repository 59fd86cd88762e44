/**
 * The backend contract, after upstream flannel's: a backend prepares its device before the
 * lease is acquired (its attributes go into the lease), is started with our own lease, and
 * then programs the data path from remote lease events until stopped.
 * @module
 */

import type { NetworkConfig } from "../values/config.ts";
import type { Lease, LeaseEvent } from "../values/lease.ts";
import type { ExternalInterface } from "../values/iface.ts";

/** Everything a backend gets at construction. */
export interface BackendContext<O = unknown> {
  network: NetworkConfig;
  ext: ExternalInterface;
  /** The backend's own options, parsed from the config's Backend object by its kind. */
  options: O;
  /** `--reconcile-interval`: how often kernel state is checked and repaired, in seconds. */
  reconcileIntervalSeconds: number;
}

/** Lease attribute pieces a backend contributes. */
export interface BackendLeaseData {
  backendData?: unknown;
  backendV6Data?: unknown;
}

/** A data path. */
export interface Backend {
  /** `BackendType` written into our lease; "" for udp and alloc (upstream omits it). */
  readonly leaseType: string;
  /** MTU for subnet.env (`FLANNEL_MTU`). */
  readonly mtu: number;
  /** Creates devices before the lease is acquired; returns what goes into the lease. */
  prepare(): Promise<BackendLeaseData>;
  /** Configures addresses and routes for our lease and starts the data path. */
  start(own: Lease): Promise<void>;
  /** Applies remote lease changes; our own lease never appears here. Must be idempotent. */
  handle(events: LeaseEvent[]): Promise<void>;
  /** Stops the data path. Kernel state that survives the process stays (zero-downtime restarts). */
  stop(): Promise<void>;
  /** Counters for metrics and tests (packets, bytes, drops by reason, repairs…). */
  stats(): Record<string, number>;
  /** Why the data path is not ready yet (for `/readyz`); empty or absent when it is. */
  problems?(): string[];
}

/**
 * A backend type: how its options are read from the config's Backend object, and how it is
 * created with them. Options are parsed (and refused, naming the field) while the config is
 * read, before any device or lease exists.
 */
export interface BackendKind<O> {
  /** Parses and validates the Backend object; throws ConfigError naming the field. */
  parse(backend: Record<string, unknown>, network: NetworkConfig): O;
  /** Creates the backend. */
  create(ctx: BackendContext<O>): Backend;
}
