/** Version string printed by `--version`; a release build may override it with FLANNELD_BUILD_VERSION at compile time. */
export const VERSION = "0.1.0";
