/**
 * A loopback TCP proxy in front of etcd that tests can cut (refuse and drop connections)
 * or freeze (keep connections open but forward nothing, like a stalled gRPC stream), to
 * partition a client from etcd while etcd itself keeps running.
 * @module
 */

/** A proxy from 127.0.0.1:<port> to a target. */
export class TcpProxy {
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  #cut = false;
  #frozen = new Set<Deno.Conn>();

  private constructor(
    listener: Deno.Listener,
    readonly target: { hostname: string; port: number },
  ) {
    this.#listener = listener;
    this.#accept();
  }

  /** Starts a proxy to `target` on a free loopback port. */
  static start(target: { hostname: string; port: number }): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), target);
  }

  /** `http://127.0.0.1:<port>` */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  async #accept(): Promise<void> {
    for await (const c of this.#listener) {
      if (this.#cut) {
        c.close();
        continue;
      }
      this.#pipe(c).catch(() => {});
    }
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.target);
    } catch {
      client.close();
      return;
    }
    this.#conns.add(client);
    this.#conns.add(upstream);
    const copy = async (from: Deno.Conn, to: Deno.Conn, owner: Deno.Conn) => {
      const buf = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          if (this.#frozen.has(owner)) continue; // swallow: the stream goes silent
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* closed */ }
      for (const c of [from, to]) {
        try {
          c.close();
        } catch { /* already */ }
        this.#conns.delete(c);
      }
      this.#frozen.delete(owner);
    };
    await Promise.all([copy(client, upstream, client), copy(upstream, client, client)]);
  }

  /** Drops every connection and refuses new ones until {@link restore}. */
  cut(): void {
    this.#cut = true;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already */ }
    }
    this.#conns.clear();
  }

  /** Accepts connections again. */
  restore(): void {
    this.#cut = false;
  }

  /** Current connections stop forwarding (but stay open); new connections work. */
  freeze(): void {
    for (const c of this.#conns) this.#frozen.add(c);
  }

  /** Closes the proxy. */
  close(): void {
    this.cut();
    try {
      this.#listener.close();
    } catch { /* already */ }
  }
}
