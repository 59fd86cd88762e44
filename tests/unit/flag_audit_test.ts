// Flags that would do nothing here are refused with one clear line; -vmodule has an effect.
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { captureLogs } from "../helpers/logs.ts";
import { FlagError, FLAGS, parseFlags } from "../../lib/values/flags.ts";
import { logger, parseVmodule, setModuleVerbosity, setVerbosity } from "../../lib/core/log.ts";

Deno.test("Kubernetes-mode flags and log_backtrace_at are refused when given, fine at default", () => {
  const refused: [string[], Record<string, string>, string][] = [
    [["-kube-subnet-mgr"], {}, "flag -kube-subnet-mgr: Kubernetes mode is not supported"],
    [["--kube-api-url=https://k8s:6443"], {}, "flag -kube-api-url: Kubernetes mode"],
    [["-kubeconfig-file", "/root/.kube/config"], {}, "flag -kubeconfig-file"],
    [["-kube-annotation-prefix=x"], {}, "flag -kube-annotation-prefix"],
    [["-net-config-path=/etc/x.json"], {}, "flag -net-config-path"],
    [["-set-node-network-unavailable=false"], {}, "flag -set-node-network-unavailable"],
    [[], { FLANNELD_KUBE_SUBNET_MGR: "true" }, "FLANNELD_KUBE_SUBNET_MGR: Kubernetes mode"],
    [["-log_backtrace_at=main.go:10"], {}, "has no equivalent in this flanneld"],
  ];
  for (const [argv, env, want] of refused) {
    assertThrows(() => parseFlags(argv, env), FlagError, want);
  }
  // Given at their defaults (as some unit files do), they are harmless.
  const ok = parseFlags([
    "-kube-subnet-mgr=false",
    "-set-node-network-unavailable=true",
    "-kube-annotation-prefix=flannel.alpha.coreos.com",
  ]);
  assertEquals(ok.values["kube-subnet-mgr"], false);
  // Every flag without an effect here is marked so (the audit in one place).
  const marked = FLAGS.filter((f) => "unsupported" in f).map((f) => f.name).sort();
  assertEquals(marked, [
    "kube-annotation-prefix",
    "kube-api-url",
    "kube-subnet-mgr",
    "kubeconfig-file",
    "log_backtrace_at",
    "net-config-path",
    "set-node-network-unavailable",
  ]);
});

Deno.test("-vmodule: per-component debug levels over -v; malformed specs are refused", async () => {
  assertThrows(() => parseFlags(["-vmodule=watch"]), FlagError, "want pattern=N");
  assertThrows(() => parseFlags(["-vmodule=watch=2,"]), FlagError, "want pattern=N");
  assertEquals(parseFlags(["-vmodule=watch=2,sub*=1"]).values.vmodule, "watch=2,sub*=1");
  const lines = await captureLogs(() => {
    setVerbosity(0);
    setModuleVerbosity(parseVmodule("watch=2,sub*=1,*etcd?=3"));
    try {
      logger("watch").debug(2, "watch at 2");
      logger("watch").debug(3, "watch at 3");
      logger("subnet").debug(1, "subnet at 1");
      logger("subnet").debug(2, "subnet at 2");
      logger("udp").debug(1, "udp at 1");
      logger("xetcdz").debug(3, "glob ? and *");
    } finally {
      setModuleVerbosity([]);
    }
  });
  const msgs = lines.map((l) => l.slice(l.indexOf("] ") + 2));
  assertEquals(msgs, ["watch at 2", "subnet at 1", "glob ? and *"]);
  assert(parseVmodule("").length === 0);
});
