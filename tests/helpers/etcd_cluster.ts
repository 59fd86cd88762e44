/**
 * A 3-member (or n-member) etcd cluster on loopback for tests: members are
 * {@link EtcdServer}s sharing one `--initial-cluster`, so each can be killed and resumed
 * with its data, and the current leader can be asked for.
 * @module
 */

import { EtcdServer, freePort } from "./etcd.ts";

/** A running etcd cluster; end with {@link EtcdCluster.destroy}. */
export class EtcdCluster {
  private constructor(readonly members: EtcdServer[]) {}

  /** Starts `size` members and waits until every one answers `/health` (a leader exists). */
  static async start(size = 3): Promise<EtcdCluster> {
    const names = Array.from({ length: size }, (_, i) => `m${i}`);
    const peers = names.map(() => freePort());
    const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${peers[i]}`).join(",");
    const members = await Promise.all(
      names.map((name, i) => EtcdServer.start({ name, initialCluster, peerPort: peers[i] })),
    );
    const c = new EtcdCluster(members);
    try {
      await Promise.all(members.map((m) => m.waitHealthy(30_000)));
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return c;
  }

  /** Every member's client URL. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** Running members. */
  get alive(): EtcdServer[] {
    return this.members.filter((m) => m.running);
  }

  /**
   * The member that is leader now, asked of the running members (`endpoint status`); member
   * ids are compared as text because they do not fit a JSON number.
   */
  async leader(): Promise<EtcdServer> {
    for (const m of this.alive) {
      const out = await m.ctl("endpoint", "status", "-w", "json").catch(() => "");
      const self = /"member_id":(\d+)/.exec(out)?.[1];
      const leader = /"leader":(\d+)/.exec(out)?.[1];
      if (self && self === leader) return m;
    }
    throw new Error("no running member says it is the leader");
  }

  /** Runs etcdctl against the first running member that answers; throws the last error. */
  async ctl(...args: string[]): Promise<string> {
    let last: unknown = new Error("no member running");
    for (const m of this.alive) {
      try {
        return await m.ctl(...args);
      } catch (e) {
        last = e;
      }
    }
    throw last;
  }

  /** Kills every member and removes their data. */
  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.destroy()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }
}
