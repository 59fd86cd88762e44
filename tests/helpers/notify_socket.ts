/**
 * A fake systemd notify socket for tests: a bound unix datagram socket (a path, or `@name`
 * for an abstract one) whose messages can be awaited. Built on FFI because
 * Deno.listenDatagram needs `--unstable-net`, which the test tasks do not pass.
 * @module
 */

import {
  AF_UNIX,
  bind,
  close,
  libc,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  sockaddrUn,
  socket,
} from "../../ffi/libc.ts";
import { until } from "./wait.ts";

/** A bound notify socket collecting datagrams as strings. */
export class NotifySocket {
  readonly messages: string[] = [];
  /** Arrival time (ms since epoch) of each message, same index. */
  readonly times: number[] = [];
  #fd: number;
  #closed = false;
  #pump: Promise<void>;

  constructor(readonly path: string) {
    this.#fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bind(this.#fd, sockaddrUn(path), path);
    this.#pump = this.#run();
  }

  async #run(): Promise<void> {
    const buf = new Uint8Array(4096);
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    while (!this.#closed) {
      v.setInt32(0, this.#fd, true);
      v.setInt16(4, POLLIN, true);
      v.setInt16(6, 0, true);
      // Short poll timeout so close() is noticed quickly; runs off the event loop.
      await libc.poll_async(pfd, 1, 200);
      if (this.#closed) return;
      for (;;) {
        const n = libc.recv(this.#fd, buf, buf.byteLength, 0);
        if (n < 0) break;
        this.messages.push(new TextDecoder().decode(buf.subarray(0, n)));
        this.times.push(Date.now());
      }
    }
  }

  /** Waits until a message satisfying `pred` has arrived (at index ≥ `from`); returns it. */
  async waitFor(pred: (m: string) => boolean, timeoutMs = 30_000, from = 0): Promise<string> {
    const found = await until(
      `a matching notify message on ${this.path}`,
      () => {
        const m = this.messages.slice(from).find(pred);
        return m === undefined ? null : { m };
      },
      timeoutMs,
    ).catch((e) => {
      throw new Error(`${e.message}; got ${JSON.stringify(this.messages)}`);
    });
    return found.m;
  }

  /** Closes the socket and removes its path. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#pump;
    close(this.#fd, true);
    if (!this.path.startsWith("@")) await Deno.remove(this.path).catch(() => {});
  }
}
