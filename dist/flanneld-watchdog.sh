#!/bin/sh
# flanneld-watchdog.sh: for hosts without systemd. Checks flanneld's /readyz; after N
# consecutive failed checks it alerts and restarts the daemon with a configurable command.
# Run it from cron (see flanneld-watchdog.cron) or with -l SECONDS as a loop. POSIX sh.
#
# Options (each also settable through the environment variable in brackets):
#   -u URL      readiness URL [FLANNELD_WATCHDOG_URL]
#               default http://127.0.0.1:${FLANNELD_HEALTHZ_PORT:-9180}/readyz
#   -n N        consecutive failures before a restart [FLANNELD_WATCHDOG_FAILURES] (3)
#   -r CMD      restart command, run by sh -c [FLANNELD_WATCHDOG_RESTART]
#               (/etc/init.d/flanneld restart)
#   -a CMD      alert command, run by sh -c with the message as $1 and on stdin
#               [FLANNELD_WATCHDOG_ALERT] (none; every message also goes to syslog
#               through logger, else to stderr)
#   -s FILE     failure counter between runs [FLANNELD_WATCHDOG_STATE]
#               (/run/flanneld-watchdog.failures)
#   -t SECONDS  HTTP timeout [FLANNELD_WATCHDOG_TIMEOUT] (5)
#   -l SECONDS  loop forever, checking every SECONDS (default: check once and exit)
#   -h          this help
# Exit status of a single check: 0 ready, 1 not ready, 2 usage error.
set -u

url=${FLANNELD_WATCHDOG_URL:-http://127.0.0.1:${FLANNELD_HEALTHZ_PORT:-9180}/readyz}
max=${FLANNELD_WATCHDOG_FAILURES:-3}
restart=${FLANNELD_WATCHDOG_RESTART:-/etc/init.d/flanneld restart}
alert=${FLANNELD_WATCHDOG_ALERT:-}
state=${FLANNELD_WATCHDOG_STATE:-/run/flanneld-watchdog.failures}
timeout=${FLANNELD_WATCHDOG_TIMEOUT:-5}
loop=""

usage() {
  sed -n '2,21s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

while getopts u:n:r:a:s:t:l:h opt; do
  case $opt in
    u) url=$OPTARG ;;
    n) max=$OPTARG ;;
    r) restart=$OPTARG ;;
    a) alert=$OPTARG ;;
    s) state=$OPTARG ;;
    t) timeout=$OPTARG ;;
    l) loop=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
case $max in '' | *[!0-9]*) echo "flanneld-watchdog: -n wants a number, got '$max'" >&2; exit 2 ;; esac
[ "$max" -ge 1 ] || max=1

# say LEVEL MESSAGE: syslog (daemon facility) when logger works, else stderr.
say() {
  logger -t flanneld-watchdog -p "daemon.$1" -- "$2" 2>/dev/null ||
    echo "flanneld-watchdog: $1: $2" >&2
}

# fetch: sets $code (HTTP status, 000 when unreachable) and $body.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    out=$(curl -sS -m "$timeout" -w '\n%{http_code}' "$url" 2>&1) || true
    code=$(printf '%s\n' "$out" | tail -n 1)
    body=$(printf '%s\n' "$out" | sed '$d')
  else
    # wget (also busybox) gives no status for errors: 200 or "not ready".
    if body=$(wget -q -T "$timeout" -O - "$url" 2>&1); then code=200; else code=000; fi
  fi
  case $code in '' | *[!0-9]*) code=000 ;; esac
}

check() {
  fetch
  failures=0
  [ -r "$state" ] && failures=$(cat "$state" 2>/dev/null)
  case $failures in '' | *[!0-9]*) failures=0 ;; esac
  if [ "$code" = 200 ]; then
    [ "$failures" -eq 0 ] || say notice "flanneld is ready again after $failures failed check(s)"
    echo 0 >"$state"
    return 0
  fi
  failures=$((failures + 1))
  # The body of a 503 lists the reasons, one per line: keep them on one log line.
  why=$(printf '%s' "$body" | tr '\n' ';' | sed 's/;*$//')
  say warning "flanneld not ready ($failures/$max): HTTP $code from $url: $why"
  if [ "$failures" -ge "$max" ]; then
    msg="flanneld not ready for $failures consecutive checks ($why); restarting with: $restart"
    say err "$msg"
    [ -z "$alert" ] || printf '%s\n' "$msg" | sh -c "$alert" flanneld-watchdog "$msg" ||
      say err "alert command failed: $alert"
    if sh -c "$restart"; then :; else say err "restart command failed (exit $?): $restart"; fi
    failures=0 # give the restarted daemon N more checks
  fi
  echo "$failures" >"$state"
  return 1
}

if [ -z "$loop" ]; then
  check
  exit $?
fi
case $loop in '' | *[!0-9]*) echo "flanneld-watchdog: -l wants seconds, got '$loop'" >&2; exit 2 ;; esac
while :; do
  check || :
  sleep "$loop"
done
