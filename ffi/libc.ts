/**
 * libc through Deno FFI: the system calls flanneld needs, with errors turned into
 * {@link SyscallError}s that name the call and the errno.
 *
 * Hot-path rule: every size parameter is declared `u32` and every result `i32`, never a
 * 64-bit integer: any 64-bit integer parameter or result sends Deno FFI down its slow path
 * (~200 ns a call, measured here, against 7–35 ns on the fast-call path). {@link selfTest} checks at start-up that narrow declarations
 * behave on this platform.
 *
 * Each Worker that imports this module gets its own `dlopen` and its own errno pointer
 * (errno is thread-local).
 * @module
 */

const LIBC_CANDIDATES = [
  "libc.so.6",
  "libc.so",
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
];

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u32", "buffer"], result: "i32" },
  /** ioctl whose argument is a value, not a pointer (TUNSETOFFLOAD). */
  ioctl_value: { name: "ioctl", parameters: ["i32", "u32", "u32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  readv: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  writev: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"], result: "i32" },
  recvfrom: { parameters: ["i32", "buffer", "u32", "i32", "buffer", "buffer"], result: "i32" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  /** Same as poll, but runs on a Deno blocking-pool thread: for waiting without blocking the event loop. */
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  if_indextoname: { parameters: ["u32", "buffer"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  getpid: { parameters: [], result: "i32" },
  /** Moves the calling thread into another namespace (tests: netlink sockets inside a netns). */
  setns: { parameters: ["i32", "i32"], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  /**
   * glibc: hands freed heap memory back to the kernel (ffi/malloc.ts). Optional:
   * other libcs lack it, and a missing optional symbol is null instead of failing dlopen.
   */
  malloc_trim: { parameters: ["usize"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

function openLibc(): Deno.DynamicLibrary<typeof SYMBOLS> {
  let last: unknown;
  for (const name of LIBC_CANDIDATES) {
    try {
      return Deno.dlopen(name, SYMBOLS);
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`cannot load libc through FFI (need --allow-ffi): ${last}`);
}

const lib = openLibc();

/** The raw symbols. Prefer the checked wrappers below outside of hot loops. */
export const libc = lib.symbols;

const errnoPtr = lib.symbols.__errno_location()!;
const errnoView = new Deno.UnsafePointerView(errnoPtr);

/** errno of the last failed call on this thread. */
export function errno(): number {
  return errnoView.getInt32(0);
}

/** Symbolic names of the errnos we handle or report (Linux, x86_64 and aarch64 alike). */
export const ERRNO: Record<string, number> = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOSPC: 28,
  EPIPE: 32,
  ERANGE: 34,
  ENOBUFS: 105,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  ENOPROTOOPT: 92,
  ESOCKTNOSUPPORT: 94,
  EAFNOSUPPORT: 97,
  ENOTSUP: 95,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
};
const ERRNO_NAME = new Map(Object.entries(ERRNO).map(([k, v]) => [v, k]));

/** `EEXIST` for 17, `errno 200` for unknown numbers. */
export function errnoName(n: number): string {
  return ERRNO_NAME.get(n) ?? `errno ${n}`;
}

/** libc's message for an errno ("File exists"). */
export function strerror(n: number): string {
  const p = lib.symbols.strerror(n);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${n}`;
}

/** A failed system call: names the call, the errno and what it was doing. */
export class SyscallError extends Error {
  /** The errno's symbolic name, e.g. `EEXIST`. */
  readonly code: string;
  constructor(readonly call: string, readonly errno: number, context?: string) {
    super(`${call}${context ? ` (${context})` : ""}: ${errnoName(errno)}: ${strerror(errno)}`);
    this.name = "SyscallError";
    this.code = errnoName(errno);
  }
}

/** Throws a {@link SyscallError} for `call` when `ret` < 0; returns `ret` otherwise. */
export function check(call: string, ret: number, context?: string): number {
  if (ret < 0) throw new SyscallError(call, errno(), context);
  return ret;
}

const enc = new TextEncoder();

/** NUL-terminated copy of a string for `char *` parameters. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(s.length * 3 + 1);
  const { written } = enc.encodeInto(s, b);
  return b.subarray(0, written + 1) as Uint8Array<ArrayBuffer>;
}

// Constants (Linux).
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SOL_IP = 0;
export const SOL_UDP = 17;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_RCVTIMEO = 20;
export const MSG_DONTWAIT = 0x40;
export const MSG_WAITFORONE = 0x10000;
export const MSG_TRUNC = 0x20;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;

/** `open(2)`; throws on failure. */
export function open(path: string, flags: number, mode = 0): number {
  return check("open", lib.symbols.open(cstr(path), flags, mode), path);
}

/** `close(2)`; ignores EBADF on double close in teardown paths only when `quiet`. */
export function close(fd: number, quiet = false): void {
  const r = lib.symbols.close(fd);
  if (r < 0 && !quiet) throw new SyscallError("close", errno(), `fd ${fd}`);
}

/** `ioctl(2)` with a pointer argument. */
export function ioctl(
  fd: number,
  req: number,
  arg: Uint8Array<ArrayBuffer>,
  context?: string,
): number {
  return check("ioctl", lib.symbols.ioctl(fd, req, arg), context);
}

/** `ioctl(2)` with an integer argument passed by value. */
export function ioctlValue(fd: number, req: number, value: number, context?: string): number {
  return check("ioctl", lib.symbols.ioctl_value(fd, req, value), context);
}

/** `socket(2)`. */
export function socket(domain: number, type: number, protocol: number): number {
  return check(
    "socket",
    lib.symbols.socket(domain, type, protocol),
    `domain ${domain} type ${type}`,
  );
}

/** `bind(2)`. */
export function bind(fd: number, addr: Uint8Array<ArrayBuffer>, context?: string): void {
  check("bind", lib.symbols.bind(fd, addr, addr.byteLength), context);
}

/** `setsockopt(2)` with an int value. */
export function setsockoptInt(
  fd: number,
  level: number,
  opt: number,
  value: number,
  context?: string,
): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  check(
    "setsockopt",
    lib.symbols.setsockopt(fd, level, opt, b, 4),
    context ?? `level ${level} opt ${opt}`,
  );
}

/** `getsockopt(2)` for an int value. */
export function getsockoptInt(fd: number, level: number, opt: number): number {
  const b = new Uint8Array(4);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 4, true);
  check("getsockopt", lib.symbols.getsockopt(fd, level, opt, b, len), `level ${level} opt ${opt}`);
  return new DataView(b.buffer).getInt32(0, true);
}

/** Sets or clears O_NONBLOCK. */
export function setNonBlocking(fd: number, on: boolean): void {
  const fl = check("fcntl", lib.symbols.fcntl(fd, F_GETFL, 0));
  check("fcntl", lib.symbols.fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

/** `if_nametoindex(3)`: 0 when there is no such interface. */
export function ifNameToIndex(name: string): number {
  return lib.symbols.if_nametoindex(cstr(name));
}

/** `sockaddr_in` for an IPv4 address (u32, host order) and port. */
export function sockaddrIn(ip: number, port: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  v.setUint32(4, ip, false);
  return b;
}

/** Decodes a `sockaddr_in` into address (u32) and port. */
export function parseSockaddrIn(b: Uint8Array): { ip: number; port: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { port: v.getUint16(2, false), ip: v.getUint32(4, false) };
}

/**
 * `sockaddr_un` for a unix socket path; a leading `@` names an abstract socket (the `@`
 * becomes the NUL byte, as systemd's `$NOTIFY_SOCKET` convention has it). The result is
 * cut to the used length because abstract names are not NUL-terminated.
 */
export function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const name = enc.encode(path);
  if (name.length === 0 || name.length > 107) {
    throw new Error(`unix socket path too long or empty: ${path}`);
  }
  const b = new Uint8Array(2 + name.length + 1);
  new DataView(b.buffer).setUint16(0, AF_UNIX, true);
  b.set(name, 2);
  if (path.startsWith("@")) {
    b[2] = 0;
    return b.subarray(0, 2 + name.length) as Uint8Array<ArrayBuffer>;
  }
  return b;
}

/** Address of an ArrayBuffer-backed view, as a bigint, for building kernel structs (iovec, msghdr). */
export function addressOf(b: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}

/**
 * Checks that the narrow (u32/i32) declarations pass values through correctly on this
 * platform: writes and reads back a known buffer through a pipe-like eventfd.
 * Throws when the platform would truncate or mis-extend arguments.
 */
export function selfTest(): void {
  const fd = check("eventfd", lib.symbols.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  try {
    const w = new Uint8Array(8);
    new DataView(w.buffer).setBigUint64(0, 0x1_0000_0002n, true);
    if (lib.symbols.write(fd, w, 8) !== 8) throw new SyscallError("write", errno(), "self-test");
    const r = new Uint8Array(8);
    if (lib.symbols.read(fd, r, 8) !== 8) throw new SyscallError("read", errno(), "self-test");
    if (new DataView(r.buffer).getBigUint64(0, true) !== 0x1_0000_0002n) {
      throw new Error("FFI self-test: value changed through u32-declared write/read");
    }
    if (lib.symbols.read(fd, r, 8) !== -1 || errno() !== ERRNO.EAGAIN) {
      throw new Error("FFI self-test: errno not visible through __errno_location");
    }
  } finally {
    lib.symbols.close(fd);
  }
}
