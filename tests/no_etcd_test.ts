/**
 * What a newcomer reads who starts flanneld before etcd: one plain line naming the endpoint,
 * what failed and what the daemon does next, then nothing more while the problem lasts (no
 * gRPC internals, no stack trace, no flood); and it gets through as soon as etcd is there.
 * Runs main.ts as a user would; it never gets past waiting for the config, so it touches no
 * interface.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { EtcdServer, freePort } from "./helpers/etcd.ts";
import { LogProcess } from "./helpers/log_process.ts";
import { sleep, until } from "./helpers/wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

Deno.test({
  name: "no etcd: one plain line, retried quietly; through once etcd and a config appear",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const port = freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const dir = await Deno.makeTempDir({ prefix: "flannel-noetcd-" });
  const p = new LogProcess(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    `--etcd-endpoints=${endpoint}`,
    `--subnet-file=${dir}/subnet.env`,
  ]);
  const saw = (text: string) => () => p.lines.some((l) => l.includes(text));
  try {
    await until("the etcd line", saw("cannot read network config"), 20_000);
    await sleep(4000); // four more retries of the same failure
    const errors = p.lines.filter((l) => l.startsWith("E"));
    assertEquals(errors.length, 1, p.lines.join("\n"));
    assertEquals(
      errors[0].slice(errors[0].indexOf("] ") + 2),
      `cannot read network config: etcd at ${endpoint} is not reachable (connection refused); ` +
        "retrying every 1 s",
    );
    const noise = /UNAVAILABLE|circuit breaker|Resolution note|^\s+at /;
    assert(!p.lines.some((l) => noise.test(l)), p.lines.join("\n"));

    // etcd comes up on that port (with no config yet): the daemon says so, without a restart.
    await using etcd = await EtcdServer.start({ clientPort: port });
    await until("the config line", saw("flannel config not found"), 20_000);
    assert(await p.running(), "still running, waiting for the config");
    assertEquals(etcd.endpoint, endpoint);
  } finally {
    assertEquals((await p.stop()).code, 0, "a clean exit on SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
});
