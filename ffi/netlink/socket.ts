/**
 * An rtnetlink socket: numbered requests answered by ACK or error, multipart dumps, and
 * multicast event subscription. Requests are synchronous (a round trip costs ~10–20 µs);
 * only waiting for events is asynchronous. The request protocol itself ({@link RequestChannel})
 * is independent of the socket, so that a test kernel speaks it too.
 *
 * Use one socket for requests and a separate one for events: replies are matched by
 * sequence number, so events arriving on a request socket would be discarded
 * ({@link kernelNotifications} opens one per subscription).
 * @module
 */

import {
  AF_NETLINK,
  bind,
  check,
  close,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  ERRNO,
  errno,
  errnoName,
  libc,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  setsockoptInt,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_RCVTIMEO,
  SOCK_CLOEXEC,
  SOCK_RAW,
  socket,
  SOL_SOCKET,
  strerror,
  SyscallError,
} from "../libc.ts";
import {
  addFlags,
  decodeDone,
  decodeError,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  NetlinkError,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  type NlMessage,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  type NotificationSource,
  parseMessages,
  type Requester,
  setSeq,
  SOL_NETLINK,
} from "./message.ts";

const MSG_PEEK = 0x2;
/** Dumps arrive in datagrams of up to ~32 KiB; larger ones are caught by MSG_PEEK|MSG_TRUNC. */
const RECV_BUF = 64 * 1024;
/** Event sockets get a large receive buffer so bursts (many routes at once) do not overrun. */
const EVENT_RCVBUF = 4 * 1024 * 1024;
/** A dump interrupted by concurrent changes (NLM_F_DUMP_INTR) is retried this many times. */
const DUMP_RETRIES = 5;

function netlinkError(op: string, e: number, extAck?: string): NetlinkError {
  return new NetlinkError(op, e, errnoName(e), strerror(e), extAck);
}

/** Options for {@link NetlinkSocket.open}. */
export interface OpenOptions {
  /** How long a request may wait for the kernel's answer (default 10 s); a hang is a bug. */
  timeoutMs?: number;
}

/**
 * The request side of rtnetlink over any datagram transport: numbers each request, collects
 * the answers addressed to it, turns an NLMSG_ERROR into a {@link NetlinkError} and retries
 * interrupted dumps. {@link NetlinkSocket} is the transport to the kernel; a test kernel can
 * be another, answering with the same bytes.
 */
export abstract class RequestChannel implements Requester {
  #seq: number;

  /** @param seq the sequence number before the first request's */
  protected constructor(seq: number) {
    this.#seq = seq;
  }

  /** Port id that answers to our requests are addressed to. */
  abstract get portId(): number;
  /** Sends one request datagram. */
  protected abstract sendRequest(msg: Uint8Array, op: string): void;
  /**
   * The next datagram of answers (blocking); may be a view of a buffer that the next call
   * overwrites.
   */
  protected abstract receiveAnswers(op: string): Uint8Array;

  /**
   * Sends a request with NLM_F_ACK and waits for the ACK. Returns the messages the kernel
   * sent before it (a GET answers with one), throws a {@link NetlinkError} naming `op`.
   */
  request(msg: Uint8Array, op: string): NlMessage[] {
    addFlags(msg, NLM_F_REQUEST | NLM_F_ACK);
    return this.#transact(msg, op).msgs;
  }

  /** Sends a dump request (NLM_F_DUMP) and collects every part until NLMSG_DONE. */
  dump(msg: Uint8Array, op: string): NlMessage[] {
    addFlags(msg, NLM_F_REQUEST | NLM_F_DUMP);
    for (let i = 0;; i++) {
      const r = this.#transact(msg, op);
      if (!r.interrupted || i >= DUMP_RETRIES) return r.msgs;
    }
  }

  /**
   * Sends a dump request and decodes the answers of message type `type` as they arrive,
   * straight from the receive buffer: unlike {@link dump}, no datagram is copied (a dump of
   * 1,000 routes is ~100 datagrams of up to 32 KiB, allocated on every reconcile otherwise).
   * `decode` must not keep the message: its payload is overwritten by the next datagram.
   */
  dumpDecoded<T>(msg: Uint8Array, op: string, type: number, decode: (m: NlMessage) => T): T[] {
    addFlags(msg, NLM_F_REQUEST | NLM_F_DUMP);
    for (let i = 0;; i++) {
      const out: T[] = [];
      const r = this.#transact(msg, op, (m) => {
        if (m.type === type) out.push(decode(m));
      });
      if (!r.interrupted || i >= DUMP_RETRIES) return out;
    }
  }

  /** One request/answer exchange; data messages go to `each` when given, else are collected. */
  #transact(
    msg: Uint8Array,
    op: string,
    each?: (m: NlMessage) => void,
  ): { msgs: NlMessage[]; interrupted: boolean } {
    const seq = this.#seq = (this.#seq + 1) >>> 0;
    setSeq(msg, seq);
    this.sendRequest(msg, op);
    const pid = this.portId;
    const msgs: NlMessage[] = [];
    let interrupted = false;
    for (;;) {
      // Collected messages are copied: the receive buffer is reused for the next datagram.
      const d = this.receiveAnswers(op);
      for (const m of parseMessages(each ? d : d.slice())) {
        // Stale answers to an earlier, timed-out request and foreign messages are skipped.
        if (m.seq !== seq || m.pid !== pid) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.errno !== 0) throw netlinkError(op, e.errno, e.extAck);
          return { msgs, interrupted };
        }
        if (m.type === NLMSG_DONE) {
          const e = decodeDone(m);
          if (e !== 0) throw netlinkError(op, e);
          return { msgs, interrupted };
        }
        if (m.type === NLMSG_NOOP || m.type === NLMSG_OVERRUN) continue;
        if (each) each(m);
        else msgs.push(m);
      }
    }
  }
}

/** An AF_NETLINK / NETLINK_ROUTE socket. */
export class NetlinkSocket extends RequestChannel {
  #fd: number;
  #pid: number;
  #buf = new Uint8Array(RECV_BUF);
  #closed = false;
  // events(): the pollfd array (netlink fd + wake-up eventfd) must outlive each async poll.
  #wakeFd = -1;
  #pollfds = new Uint8Array(16);
  #reading = false; // an events() generator is active
  #inPoll = false; // …and is waiting in poll on the descriptors

  private constructor(fd: number) {
    // Start from a time-derived number so that replies to a previous socket's requests
    // (same port id reused) are never mistaken for ours.
    super((Date.now() & 0x7fffffff) >>> 0);
    this.#fd = fd;
    const sa = new Uint8Array(12);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, 12, true);
    check("getsockname", libc.getsockname(fd, sa, len), "netlink");
    this.#pid = new DataView(sa.buffer).getUint32(4, true);
  }

  /** Opens and binds a socket (kernel-assigned port id). */
  static open(opts: OpenOptions = {}): NetlinkSocket {
    const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    try {
      // sockaddr_nl: family u16, pad u16, pid u32 (0 = let the kernel choose), groups u32.
      const sa = new Uint8Array(12);
      new DataView(sa.buffer).setUint16(0, AF_NETLINK, true);
      bind(fd, sa, "netlink");
      // Errors echo only the request header, plus the kernel's explanation text.
      setsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK");
      setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");
      setRecvTimeout(fd, opts.timeoutMs ?? 10_000);
      return new NetlinkSocket(fd);
    } catch (e) {
      close(fd, true);
      throw e;
    }
  }

  /** The file descriptor (for tests and diagnostics). */
  get fd(): number {
    return this.#fd;
  }

  /** Port id the kernel assigned. */
  get portId(): number {
    return this.#pid;
  }

  protected sendRequest(msg: Uint8Array, op: string): void {
    this.#assertOpen(op);
    this.#send(msg, op);
  }

  protected receiveAnswers(op: string): Uint8Array {
    return this.#recv(op, 0)!;
  }

  #send(msg: Uint8Array, op: string): void {
    for (;;) {
      const n = libc.send(this.#fd, msg as Uint8Array<ArrayBuffer>, msg.byteLength, 0);
      if (n >= 0) return;
      const e = errno();
      if (e !== ERRNO.EINTR) throw netlinkError(`${op} (send)`, e);
    }
  }

  /**
   * Receives one datagram (peeking first so a big one is never truncated). Returns null on
   * EAGAIN when `flags` has MSG_DONTWAIT; a blocking receive that times out throws ETIMEDOUT.
   * ENOBUFS (the kernel dropped messages for us) is reported as an empty datagram on
   * request sockets, whose answer may still come, and thrown to event readers by the caller.
   */
  #recv(op: string, flags: number): Uint8Array | null {
    for (;;) {
      let n = libc.recv(this.#fd, this.#buf, this.#buf.byteLength, flags | MSG_PEEK | MSG_TRUNC);
      if (n > this.#buf.byteLength) this.#buf = new Uint8Array(n);
      if (n >= 0) n = libc.recv(this.#fd, this.#buf, this.#buf.byteLength, flags);
      if (n >= 0) return this.#buf.subarray(0, n);
      const e = errno();
      if (e === ERRNO.EINTR) continue;
      if (e === ERRNO.EAGAIN) {
        if (flags & MSG_DONTWAIT) return null;
        throw netlinkError(`${op} (no answer from the kernel)`, ERRNO.ETIMEDOUT);
      }
      if (e === ERRNO.ENOBUFS && !(flags & MSG_DONTWAIT)) return new Uint8Array(0);
      throw netlinkError(`${op} (receive)`, e);
    }
  }

  /**
   * Joins multicast groups (RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE, RTNLGRP_NEIGH, …) and enlarges
   * the receive buffer. Read the notifications with {@link events}.
   */
  subscribe(groups: number[]): void {
    this.#assertOpen("subscribe");
    for (const g of groups) {
      setsockoptInt(this.#fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g, `join group ${g}`);
    }
    try {
      setsockoptInt(this.#fd, SOL_SOCKET, SO_RCVBUFFORCE, EVENT_RCVBUF); // root only
    } catch {
      setsockoptInt(this.#fd, SOL_SOCKET, SO_RCVBUF, EVENT_RCVBUF);
    }
  }

  /**
   * Notifications of subscribed groups, until {@link close}. Waits with a nonblocking FFI
   * poll (off the event loop), then drains synchronously. When the kernel had to drop
   * notifications (ENOBUFS) a synthetic message of type NLMSG_OVERRUN is yielded: the
   * reader's view is stale and it must resynchronise with a dump.
   */
  async *events(): AsyncGenerator<NlMessage> {
    for await (const batch of this.eventBatches()) yield* batch;
  }

  /**
   * {@link events}, a batch at a time: what one wake-up drained. A reader that only needs to
   * know whether something relevant happened can stop looking at the first hit, instead of
   * decoding every notification (our own writes echo back: 3 per vxlan peer programmed).
   */
  async *eventBatches(): AsyncGenerator<NlMessage[]> {
    this.#assertOpen("events");
    if (this.#reading) throw new Error("netlink: events() is already being read");
    if (this.#wakeFd < 0) {
      this.#wakeFd = check("eventfd", libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    }
    const pv = new DataView(this.#pollfds.buffer);
    this.#reading = true;
    try {
      while (!this.#closed) {
        for (const [i, fd] of [this.#fd, this.#wakeFd].entries()) {
          pv.setInt32(i * 8, fd, true);
          pv.setInt16(i * 8 + 4, POLLIN, true);
          pv.setInt16(i * 8 + 6, 0, true);
        }
        // errno of the pool thread is not visible here; a failed poll (EINTR) just loops.
        this.#inPoll = true;
        try {
          await libc.poll_async(this.#pollfds, 2, -1);
        } finally {
          this.#inPoll = false;
        }
        if (this.#closed) return;
        const batch = this.#drain();
        if (batch.length > 0) yield batch;
      }
    } finally {
      this.#reading = false;
      if (this.#closed) this.#release();
    }
  }

  #drain(): NlMessage[] {
    const out: NlMessage[] = [];
    while (!this.#closed) {
      let d: Uint8Array | null;
      try {
        d = this.#recv("events", MSG_DONTWAIT);
      } catch (e) {
        if (!(e instanceof NetlinkError && e.code === "ENOBUFS")) throw e;
        out.push({ type: NLMSG_OVERRUN, flags: 0, seq: 0, pid: 0, payload: new Uint8Array(0) });
        continue;
      }
      if (d === null) break;
      // Copy: the receive buffer is reused by the next datagram while the consumer holds these.
      for (const m of parseMessages(d.slice())) out.push(m);
    }
    return out;
  }

  /** Closes the socket; an {@link events} reader ends (at once if it is waiting). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inPoll) {
      // Wake the poll; the reader releases the descriptors once poll has returned, so that
      // the pool thread never polls a closed (possibly reused) descriptor number.
      const one = new Uint8Array(8);
      one[0] = 1;
      libc.write(this.#wakeFd, one, 8);
    } else {
      this.#release();
    }
  }

  #release(): void {
    if (this.#fd < 0) return;
    close(this.#fd, true);
    if (this.#wakeFd >= 0) close(this.#wakeFd, true);
    this.#fd = this.#wakeFd = -1;
  }

  #assertOpen(op: string): void {
    if (this.#closed) throw new SyscallError("netlink", ERRNO.EBADF, `${op}: socket closed`);
  }
}

/** Runs `fn` with a socket of its own, closed afterwards (also when `fn` throws). */
export function withNetlinkSocket<T>(fn: (nl: NetlinkSocket) => T, opts: OpenOptions = {}): T {
  const nl = NetlinkSocket.open(opts);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

/** The kernel's notifications, each subscription on a socket of its own. */
export const kernelNotifications: NotificationSource = {
  subscribe(groups: number[]): NetlinkSocket {
    const sock = NetlinkSocket.open();
    try {
      sock.subscribe(groups);
    } catch (e) {
      sock.close();
      throw e;
    }
    return sock;
  },
};

/** SO_RCVTIMEO takes a struct timeval (two 64-bit longs). */
function setRecvTimeout(fd: number, ms: number): void {
  const tv = new Uint8Array(16);
  const v = new DataView(tv.buffer);
  v.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
  v.setBigInt64(8, BigInt((ms % 1000) * 1000), true);
  check("setsockopt", libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16), "SO_RCVTIMEO");
}
