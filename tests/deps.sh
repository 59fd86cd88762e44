#!/bin/sh
# Installs what the tests, the demo and the benchmarks need from Debian, only where missing.
# Deno itself comes from npm (`npx deno@…`), so nothing here downloads a runtime.
set -eu
need=""
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v etcdctl >/dev/null 2>&1 || need="$need etcd-client"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v bridge >/dev/null 2>&1 || need="$need iproute2"
command -v iperf3 >/dev/null 2>&1 || need="$need iperf3"
command -v tcpdump >/dev/null 2>&1 || need="$need tcpdump"
command -v iptables >/dev/null 2>&1 || need="$need iptables"
command -v nft >/dev/null 2>&1 || need="$need nftables"
command -v ping >/dev/null 2>&1 || need="$need iputils-ping"
command -v dash >/dev/null 2>&1 || need="$need dash"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v arp >/dev/null 2>&1 || need="$need net-tools"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v nsenter >/dev/null 2>&1 || need="$need util-linux"
# The Docker tests and `demo --docker`: dockerd 20.10 (with containerd, runc) and a static
# busybox to build the containers' image from (no registry is reached).
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
[ -x /bin/busybox ] && [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] ||
  need="$need busybox-static"
if [ -n "$need" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages:$need (run as root, or install them)" >&2
    exit 1
  fi
  echo "deps: installing$need" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >&2
fi
# Debian's etcd-server package starts a system etcd on :2379; the tests start their own on
# free ports, so a running system one is harmless, but stop it to keep the host quiet.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd >/dev/null 2>&1 || true
fi
# Installing docker.io starts a system dockerd where an init system allows it; ours run one per
# test host namespace with their own sockets and state, so a system one is not needed. Stop it
# only when we installed it just now (a Docker the machine already ran is left alone).
case $need in
  *docker.io*)
    if command -v systemctl >/dev/null 2>&1; then
      systemctl stop docker.service docker.socket >/dev/null 2>&1 || true
    fi
    ;;
esac
modprobe tun 2>/dev/null || true
modprobe vxlan 2>/dev/null || true
exit 0
