// Unit tests for lib/daemon/health: readiness rules, the Prometheus formatter and the backend
// stats mapping, the HTTP routes against a fake daemon state, and sd_notify datagrams.
import { assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { type ReadinessInput, readinessProblems } from "../../lib/daemon/health/readiness.ts";
import { formatFamilies } from "../../lib/daemon/health/prometheus.ts";
import { backendFamilies } from "../../lib/daemon/health/backend_metrics.ts";
import { HealthMonitor, type HealthState } from "../../lib/daemon/health/monitor.ts";
import { handle } from "../../lib/daemon/health/server.ts";
import { sdNotify, watchdogIntervalMs } from "../../ffi/sd_notify.ts";
import { sockaddrUn } from "../../ffi/libc.ts";
import type { Lease } from "../../lib/values/lease.ts";
import { metricValue, parsePrometheus } from "../helpers/prometheus.ts";
import { NotifySocket } from "../helpers/notify_socket.ts";

const NOW = 1_800_000_000_000;
const lease: Lease = {
  subnet: { ip: 0x0a053400, prefix: 24 },
  attrs: { publicIP: 0xc0a8640a, publicIPv6: null },
  expiration: NOW + 3600_000,
};
const healthy: ReadinessInput = {
  now: NOW,
  startedAt: NOW - 60_000,
  lease,
  subnetEnvWritten: true,
  watch: { connected: true, lastResponseAt: NOW - 2000 },
  etcdLastAnswerAt: NOW - 1000,
};

Deno.test("readiness: healthy snapshot has no problems", () => {
  assertEquals(readinessProblems(healthy), []);
  assertEquals(readinessProblems({ ...healthy, rulesInPlace: true }), []);
  assertEquals(readinessProblems({ ...healthy, backendProblems: [] }), []);
  // A reservation (expiration 0) never expires.
  assertEquals(readinessProblems({ ...healthy, lease: { ...lease, expiration: 0 } }), []);
});

Deno.test("readiness: each failing condition gives its reason", () => {
  const cases: [Partial<ReadinessInput>, RegExp][] = [
    [{ lease: null }, /^no subnet lease yet$/],
    [
      { lease: { ...lease, expiration: NOW - 5000 } },
      /^lease on 10\.5\.52\.0\/24 expired 5 s ago$/,
    ],
    [{ etcdLastAnswerAt: NOW - 12_500 }, /^etcd not answering for 12 s$/],
    [{ watch: undefined }, /^lease watch not started$/],
    [
      { watch: { connected: false, lastResponseAt: NOW - 4000 } },
      /^lease watch disconnected \(last answer 4 s ago\)$/,
    ],
    [{ watch: { connected: true, lastResponseAt: NOW - 20_000 } }, /^lease watch silent for 20 s$/],
    [{ subnetEnvWritten: false }, /^subnet\.env not written yet$/],
    [{ rulesInPlace: false }, /^iptables rules not in place$/],
    [
      { backendProblems: ["own route 10.5.52.0/24 → eni-1 not in place in rtb-1"] },
      /^own route 10\.5\.52\.0\/24 → eni-1 not in place in rtb-1$/,
    ],
  ];
  for (const [patch, re] of cases) {
    const p = readinessProblems({ ...healthy, ...patch });
    assertEquals(p.length, 1, `${JSON.stringify(patch)} → ${p}`);
    assertMatch(p[0], re);
  }
  // A short disconnect (reconnect after compaction) is tolerated.
  assertEquals(
    readinessProblems({ ...healthy, watch: { connected: false, lastResponseAt: NOW - 1000 } }),
    [],
  );
  // Before etcd ever answered, the silence counts from process start.
  assertMatch(
    readinessProblems({ ...healthy, etcdLastAnswerAt: 0, startedAt: NOW - 30_000 }).join(),
    /etcd not answering for 30 s/,
  );
});

Deno.test("prometheus: formatter output parses strictly; escapes label values", () => {
  const text = formatFamilies([
    { name: "x_total", help: "a \\ help\nline", type: "counter", samples: [{ value: 3 }] },
    {
      name: "y",
      help: "g",
      type: "gauge",
      samples: [{ value: NaN, labels: { a: 'q"u\\o\nte' } }, {
        value: Infinity,
        labels: { a: "b" },
      }],
    },
    { name: "empty", help: "left out", type: "gauge", samples: [] },
  ]);
  assertEquals(
    text,
    '# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\nx_total 3\n# HELP y g\n# TYPE y gauge\ny{a="q\\"u\\\\o\\nte"} NaN\ny{a="b"} +Inf\n',
  );
  const fams = parsePrometheus(text);
  assertEquals(fams.get("y")!.samples[0].labels.a, 'q"u\\o\nte');
  assertEquals(fams.has("empty"), false);
  assertThrows(
    () => formatFamilies([{ name: "x", help: "", type: "counter", samples: [{ value: 1 }] }]),
    Error,
    /_total/,
  );
  assertThrows(
    () => formatFamilies([{ name: "1x", help: "", type: "gauge", samples: [{ value: 1 }] }]),
    Error,
    /invalid metric name/,
  );
});

Deno.test("prometheus parser rejects malformed text", () => {
  const bad: [string, string][] = [
    ["x 1\n", "line 1: sample x outside its family"], // no TYPE
    ["# TYPE x counter\nx_total 1\n", "line 1: counter x does not end in _total"],
    ["# TYPE x gauge\nx{a=b} 1\n", "line 2: bad labels"], // unquoted label
    ["# TYPE x gauge\nx 1\nx 2\n", "line 3: duplicate series"],
    ["# TYPE x gauge\nx one\n", "line 2: bad value"],
    ["# TYPE x gauge\n# TYPE y gauge\nx 1\n", "line 3: sample x outside its family"],
    ["# TYPE x gauge\nx 1", "must end with a newline"],
  ];
  for (const [t, why] of bad) assertThrows(() => parsePrometheus(t), Error, why);
});

Deno.test("backend stats map onto labelled families", () => {
  const fams = backendFamilies("udp", {
    tx_packets: 5,
    rx_packets: 7,
    rx_bytes: 700,
    rx_drop_malformed: 2,
    rx_drop_unknown_source: 1,
    tx_drop_no_route: 3,
    repairs: 4,
    repairs_route: 3,
    repairs_fdb: 1,
    peers: 2,
    reconciles: 9,
  });
  const parsed = parsePrometheus(formatFamilies(fams));
  assertEquals(
    metricValue(parsed, "flannel_backend_packets_total", { backend: "udp", direction: "rx" }),
    7,
  );
  assertEquals(metricValue(parsed, "flannel_backend_bytes_total", { direction: "rx" }), 700);
  assertEquals(
    metricValue(parsed, "flannel_backend_dropped_packets_total", {
      direction: "rx",
      reason: "malformed",
    }),
    2,
  );
  assertEquals(
    metricValue(parsed, "flannel_backend_dropped_packets_total", {
      direction: "tx",
      reason: "no_route",
    }),
    3,
  );
  assertEquals(
    metricValue(parsed, "flannel_backend_repairs_total"),
    4,
    "sum over kinds; the plain sum key is not double-counted",
  );
  assertEquals(metricValue(parsed, "flannel_backend_repairs_total", { kind: "fdb" }), 1);
  assertEquals(parsed.get("flannel_backend_peers")!.type, "gauge");
  assertEquals(metricValue(parsed, "flannel_backend_reconciles_total"), 9);
});

Deno.test("backend stats: peers per address family are a labelled gauge", () => {
  const fams = backendFamilies("vxlan", { peers: 3, peers_ipv4: 3, peers_ipv6: 2 });
  const parsed = parsePrometheus(formatFamilies(fams));
  assertEquals(parsed.get("flannel_backend_peers_by_family")!.type, "gauge");
  assertEquals(metricValue(parsed, "flannel_backend_peers_by_family", { family: "ipv4" }), 3);
  assertEquals(metricValue(parsed, "flannel_backend_peers_by_family", { family: "ipv6" }), 2);
  assertEquals(metricValue(parsed, "flannel_backend_peers"), 3);
});

function fakeState(): HealthState {
  const watcherStats = {
    events: 3,
    reconnects: 1,
    relists: 1,
    compactions: 0,
    stalls: 0,
    badLeases: 0,
    lastEventAt: Date.now() - 1000,
    lastResponseAt: Date.now(),
    connected: true,
  };
  return {
    subnetEnvWritten: true,
    config: { backendType: "udp" } as HealthState["config"],
    manager: {
      lease,
      stats: {
        renewals: 2,
        renewFailures: 1,
        losses: 0,
        regained: 0,
        subnetChanges: 0,
        acquireRetries: 0,
      },
    } as unknown as HealthState["manager"],
    watcher: {
      stats: watcherStats,
      leases: () => [lease, lease],
    } as unknown as HealthState["watcher"],
    backend: {
      stats: () => ({ rx_packets: 1, rx_drop_malformed: 4 }),
    } as unknown as HealthState["backend"],
  };
}

Deno.test("routes: /healthz, /readyz 200 and 503 with reasons, /metrics", async () => {
  const state = fakeState();
  const m = new HealthMonitor(state, null);
  const get = async (p: string) => {
    const r = handle(new Request(`http://x${p}`), m);
    return { status: r.status, body: await r.text(), type: r.headers.get("content-type") };
  };
  assertEquals((await get("/healthz")).body, "flanneld is running");
  assertEquals(await get("/readyz"), {
    status: 200,
    body: "flanneld is ready",
    type: "text/plain; charset=utf-8",
  });
  // The backend's own reasons come from its problems(), asked at each request.
  let backendProblems: string[] = ["own route 10.5.52.0/24 → eni-1 not checked yet in rtb-1"];
  state.backend = { ...state.backend!, problems: () => backendProblems };
  assertEquals(await get("/readyz"), {
    status: 503,
    body: "flanneld is not ready yet\nown route 10.5.52.0/24 → eni-1 not checked yet in rtb-1\n",
    type: "text/plain; charset=utf-8",
  });
  backendProblems = [];
  assertEquals((await get("/readyz")).status, 200);
  state.subnetEnvWritten = false;
  state.rulesInPlace = false;
  const r = await get("/readyz");
  assertEquals(r.status, 503);
  assertEquals(
    r.body,
    "flanneld is not ready yet\nsubnet.env not written yet\niptables rules not in place\n",
  );
  const met = await get("/metrics");
  assertEquals(met.type, "text/plain; version=0.0.4; charset=utf-8");
  const fams = parsePrometheus(met.body);
  assertEquals(metricValue(fams, "flannel_ready"), 0);
  assertEquals(metricValue(fams, "flannel_iptables_rules_in_place"), 0);
  assertEquals(fams.get("flannel_lease_info")!.samples[0].labels.subnet, "10.5.52.0/24");
  assertEquals(
    metricValue(fams, "flannel_lease_expiry_timestamp_seconds"),
    (NOW + 3600_000) / 1000,
  );
  assertEquals(metricValue(fams, "flannel_lease_renew_failures_total"), 1);
  assertEquals(metricValue(fams, "flannel_watch_events_total"), 3);
  assertEquals(metricValue(fams, "flannel_peers_known"), 2);
  assertEquals(
    metricValue(fams, "flannel_backend_dropped_packets_total", { reason: "malformed" }),
    4,
  );
  assertEquals((await get("/nope")).status, 404);
});

Deno.test("routes: /metrics parses before the daemon has any state", async () => {
  const m = new HealthMonitor({ subnetEnvWritten: false }, null);
  const fams = parsePrometheus(await handle(new Request("http://x/metrics"), m).text());
  assertEquals(metricValue(fams, "flannel_ready"), 0);
  assertEquals(fams.has("flannel_lease_info"), false);
});

Deno.test("sd_notify: datagrams reach a path socket and an abstract socket", async () => {
  const dir = Deno.makeTempDirSync();
  const sock = new NotifySocket(`${dir}/notify.sock`);
  const abstract = new NotifySocket(`@flannel-test-${Deno.pid}`);
  try {
    assertEquals(sdNotify("READY=1", sock.path), true);
    assertEquals(await sock.waitFor(() => true, 5000), "READY=1");
    assertEquals(sdNotify("STOPPING=1", abstract.path), true);
    assertEquals(await abstract.waitFor(() => true, 5000), "STOPPING=1");
    assertEquals(sdNotify("READY=1", undefined), false, "no socket: no-op");
    assertEquals(sdNotify("X=1", `${dir}/missing.sock`), false, "failure is reported, not thrown");
  } finally {
    await sock.close();
    await abstract.close();
    Deno.removeSync(dir, { recursive: true });
  }
  const abs = sockaddrUn("@flannel-test");
  assertEquals([...abs.subarray(2)], [0, ...new TextEncoder().encode("flannel-test")]);
  assertEquals(abs.byteLength, 2 + 13);
  assertEquals(sockaddrUn("/run/x").byteLength, 2 + 6 + 1);
});

Deno.test("sd_notify: watchdog interval is half of WATCHDOG_USEC, for our pid only", () => {
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "20000000" }, 5), 10_000);
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "5" }, 5), 10_000);
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "6" }, 5), null);
  assertEquals(watchdogIntervalMs({}, 5), null);
  assertEquals(watchdogIntervalMs({ WATCHDOG_USEC: "junk" }, 5), null);
});
