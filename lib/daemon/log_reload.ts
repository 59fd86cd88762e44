/**
 * SIGHUP: re-read the log level from the environment file systemd starts flanneld with
 * (`EnvironmentFile=` in dist/flanneld.service), key `FLANNELD_V`, so `-v` can be raised on
 * a running daemon without a restart (which would be the only other way to get debug lines
 * about a problem that is happening now).
 * @module
 */

import { FlagError, parseFlags } from "../values/flags.ts";
import { getVerbosity, logger, setVerbosity } from "../core/log.ts";
import { parseDotenv } from "../values/subnet_env.ts";

const log = logger("main");

/** The EnvironmentFile of dist/flanneld.service; `$FLANNELD_ENV_FILE` overrides it. */
export const DEFAULT_ENV_FILE = "/etc/default/flanneld";

/**
 * Sets the level from `FLANNELD_V` in `path`; without that key, back to `fallback` (what a
 * restart would give: `-v` on the command line, else 0). An unreadable file or a bad value
 * gives one warning and leaves the level as it is. Returns the level now in force.
 */
export async function reloadVerbosity(path: string, fallback: number): Promise<number> {
  const was = getVerbosity();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    log.warn(`SIGHUP: cannot read ${path}; log level stays ${was}`, { error: e });
    return was;
  }
  const raw = parseDotenv(text).get("FLANNELD_V");
  let now = fallback;
  if (raw !== undefined && raw !== "") {
    try {
      now = parseFlags([], { FLANNELD_V: raw }).values["v"] as number; // same rules as at start
    } catch (e) {
      // Only a FlagError is expected; whatever it is, a signal handler must not throw.
      const why = e instanceof FlagError ? e.message : `cannot use FLANNELD_V=${raw}: ${e}`;
      log.warn(`SIGHUP: ${why} in ${path}; log level stays ${was}`);
      return was;
    }
  }
  setVerbosity(now);
  log.info(`log level now ${now} (was ${was})`, { file: path });
  return now;
}
