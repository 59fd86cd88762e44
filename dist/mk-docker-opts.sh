#!/bin/sh
# shellcheck disable=SC2034 # DOCKER_OPT_* are read through eval
# mk-docker-opts.sh: turns flanneld's subnet.env into Docker daemon options
# (--bip, --mtu, --ip-masq), as flannel's helper of the same name does. POSIX sh.
set -u

prog=${0##*/}
flannel_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
indiv=false
combined=false
key=DOCKER_OPTS
ipmasq=true

usage() {
  cat >&2 <<EOF
usage: $prog [-f FLANNEL_ENV] [-d DOCKER_ENV] [-i] [-c] [-k KEY] [-m]

Writes Docker daemon options derived from flanneld's subnet.env.
  -f FILE  flannel env file to read (default /run/flannel/subnet.env)
  -d FILE  Docker env file to write (default /run/docker_opts.env)
  -i       write one DOCKER_OPT_<NAME>="..." line per option
  -c       write all options as one KEY="..." line
  -k KEY   name of the combined variable (default DOCKER_OPTS)
  -m       leave out --ip-masq (for Docker versions without it)
  -h       this help
Without -i and -c both are written.
EOF
  exit 1
}

die() {
  echo "$prog: $*" >&2
  exit 1
}

while getopts ":f:d:icmk:h" opt; do
  case $opt in
    f) flannel_env=$OPTARG ;;
    d) docker_env=$OPTARG ;;
    i) indiv=true ;;
    c) combined=true ;;
    m) ipmasq=false ;;
    k) key=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
case $key in
  [A-Za-z_]*) case $key in *[!A-Za-z0-9_]*) die "invalid key name: $key" ;; esac ;;
  *) die "invalid key name: $key" ;;
esac
if [ "$indiv" = false ] && [ "$combined" = false ]; then
  indiv=true
  combined=true
fi

[ -r "$flannel_env" ] || die "cannot read flannel env file $flannel_env"
case $flannel_env in */*) ;; *) flannel_env=./$flannel_env ;; esac # `.` would search PATH
# shellcheck disable=SC1090
. "$flannel_env" || die "cannot source $flannel_env"

if [ -n "${FLANNEL_SUBNET:-}" ]; then DOCKER_OPT_BIP="--bip=$FLANNEL_SUBNET"; fi
if [ -n "${FLANNEL_MTU:-}" ]; then DOCKER_OPT_MTU="--mtu=$FLANNEL_MTU"; fi
if [ "$ipmasq" = true ] && [ -n "${FLANNEL_IPMASQ:-}" ]; then
  # Inverted: when flannel masquerades, Docker must not do it a second time.
  case $FLANNEL_IPMASQ in
    true) DOCKER_OPT_IPMASQ="--ip-masq=false" ;;
    false) DOCKER_OPT_IPMASQ="--ip-masq=true" ;;
    *) die "Invalid value of FLANNEL_IPMASQ: $FLANNEL_IPMASQ" ;;
  esac
fi

# The combined value starts from the variable's current value, if any.
eval "opts=\${$key:-}"
[ -z "$opts" ] || opts="$opts "

: >"$docker_env" || die "cannot write $docker_env"
for name in DOCKER_OPT_BIP DOCKER_OPT_IPMASQ DOCKER_OPT_MTU; do
  eval "value=\${$name:-}"
  [ -n "$value" ] || continue
  if [ "$indiv" = true ]; then printf '%s="%s"\n' "$name" "$value" >>"$docker_env"; fi
  opts="$opts $value"
done
if [ "$combined" = true ]; then printf '%s="%s"\n' "$key" "$opts" >>"$docker_env"; fi

# A route *via a gateway* to our own subnet (FLANNEL_SUBNET's network address) means
# another network already claims it: Docker's bridge would be unreachable.
if [ -n "${FLANNEL_SUBNET:-}" ] && command -v ip >/dev/null 2>&1; then
  route=$(echo "$FLANNEL_SUBNET" | awk -F'[./]' 'NF == 5 { printf "%s.%s.%s.%d/%s", $1, $2, $3, $4 - 1, $5 }')
  if [ -n "$route" ] && ip -4 route show 2>/dev/null | awk -v r="$route" '$1 == r && $2 == "via" { found = 1 } END { exit !found }'; then
    die "the routing table already has a route via a gateway for the subnet $route"
  fi
fi
exit 0
