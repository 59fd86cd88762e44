/** What the config poll calls a change: meaning, not bytes; invalid and deleted named. */

import { assertEquals } from "../helpers/assert.ts";
import { configDrift } from "../../lib/subnet/config_source.ts";
import { parseNetworkConfig } from "../../lib/values/config.ts";

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
