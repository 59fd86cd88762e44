#!/bin/sh
# Installs, upgrades or removes flanneld (the TypeScript/Deno reimplementation).
#
#   curl -fsSL https://github.com/flannel-ts/flanneld/releases/latest/download/install.sh | sh
#   sh install.sh [--version V] [--prefix P] [--root DIR] [--no-systemd] [--dry-run]
#   sh install.sh --from-source [DIR]      build from a checkout (default: this script's)
#   sh install.sh --uninstall [--purge]
#
# Release assets come from $FLANNELD_RELEASE_URL (GitHub's layout: .../latest/download/F
# and .../download/vV/F; file:// works too). "flannel-ts/flanneld" is a placeholder owner:
# set FLANNELD_RELEASE_URL for the repository that publishes your releases.
# FLANNELD_OS / FLANNELD_ARCH override `uname -s` / `uname -m`; DENO the Deno used by
# --from-source. POSIX sh; Linux on x86_64 or aarch64 only.
set -eu

FLANNELD_RELEASE_URL=${FLANNELD_RELEASE_URL:-https://github.com/flannel-ts/flanneld/releases}

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --version V          release to install (default: the latest), e.g. 0.1.0 or v0.1.0
  --prefix P           install the binary to P/bin (default /usr/local)
  --root DIR           install under the staging root DIR (also: DESTDIR=DIR)
  --no-systemd         skip the systemd unit and /etc/default/flanneld (also when
                       uninstalling)
  --from-source [DIR]  build from a checkout with `deno task compile`; without a denort
                       runtime, install a launcher running the source with `deno run`
  --uninstall          remove flanneld (keeps /etc/default/flanneld unless --purge)
  --purge              with --uninstall: remove /etc/default/flanneld too
  --dry-run            download and verify, change nothing
EOF
}

say() { printf 'install.sh: %s\n' "$*"; }
die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}

version="" prefix=/usr/local root=${DESTDIR:-} systemd=true
from_source=false source_dir="" uninstall=false purge=false dry_run=false
while [ $# -gt 0 ]; do
  case $1 in
    --version | --prefix | --root)
      [ $# -ge 2 ] || die "$1 needs a value"
      case $1 in --version) version=$2 ;; --prefix) prefix=$2 ;; --root) root=$2 ;; esac
      shift ;;
    --version=*) version=${1#*=} ;;
    --prefix=*) prefix=${1#*=} ;;
    --root=*) root=${1#*=} ;;
    --no-systemd) systemd=false ;;
    --from-source)
      from_source=true
      if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then source_dir=$2; shift; fi ;;
    --from-source=*) from_source=true source_dir=${1#*=} ;;
    --uninstall) uninstall=true ;;
    --purge) purge=true ;;
    --dry-run) dry_run=true ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case $prefix in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
case $root in "" | /*) ;; *) root=$PWD/$root ;; esac
root=${root%/}

# Paths as the running system sees them, then where they are written (under the root).
libdir_final=$prefix/lib/flanneld
bindir=$root$prefix/bin
libdir=$root$libdir_final
unit=$root/etc/systemd/system/flanneld.service
envfile=$root/etc/default/flanneld
# systemctl is only used for the real system, never for a staging root.
live_systemd() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

if [ "$uninstall" = true ]; then
  set -- "$bindir/flanneld" "$bindir/mk-docker-opts.sh" "$libdir"
  [ "$systemd" = false ] || set -- "$@" "$unit"
  [ "$systemd" = false ] || [ "$purge" = false ] || set -- "$@" "$envfile"
  if [ "$systemd" = true ] && [ "$dry_run" = false ] && [ -f "$unit" ] && live_systemd; then
    systemctl disable --now flanneld.service >/dev/null 2>&1 || true
  fi
  removed=0
  for f in "$@"; do
    [ -e "$f" ] || continue
    if [ "$dry_run" = true ]; then say "would remove $f"; else rm -rf "$f" && say "removed $f"; fi
    removed=$((removed + 1))
  done
  [ "$removed" -gt 0 ] || say "nothing to remove under ${root:-/}"
  if [ "$systemd" = true ]; then
    [ "$purge" = true ] || [ ! -e "$envfile" ] || say "kept $envfile (--purge removes it)"
    if [ "$dry_run" = false ] && live_systemd; then systemctl daemon-reload || true; fi
  fi
  exit 0
fi

os=${FLANNELD_OS:-$(uname -s)}
arch=${FLANNELD_ARCH:-$(uname -m)}
[ "$os" = Linux ] || die "unsupported OS '$os': flanneld runs on Linux only"
case $arch in
  x86_64 | amd64) target=x86_64-unknown-linux-gnu ;;
  aarch64 | arm64) target=aarch64-unknown-linux-gnu ;;
  *) die "unsupported architecture '$arch': flanneld is built for x86_64 (amd64) and" \
    "aarch64 (arm64) only" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/flanneld-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# install_file SRC DEST MODE: copy to a temp file in DEST's directory, then rename over
# DEST, so DEST is always either the old or the complete new file.
install_file() {
  mkdir -p "${2%/*}"
  t=$(mktemp "${2%/*}/.${2##*/}.XXXXXX") || die "cannot write to ${2%/*}"
  if cp "$1" "$t" && chmod "$3" "$t" && mv -f "$t" "$2"; then
    say "installed $2"
  else
    rm -f "$t"
    die "cannot install $2"
  fi
}

fetch() {
  case $1 in
    file://*) cp "${1#file://}" "$2" 2>/dev/null ;;
    *)
      if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1"
      elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
      else
        die "need curl or wget to download $1"
      fi ;;
  esac || die "download failed: $1 (nothing was installed)"
}

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | awk '{ print $1 }'; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | awk '{ print $1 }'; }
else
  sha256() { :; }
fi

# download NAME: fetches one release asset into $tmp and checks it against SHA256SUMS.
download() {
  fetch "$base/$1" "$tmp/$1"
  want=$(awk -v f="$1" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/SHA256SUMS")
  [ -n "$want" ] || die "SHA256SUMS has no entry for $1 (nothing was installed)"
  got=$(sha256 "$tmp/$1")
  [ -n "$got" ] || die "need sha256sum or shasum to verify downloads"
  [ "$got" = "$want" ] ||
    die "checksum mismatch for $1: expected $want, got $got (nothing was installed)"
}

# The launcher that stands in for a compiled binary: `deno run` on the installed source.
write_launcher() {
  cat >"$1" <<EOF
#!/bin/sh
# flanneld launcher written by install.sh --from-source: no denort runtime was available
# for \`deno compile\`, so this runs the source in $libdir_final with \`deno run\` and the
# runtime flags and permissions the compiled binary has. Reinstall from a release to replace it.
deno='$deno'
command -v "\$deno" >/dev/null 2>&1 || deno=deno
export DENO_DIR='$libdir_final/deno_dir' DENO_NO_UPDATE_CHECK=1
exec "\$deno" run --cached-only --config '$libdir_final/deno.json' $perms '$libdir_final/main.ts' "\$@"
EOF
}

upgrade=false
[ ! -e "$bindir/flanneld" ] || upgrade=true
launcher=false
if [ "$from_source" = true ]; then
  if [ -z "$source_dir" ]; then
    source_dir=${0%/*}
    [ -f "$source_dir/main.ts" ] || source_dir=.
  fi
  if [ ! -f "$source_dir/main.ts" ] || [ ! -f "$source_dir/dist/compile.ts" ]; then
    die "$source_dir is not a flanneld checkout (no main.ts or dist/compile.ts)"
  fi
  src=$(cd "$source_dir" && pwd)
  deno=${DENO:-$(command -v deno || true)}
  [ -n "$deno" ] || die "--from-source needs Deno 2 (on PATH, or DENO=/path/to/deno)"
  for f in mk-docker-opts.sh flanneld.service flanneld.env.example; do
    [ "$systemd" = true ] || [ "$f" = mk-docker-opts.sh ] || continue
    [ -f "$src/dist/$f" ] || die "$src/dist/$f is missing"
    cp "$src/dist/$f" "$tmp/$f"
  done
  if [ "$dry_run" = true ]; then
    say "would build $target from $src with deno task compile and install it to $bindir/flanneld"
    exit 0
  fi
  set +e
  (cd "$src" && "$deno" task compile --target "$target")
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    cp "$src/dist/flanneld-$target" "$tmp/flanneld-$target"
  elif [ "$rc" -eq 3 ]; then # dist/compile.ts: no denort runtime for the target
    launcher=true
    perms=$(cd "$src" && "$deno" run dist/compile.ts --print-permissions) ||
      die "cannot read the daemon's permissions"
    lazy=$(cd "$src" && "$deno" run dist/compile.ts --print-lazy-modules) ||
      die "cannot read the daemon's lazily imported modules"
    say "no denort runtime: installing a launcher that runs the source with deno run instead"
  else
    die "building flanneld from $src failed (exit $rc)"
  fi
else
  base=$FLANNELD_RELEASE_URL/latest/download
  [ -z "$version" ] || base=$FLANNELD_RELEASE_URL/download/v${version#v}
  fetch "$base/SHA256SUMS" "$tmp/SHA256SUMS"
  download "flanneld-$target"
  download mk-docker-opts.sh
  if [ "$systemd" = true ]; then
    download flanneld.service
    download flanneld.env.example
  fi
  say "downloaded and verified flanneld-$target from $base"
  if [ "$dry_run" = true ]; then
    extra=""
    [ "$systemd" = false ] || extra=", $unit and $envfile (if missing)"
    say "would install $bindir/flanneld, $bindir/mk-docker-opts.sh$extra"
    exit 0
  fi
fi

if [ "$launcher" = true ]; then
  mkdir -p "${libdir%/*}"
  new=$(mktemp -d "${libdir%/*}/.flanneld.XXXXXX")
  (cd "$src" && cp -R main.ts deno.json deno.lock lib ffi "$new/") ||
    die "cannot copy the source to $new"
  # The daemon must start without network: cache its npm dependencies next to it, also
  # those of the modules it imports only when needed (the aws-vpc backend's AWS SDK).
  set -- "$new/main.ts"
  for m in $lazy; do set -- "$@" "$new/$m"; done
  if ! DENO_DIR=$new/deno_dir DENO_NO_UPDATE_CHECK=1 \
    "$deno" install --quiet --config "$new/deno.json" --entrypoint "$@" >&2; then
    rm -rf "$new"
    die "cannot cache the daemon's dependencies"
  fi
  rm -rf "$libdir.old"
  [ ! -e "$libdir" ] || mv "$libdir" "$libdir.old"
  mv "$new" "$libdir" && chmod 755 "$libdir"
  rm -rf "$libdir.old"
  say "installed the source to $libdir"
  write_launcher "$tmp/flanneld-$target"
  # First run after the move: Deno sets its npm cache up again and says so; keep that quiet.
  [ -n "$root" ] || sh "$tmp/flanneld-$target" --version >/dev/null 2>&1 || true
fi
install_file "$tmp/flanneld-$target" "$bindir/flanneld" 755
if [ "$launcher" = false ] && [ -e "$libdir" ]; then rm -rf "$libdir"; fi # an earlier launcher's source
install_file "$tmp/mk-docker-opts.sh" "$bindir/mk-docker-opts.sh" 755

if [ "$systemd" = true ]; then
  sed "s#/usr/local/bin/#$prefix/bin/#g" "$tmp/flanneld.service" >"$tmp/unit"
  install_file "$tmp/unit" "$unit" 644
  if [ -e "$envfile" ]; then
    say "kept the existing $envfile"
  else
    install_file "$tmp/flanneld.env.example" "$envfile" 644
  fi
  if live_systemd; then systemctl daemon-reload || true; fi
fi

if [ -z "$root" ]; then
  v=$("$bindir/flanneld" --version 2>&1) || die "$bindir/flanneld --version failed: $v"
  say "flanneld $(printf '%s\n' "$v" | tail -n 1) is installed at $bindir/flanneld"
fi
if [ "$systemd" = true ]; then
  if [ "$upgrade" = true ]; then
    say "upgraded: restart the service with 'systemctl restart flanneld'"
  else
    say "next: set the flags in $envfile, then 'systemctl enable --now flanneld'"
  fi
fi
