/**
 * Runs a cloud stand-in (tests/helpers/ec2_standin.ts or gce_standin.ts) as its own process,
 * e.g. inside a test namespace where the daemons can reach it, driven over stdin/stdout:
 *
 *   deno run -A standin_main.ts ec2|gce <listen address> <API port>
 *   → `ready`
 *   ← {"id":1,"call":"addVpc","args":["vpc-1","192.168.100.0/24"]}
 *   → {"id":1,"result":{…}}            (or {"id":1,"error":"…"})
 *
 * A call names any method or property of the stand-in; {@link RemoteStandIn} is the
 * test-side end.
 * @module
 */

import { Ec2StandIn } from "./ec2_standin.ts";
import { GceStandIn } from "./gce_standin.ts";
import { type LineProcess, nsDeno } from "./line_process.ts";

/** The test side: starts the stand-in in `ns` and calls it. */
export class RemoteStandIn {
  #next = 0;

  private constructor(readonly proc: LineProcess) {}

  /** Starts a stand-in of `kind` with its API on `hostname:port` inside namespace `ns`. */
  static async start(
    ns: string,
    kind: "ec2" | "gce",
    hostname: string,
    port: number,
  ): Promise<RemoteStandIn> {
    const me = new URL(import.meta.url).pathname;
    const proc = nsDeno(`${kind} stand-in`, ns, me, kind, hostname, String(port));
    await proc.waitLine("ready", 30_000);
    return new RemoteStandIn(proc);
  }

  /** Calls method (or reads property) `name` of the stand-in with JSON arguments. */
  async call<T = unknown>(name: string, ...args: unknown[]): Promise<T> {
    const id = ++this.#next;
    await this.proc.send(JSON.stringify({ id, call: name, args }));
    const line = await this.proc.waitLine(`{"id":${id},`);
    const r = JSON.parse(line);
    if ("error" in r) throw new Error(`stand-in ${name}: ${r.error}`);
    return r.result as T;
  }

  /** Stops the process (its servers with it). */
  async close(): Promise<void> {
    await this.proc.kill("SIGKILL");
  }
}

async function main(kind: string, hostname: string, port: number): Promise<void> {
  const standIn: Record<string, unknown> = kind === "ec2"
    ? new Ec2StandIn({ hostname, port }) as unknown as Record<string, unknown>
    : new GceStandIn({ hostname, port }) as unknown as Record<string, unknown>;
  const out = (o: unknown) => console.log(JSON.stringify(o));
  console.log("ready");
  let rest = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop()!;
    for (const line of lines.filter(Boolean)) {
      const { id, call, args } = JSON.parse(line);
      try {
        const v = standIn[call];
        const result = typeof v === "function" ? await v.apply(standIn, args) : v;
        out({ id, result: result ?? null });
      } catch (e) {
        out({ id, error: (e as Error).message });
      }
    }
  }
}

if (import.meta.main) await main(Deno.args[0], Deno.args[1], Number(Deno.args[2]));
