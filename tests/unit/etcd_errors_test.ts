// etcd client failures as one plain line each: what a newcomer who starts flanneld without
// an etcd (or with a wrong password, or TLS mismatch) reads instead of gRPC internals.
import { assertEquals } from "../helpers/assert.ts";
import { plainEtcdError } from "../../lib/subnet/etcd_store.ts";

const AT = "http://127.0.0.1:2379";

class BrokenCircuitError extends Error {}

Deno.test("plainEtcdError: the raw client texts become one line naming the endpoint", () => {
  const cases: [unknown, string][] = [
    [
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED " +
          "127.0.0.1:2379 (2026-11-29T17:00:00.000Z). Resolution note: ;",
      ),
      `etcd at ${AT} is not reachable (connection refused)`,
    ],
    [
      new BrokenCircuitError("Execution prevented because the circuit breaker is open"),
      `etcd at ${AT} is not reachable (after 3 failed calls the client waits 5 s before trying again)`,
    ],
    [
      new Error("14 UNAVAILABLE: getaddrinfo ENOTFOUND etcd.example"),
      `etcd at ${AT} is not reachable (host name not found)`,
    ],
    [new Error("4 DEADLINE_EXCEEDED: Deadline exceeded"), `etcd at ${AT} did not answer in time`],
    [
      new Error(
        "3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password",
      ),
      `etcd at ${AT} refused the username or password (--etcd-username/--etcd-password)`,
    ],
    [
      new Error("etcdserver: user name is empty"),
      `etcd at ${AT} requires authentication (--etcd-username/--etcd-password)`,
    ],
    [
      new Error("7 PERMISSION_DENIED: etcdserver: permission denied"),
      `etcd at ${AT} denied access: the etcd user lacks permission for flannel's prefix`,
    ],
    [
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: Error: self-signed certificate. " +
          "Resolution note: ",
      ),
      `TLS with etcd at ${AT} failed: self-signed certificate`,
    ],
    [
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: Error: Hostname/IP does not " +
          "match certificate's altnames: Host: localhost. is not cert's CN: etcd " +
          "(2026-11-29T17:00:00.000Z). Resolution note: ;",
      ),
      `TLS with etcd at ${AT} failed: Hostname/IP does not match certificate's altnames: ` +
      "Host: localhost. is not cert's CN: etcd",
    ],
    [new Error("something new\nsecond line"), `etcd at ${AT}: something new`],
  ];
  for (const [e, want] of cases) assertEquals(plainEtcdError(e, AT), want);
});

Deno.test("plainEtcdError: a socket dropped in the TLS handshake is a TLS failure, with a hint", () => {
  const epipe = new Error(
    "14 UNAVAILABLE: No connection established. Last error: write EPIPE " +
      "(2026-11-29T19:52:30.281Z). Resolution note: ",
  );
  const alert = new Error(
    "14 UNAVAILABLE: No connection established. Last error: received fatal alert: " +
      "BadCertificate (2026-11-29T19:52:31.047Z). Resolution note: ",
  );
  const S = "https://127.0.0.1:2379";
  const hint = "; it may require a client certificate (--etcd-certfile and --etcd-keyfile)";
  // Both texts come from the same server refusing a client without a certificate (which one
  // wins is a race), so both read alike.
  assertEquals(
    plainEtcdError(epipe, S, { clientCert: false }),
    `TLS with etcd at ${S} failed: the server closed the connection during the handshake ` +
      `(write EPIPE)${hint}`,
  );
  assertEquals(
    plainEtcdError(alert, S, { clientCert: false }),
    `TLS with etcd at ${S} failed: received fatal alert: BadCertificate${hint}`,
  );
  // With a certificate: no hint. Without TLS a dropped socket is only unreachable, and a
  // refused connection is never a TLS problem.
  assertEquals(
    plainEtcdError(epipe, S, { clientCert: true }),
    `TLS with etcd at ${S} failed: the server closed the connection during the handshake ` +
      "(write EPIPE)",
  );
  assertEquals(plainEtcdError(epipe, AT), `etcd at ${AT} is not reachable`);
  assertEquals(
    plainEtcdError(
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED " +
          "127.0.0.1:2379. Resolution note: ",
      ),
      S,
      { clientCert: false },
    ),
    `etcd at ${S} is not reachable (connection refused)`,
  );
});
