/**
 * dist/flanneld-watchdog.sh under dash against a fake /readyz on loopback: counts
 * consecutive failures across runs, alerts and restarts after N, resets on success.
 */

import { assertEquals, assertStringIncludes } from "./helpers/assert.ts";

const SCRIPT = new URL("../dist/flanneld-watchdog.sh", import.meta.url).pathname;

Deno.test("flanneld-watchdog.sh restarts after N consecutive failures and alerts with the reasons", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flannel-wd-" });
  let ready = true;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      ready
        ? new Response("flanneld is ready")
        : new Response("flanneld is not ready yet\netcd not answering for 12 s\n", { status: 503 }),
  );
  const url = `http://127.0.0.1:${server.addr.port}/readyz`;
  const run = async (u = url) => {
    const r = await new Deno.Command("dash", {
      args: [
        SCRIPT,
        "-u",
        u,
        "-n",
        "2",
        "-s",
        `${dir}/state`,
        "-t",
        "2",
        "-r",
        `echo restarted >> ${dir}/restarts`,
        "-a",
        `cat >> ${dir}/alerts; echo "arg:$1" >> ${dir}/alerts`,
      ],
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return r.code;
  };
  const read = (f: string) => Deno.readTextFile(`${dir}/${f}`).catch(() => "");
  try {
    assertEquals(await run(), 0);
    assertEquals(await read("state"), "0\n");
    ready = false;
    assertEquals(await run(), 1);
    assertEquals(await read("state"), "1\n");
    assertEquals(await read("restarts"), "", "no restart before N failures");
    assertEquals(await run(), 1);
    assertEquals(await read("restarts"), "restarted\n");
    assertEquals(await read("state"), "0\n", "counter reset after a restart");
    const alerts = await read("alerts");
    assertStringIncludes(
      alerts,
      "not ready for 2 consecutive checks (flanneld is not ready yet;etcd not answering for 12 s)",
    );
    assertStringIncludes(alerts, "arg:flanneld not ready for 2");
    // An unreachable daemon counts as a failure too; success resets the counter.
    assertEquals(await run("http://127.0.0.1:1/readyz"), 1);
    assertEquals(await read("state"), "1\n");
    ready = true;
    assertEquals(await run(), 0);
    assertEquals(await read("state"), "0\n");
    assertEquals(await read("restarts"), "restarted\n");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
