/**
 * Upstream's own flanneld (v0.20.2, built from its tagged source) as a peer in mixed
 * clusters. It is a test tool kept outside the repository, at `../shared/upstream/` seen
 * from the repository root (CI has it at the same place); `FLANNEL_UPSTREAM_BIN` points
 * elsewhere, e.g. from a git worktree that does not sit beside `shared/`. Tests that need
 * it skip with {@link UPSTREAM_SKIP} when it is absent.
 * @module
 */

/** Where upstream's binary is looked for. */
export const UPSTREAM_FLANNELD: string = Deno.env.get("FLANNEL_UPSTREAM_BIN") ??
  new URL("../../../shared/upstream/flanneld-v0.20.2", import.meta.url).pathname;

function executable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Whether upstream's binary is there. */
export const UPSTREAM_PRESENT: boolean = executable(UPSTREAM_FLANNELD);

/** The one line a test prints when it skips for want of upstream's binary. */
export const UPSTREAM_SKIP =
  `skipping mixed-cluster tests: upstream flanneld not found at ${UPSTREAM_FLANNELD} ` +
  "(../shared/upstream/flanneld-v0.20.2 from the repository root, or $FLANNEL_UPSTREAM_BIN)";

/** The daemon command line (without flags) of upstream's flanneld. */
export const UPSTREAM_COMMAND: readonly string[] = [UPSTREAM_FLANNELD];
