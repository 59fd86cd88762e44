/**
 * Data path counters in a SharedArrayBuffer: written by the Workers, read by the main
 * thread for stats and metrics.
 *
 * A Float64Array rather than Int32/BigInt64 with Atomics: each counter has exactly one
 * writer (the Worker of its direction), aligned element accesses never tear, a float is
 * exact up to 2^53 (no 2^31 wrap), and updating needs no BigInt allocation per packet.
 * @module
 */

/**
 * Counter names; the index of a name is its slot. Prefix `tx_` = TUN→UDP, `rx_` = UDP→TUN;
 * `tx_packets`/`rx_packets` count datagrams on the wire (segments, not super-packets);
 * `rx_drop_tun_write` and `rx_tun_writes` count TUN writes (one per coalesced super-packet).
 */
export const COUNTER_NAMES = [
  "tx_packets",
  "tx_bytes",
  "tx_batches",
  "tx_icmp_unreachable",
  "tx_drop_no_route",
  "tx_drop_ttl",
  "tx_drop_malformed",
  "tx_drop_not_ipv4",
  "tx_drop_send",
  "rx_packets",
  "rx_bytes",
  "rx_batches",
  "rx_drop_malformed",
  "rx_drop_not_our_subnet",
  "rx_drop_unknown_source",
  "rx_drop_ttl",
  "rx_drop_tun_write",
  // Offloads: super-packets split (TSO) and written (coalesced, TCP and UDP), UDP GSO sends
  // and GRO buffers.
  "tx_tso_superpackets",
  "tx_gso_sends",
  "rx_gro_buffers",
  "rx_coalesced_superpackets",
  "rx_coalesced_segments",
  "rx_tun_writes",
  // 1 when the feature is in use (the main thread sets them; a Worker clears one on fallback).
  "feature_tun_tso",
  "feature_udp_gso",
  "feature_udp_gro",
  "feature_udp_coalesce",
] as const;

/** A counter's name. */
export type CounterName = typeof COUNTER_NAMES[number];

/** Slot index of each counter, for the hot path (`counts[C.rx_packets] += n`). */
export const C = Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, i])) as Record<
  CounterName,
  number
>;

/** Allocates the shared counter block. */
export function createCounters(): Float64Array<SharedArrayBuffer> {
  return new Float64Array(new SharedArrayBuffer(COUNTER_NAMES.length * 8));
}

/** Copies the counters into a plain object. */
export function snapshotCounters(counts: Float64Array): Record<CounterName, number> {
  const out = {} as Record<CounterName, number>;
  COUNTER_NAMES.forEach((n, i) => out[n] = counts[i]);
  return out;
}
