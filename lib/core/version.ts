/**
 * Version string printed by `--version`. `deno task compile` (dist/compile.ts) stamps a
 * release's version (`--version`, FLANNELD_BUILD_VERSION or an exact git tag) into its
 * staged copy of this line.
 */
export const VERSION = "0.1.0";
