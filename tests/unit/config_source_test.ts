// The network config source: what the config poll calls a change (meaning, not bytes;
// invalid and deleted named), and waiting for a config at start.

import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { MemoryStore } from "../helpers/memory_store.ts";
import { captureLogs } from "../helpers/logs.ts";
import { sleep } from "../helpers/wait.ts";
import { configDrift, waitForConfig } from "../../lib/subnet/config_source.ts";
import { SubnetRegistry } from "../../lib/subnet/registry.ts";
import { type NetworkConfig, parseNetworkConfig } from "../../lib/values/config.ts";

Deno.test("configDrift: same meaning is no drift; changed, invalid and deleted are named", () => {
  const text = '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}';
  const inUse = parseNetworkConfig(text);
  assertEquals(configDrift(inUse, text), null);
  assertEquals(
    configDrift(inUse, '{ "network": "10.5.0.0/16", "backend": {"Type": "vxlan"} }'),
    null,
    "whitespace and case",
  );
  assertEquals(
    configDrift(inUse, '{"Network":"10.6.0.0/16","Backend":{"Type":"vxlan"}}'),
    "changed",
  );
  assertEquals(configDrift(inUse, '{"Network":"10.5.0.0/16","Backend":{"Type":"udp"}}'), "changed");
  assertEquals(configDrift(inUse, null), "deleted");
  assertEquals(
    configDrift(inUse, '{"Network":"10.5.0.0/40"}'),
    'changed and invalid: Network "10.5.0.0/40" is not an IPv4 CIDR',
  );
  const v6 = '{"EnableIPv6":true,"IPv6Network":"fd00::/48","Network":"10.5.0.0/16"}';
  assertEquals(configDrift(parseNetworkConfig(v6), v6), null, "bigint fields compare");
});

Deno.test("waitForConfig: missing, invalid, unreadable, then valid; one line per problem", async () => {
  const store = new MemoryStore();
  const registry = new SubnetRegistry(store, "/coreos.com/network");
  const abort = new AbortController();
  let cfg: NetworkConfig | null = null;
  const lines = await captureLogs(async () => {
    const got = waitForConfig(registry, 5, abort.signal).then((c) => cfg = c);
    await sleep(30); // ~6 retries of the same problem
    store.put("/coreos.com/network/config", '{"Network":"10.5.0.0/16","SubnetLen":31}');
    await sleep(30);
    store.down();
    await sleep(30);
    store.up();
    store.put("/coreos.com/network/config", '{"Network":"10.5.0.0/16"}');
    await got;
  });
  assertEquals(cfg!.subnetLen, 24);
  assertEquals(lines.length, 4, lines.join("\n"));
  assertStringIncludes(
    lines[0],
    "flannel config not found in etcd store at /coreos.com/network/config. " +
      "Did you create your config using etcdv3 API?",
  );
  assertStringIncludes(
    lines[1],
    "invalid network config at /coreos.com/network/config: SubnetLen must be less than /31 " +
      "(field SubnetLen); retrying every 0.005 s",
  );
  assertStringIncludes(lines[2], "cannot read network config: memory store is down");
  assertStringIncludes(lines[3], "network config is now valid");
});

Deno.test("waitForConfig: aborted while waiting resolves null at once", async () => {
  const registry = new SubnetRegistry(new MemoryStore(), "/coreos.com/network");
  const abort = new AbortController();
  await captureLogs(async () => {
    const got = waitForConfig(registry, 60_000, abort.signal);
    await sleep(5);
    abort.abort();
    assertEquals(await got, null);
  });
});
