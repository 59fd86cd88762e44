/**
 * Test helper process: brings up a 1-host cluster with Docker (alloc backend, one
 * container), prints `READY <prefix> <temp dir> <container pid>` and waits to be killed,
 * so a test can check what a crashed run leaves and that cleanup removes it.
 * @module
 */

import { DockerCluster } from "./docker.ts";

const d = await DockerCluster.create({ hosts: 1, backend: "alloc" });
const dh = d.docker[0];
const pid = (await dh.docker("inspect", "--format", "{{.State.Pid}}", dh.containers[0].name))
  .trim();
console.log(`READY ${d.cluster.prefix} ${d.cluster.dir} ${pid}`);
setInterval(() => {}, 60_000); // keeps the process alive until it is killed
