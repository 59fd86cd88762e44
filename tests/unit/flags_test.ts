// Unit tests for lib/values/flags.ts: upstream's flags and defaults (README "Flags"), Go `flag`
// syntax, and the FLANNELD_* environment fallback.
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertThrows,
} from "../helpers/assert.ts";
import { eachCase, eachNull } from "./table.ts";
import {
  envName,
  FlagError,
  FLAGS,
  type FlagValues,
  parseDuration,
  parseFlags,
  usage,
} from "../../lib/values/flags.ts";

const vals = (argv: string[], env: Record<string, string> = {}) => parseFlags(argv, env).values;

Deno.test("defaults are upstream's", () => {
  const v = vals([]);
  const want: Record<string, unknown> = {
    "etcd-endpoints": "http://127.0.0.1:4001,http://127.0.0.1:2379",
    "etcd-prefix": "/coreos.com/network",
    "etcd-keyfile": "",
    "iface": [],
    "iface-regex": [],
    "subnet-file": "/run/flannel/subnet.env",
    "subnet-lease-renew-margin": 60,
    "ip-masq": false,
    "iptables-resync": 5,
    "iptables-forward-rules": true,
    "ip-blackhole-route": false,
    "healthz-ip": "0.0.0.0",
    "healthz-port": 0,
    "kube-annotation-prefix": "flannel.alpha.coreos.com",
    "net-config-path": "/etc/kube-flannel/net-conf.json",
    "set-node-network-unavailable": true,
    "version": false,
    "v": 0,
  };
  for (const [k, w] of Object.entries(want)) assertEquals(v[k as keyof FlagValues], w, k);
  const p = parseFlags([]);
  assertEquals(p.help, false);
  assertEquals(p.explicit.size, 0);
});

Deno.test("-flag / --flag with =value or a separate value", () => {
  for (
    const argv of [
      ["-etcd-prefix=/x"],
      ["--etcd-prefix=/x"],
      ["-etcd-prefix", "/x"],
      ["--etcd-prefix", "/x"],
    ]
  ) {
    const p = parseFlags(argv);
    assertEquals(p.values["etcd-prefix"], "/x", argv.join(" "));
    assert(p.explicit.has("etcd-prefix"));
  }
  // A value may itself look like a flag or contain '='.
  assertEquals(vals(["-public-ip", "-5"])["public-ip"], "-5");
  assertEquals(vals(["-etcd-endpoints=http://a:1/?x=y"])["etcd-endpoints"], "http://a:1/?x=y");
  assertEquals(vals(["-etcd-password="])["etcd-password"], "");
  assertEquals(vals(["-etcd-prefix=/a", "-etcd-prefix=/b"])["etcd-prefix"], "/b", "last wins");
});

Deno.test("booleans: -flag, -flag=false, --flag=0, default-true flag turned off", () => {
  const cases: [string[], string, boolean][] = [
    [["-ip-masq"], "ip-masq", true],
    [["--ip-masq"], "ip-masq", true],
    [["-ip-masq=true"], "ip-masq", true],
    [["-ip-masq=T"], "ip-masq", true],
    [["-ip-masq=1"], "ip-masq", true],
    [["-ip-masq=false"], "ip-masq", false],
    [["--ip-masq=0"], "ip-masq", false],
    [["-ip-masq=F"], "ip-masq", false],
    [["-iptables-forward-rules=false"], "iptables-forward-rules", false],
    [["--iptables-forward-rules=FALSE"], "iptables-forward-rules", false],
    [["-iptables-forward-rules"], "iptables-forward-rules", true],
    [["-ip-masq", "-ip-masq=false"], "ip-masq", false],
  ];
  eachCase(
    ([argv, name]: [string[], string]) => vals(argv)[name as keyof FlagValues],
    cases.map(([a, n, w]) => [[a, n], w]),
  );
  // A bool never takes the next argument: it ends the flags as a positional.
  const p = parseFlags(["-ip-masq", "false", "-v=3"]);
  assertEquals([p.values["ip-masq"], p.values["v"], p.positionals], [true, 0, [
    "false",
    "-v=3",
  ]]);
});

Deno.test("ints and durations", () => {
  const v = vals([
    "-v=3",
    "-healthz-port",
    "8080",
    "-subnet-lease-renew-margin=1439",
    "-iptables-resync",
    "10",
  ]);
  assertEquals([
    v["v"],
    v["healthz-port"],
    v["subnet-lease-renew-margin"],
    v["iptables-resync"],
  ], [3, 8080, 1439, 10]);
  assertEquals(vals(["-subnet-lease-renew-margin=1"])["subnet-lease-renew-margin"], 1);
  assertEquals(vals(["-subnet-lease-ttl=1h30m"])["subnet-lease-ttl"], 5400);
  assertEquals(vals(["-reconcile-interval", "90"])["reconcile-interval"], 90);
});

Deno.test("parseDuration", () => {
  const ok: [string, number][] = [
    ["24h", 86400],
    ["1h30m", 5400],
    ["90s", 90],
    ["500ms", 0.5],
    ["1.5h", 5400],
    ["45", 45],
    ["2m3s", 123],
  ];
  eachCase(parseDuration, ok);
  eachNull(parseDuration, ["", "h", "5x", "-5s", "1h junk", "5s5", " 5s", "1d"]);
});

Deno.test("repeatable -iface keeps every value in order", () => {
  const v = vals(["-iface", "eth0", "--iface=10.0.0.1", "-iface-regex", "^en", "-iface", "wlan0"]);
  assertEquals(v["iface"], ["eth0", "10.0.0.1", "wlan0"]);
  assertEquals(v["iface-regex"], ["^en"]);
});

Deno.test("environment fallback FLANNELD_<NAME>; command line wins", () => {
  const env = {
    FLANNELD_ETCD_ENDPOINTS: "http://e:2379",
    FLANNELD_IFACE: "eth1",
    FLANNELD_IP_MASQ: "true",
    FLANNELD_IPTABLES_FORWARD_RULES: "0",
    FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "30",
    FLANNELD_PUBLIC_IP: "", // empty: ignored
  };
  const p = parseFlags([], env);
  assertEquals(p.values["etcd-endpoints"], "http://e:2379");
  assertEquals(p.values["iface"], ["eth1"]);
  assertEquals(p.values["ip-masq"], true);
  assertEquals(p.values["iptables-forward-rules"], false);
  assertEquals(p.values["subnet-lease-renew-margin"], 30);
  assertEquals(p.values["public-ip"], "");
  assert(p.explicit.has("ip-masq") && !p.explicit.has("public-ip"));

  const q = parseFlags(
    ["-etcd-endpoints=http://cli:2379", "-iface", "eth9", "-ip-masq=false"],
    env,
  );
  assertEquals(
    [q.values["etcd-endpoints"], q.values["iface"], q.values["ip-masq"]],
    ["http://cli:2379", ["eth9"], false],
  );
});

Deno.test("envName", () => {
  assertEquals(envName("etcd-endpoints"), "FLANNELD_ETCD_ENDPOINTS");
  assertEquals(envName("log_backtrace_at"), "FLANNELD_LOG_BACKTRACE_AT");
  assertEquals(envName("a.b-c"), "FLANNELD_A_B_C");
});

Deno.test("parsing stops at the first non-flag argument, '-' or after '--'", () => {
  const cases: [string[], string[], boolean][] = [
    [["-ip-masq", "extra", "-v=2"], ["extra", "-v=2"], true],
    [["-ip-masq", "-", "-v=2"], ["-", "-v=2"], true],
    [["-ip-masq", "--", "-v=2"], ["-v=2"], true],
    [["--", "-ip-masq"], ["-ip-masq"], false],
    [["positional"], ["positional"], false],
  ];
  for (const [argv, rest, masq] of cases) {
    const p = parseFlags(argv);
    assertEquals(p.positionals, rest, argv.join(" "));
    assertEquals(p.values["ip-masq"], masq, argv.join(" "));
    assertEquals(p.values["v"], 0, argv.join(" "));
  }
});

Deno.test("errors throw FlagError with a clear message", () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["-bogus"], {}, /not defined: -bogus/],
    [["--no-ip-masq"], {}, /not defined: -no-ip-masq/],
    [["-listen=:8888"], {}, /not defined: -listen/], // removed v0.7 flag
    [["-etcd-prefix"], {}, /needs an argument: -etcd-prefix/],
    [["-iface"], {}, /needs an argument: -iface/],
    [["-v=x"], {}, /invalid value "x".*-v/],
    [["-healthz-port", "80a"], {}, /invalid value "80a".*-healthz-port/],
    [["-healthz-port=70000"], {}, /between 0 and 65535/],
    [["-ip-masq=yes"], {}, /invalid boolean value "yes" for -ip-masq/],
    [["-subnet-lease-renew-margin=0"], {}, /renew-margin.*between 1 and 1439/],
    [["-subnet-lease-renew-margin=1440"], {}, /renew-margin.*between 1 and 1439/],
    [["-subnet-lease-ttl=forever"], {}, /invalid value "forever".*subnet-lease-ttl/],
    [["-subnet-lease-ttl=5s"], {}, /between 10 and/],
    [
      [],
      { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "0" },
      /FLANNELD_SUBNET_LEASE_RENEW_MARGIN.*between 1 and 1439/,
    ],
    [[], { FLANNELD_IP_MASQ: "on" }, /invalid boolean value "on" for -ip-masq/],
    [[], { FLANNELD_V: "high" }, /invalid value "high" for FLANNELD_V/],
  ];
  for (const [argv, env, re] of cases) {
    const what = `${argv.join(" ")} ${JSON.stringify(env)}`;
    const e = assertThrows(() => parseFlags(argv, env), FlagError);
    assertMatch(e.message, re, what);
  }
});

Deno.test("-h / -help / --help set help", () => {
  for (const argv of [["-h"], ["--h"], ["-help"], ["--help"], ["-ip-masq", "-h"]]) {
    assertEquals(parseFlags(argv).help, true, argv.join(" "));
  }
});

Deno.test("usage() lists every flag with its type and non-zero default", () => {
  const u = usage();
  for (const f of FLAGS) assertMatch(u, new RegExp(`^ {2}-${f.name}( |$)`, "m"), f.name);
  assertMatch(
    u,
    /^ {2}-etcd-prefix string\n\s+\tetcd prefix \(default "\/coreos\.com\/network"\)$/m,
  );
  assertMatch(u, /^ {2}-subnet-lease-renew-margin int\n.*\(default 60\)$/m);
  assertMatch(u, /^ {2}-iptables-forward-rules\n.*\(default true\)$/m);
  assertMatch(u, /^ {2}-iface value$/m);
  assertNotMatch(u, /^ {2}-ip-masq\n.*\(default/m, "false bools show no default");
  assertMatch(u, /FLANNELD_/);
});
