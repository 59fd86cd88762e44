/**
 * Running our netlink code inside a throw-away network namespace: the calling thread is
 * switched into the namespace just for synchronous code (netlink and ioctl sockets stay
 * bound to the namespace they were created in), and iproute2's JSON view of the same
 * namespace is read for comparison. Namespace plumbing itself comes from netns.ts.
 * @module
 */

import { check, CLONE_NEWNET, close, libc, O_CLOEXEC, open } from "../../ffi/libc.ts";
import { addNetns, ip, must, run } from "./netns.ts";

/** Creates a namespace with a unique `flnl-<random>` name (loopback up); returns the name. */
export async function createTestNetns(): Promise<string> {
  const name = `flnl-${crypto.randomUUID().slice(0, 8)}`;
  await addNetns(name);
  return name;
}

/** Runs synchronous `fn` with this thread inside namespace `ns`, then switches back. */
export function inNetns<T>(ns: string, fn: () => T): T {
  const self = open("/proc/thread-self/ns/net", O_CLOEXEC);
  try {
    const target = open(`/run/netns/${ns}`, O_CLOEXEC);
    try {
      check("setns", libc.setns(target, CLONE_NEWNET), ns);
    } finally {
      close(target, true);
    }
    try {
      return fn();
    } finally {
      check("setns", libc.setns(self, CLONE_NEWNET), "back to the original namespace");
    }
  } finally {
    close(self, true);
  }
}

/** `ip -n <ns> -j …`, parsed. */
export async function ipJSON(ns: string, ...args: string[]): Promise<any[]> {
  const out = await ip(ns, "-j", ...args);
  return out.trim() ? JSON.parse(out) : [];
}

/** `bridge -n <ns> -j …`, parsed. */
export async function bridgeJSON(ns: string, ...args: string[]): Promise<any[]> {
  const out = must(
    await run("bridge", ["-n", ns, "-j", ...args]),
    `bridge -n ${ns} ${args.join(" ")}`,
  );
  return out.trim() ? JSON.parse(out) : [];
}
