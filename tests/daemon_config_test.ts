/**
 * The daemon waits for its network config: missing → one clear line with upstream's v3
 * hint, invalid → a line naming the field and rule, then it goes on as soon as a valid
 * config appears. Nothing crashes, nothing floods.
 */

import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { EtcdServer } from "./helpers/etcd.ts";
import { registryFor } from "./helpers/control.ts";
import { sleep, until } from "./helpers/wait.ts";
import { waitForConfig } from "../lib/subnet/config_source.ts";
import { captureLogs } from "./helpers/logs.ts";

Deno.test("config: missing, then invalid, then valid", async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  try {
    await captureLogs((lines) => check(lines));
  } finally {
    store.close();
  }
  async function check(lines: string[]): Promise<void> {
    const abort = new AbortController();
    const got = waitForConfig(registry, 100, abort.signal);
    await until(
      "missing-config line",
      () => lines.some((l) => l.includes("flannel config not found")),
    );
    assertStringIncludes(lines[0], "Did you create your config using etcdv3 API?");
    assertStringIncludes(lines[0], "/coreos.com/network/config");
    await sleep(500); // ~5 retries
    assertEquals(lines.length, 1, "the same problem is not logged on every retry");

    await etcd.ctl(
      "put",
      "/coreos.com/network/config",
      `{"Network":"10.5.0.0/16","SubnetMin":"10.5.1.128"}`,
    );
    await until("invalid-config line", () => lines.length === 2);
    assertStringIncludes(lines[1], "SubnetMin is not on a SubnetLen boundary: 10.5.1.128");
    assertStringIncludes(lines[1], "(field SubnetMin)");

    await etcd.ctl(
      "put",
      "/coreos.com/network/config",
      `{"network":"10.6.0.0/16","backend":{"type":"ALLOC"}}`,
    );
    const cfg = await got;
    assert(cfg);
    assertEquals(cfg.backendType, "alloc");
    assertEquals(cfg.subnetLen, 24);
    assertStringIncludes(lines[2], "network config is now valid");
  }
});

Deno.test("config: etcd unreachable is reported and retried until aborted", async () => {
  await using etcd = await EtcdServer.start();
  const { store, registry } = registryFor(etcd);
  await etcd.stop();
  try {
    await captureLogs((lines) => check(lines));
  } finally {
    store.close();
  }
  async function check(lines: string[]): Promise<void> {
    const abort = new AbortController();
    const got = waitForConfig(registry, 100, abort.signal);
    await until("etcd error line", () => lines.length >= 1, 15000);
    // One plain line: the endpoint, what failed, what the daemon does next.
    assertStringIncludes(
      lines[0],
      `cannot read network config: etcd at ${etcd.endpoint} is not reachable ` +
        "(connection refused); retrying every 0.1 s",
    );
    assert(!/UNAVAILABLE|circuit breaker|Resolution note/.test(lines.join("\n")), lines[0]);
    abort.abort();
    assertEquals(await got, null);
  }
});
