#!/usr/bin/env bash
# Today's R stack for the test suite: a Debian sid chroot (R 4.6, future 1.75, the reference
# parallelly 1.47 in /usr/lib/R/site-library) made by debootstrap, kept between runs on one
# machine and rebuilt when missing.
#
#   tools/sid-chroot.sh setup          make the chroot if missing; install what it lacks
#   tools/sid-chroot.sh run CMD ...    run CMD as root in the chroot, in this checkout
#   tools/sid-chroot.sh path           print the chroot's directory
#
# `run` works in a mount namespace of its own (nothing stays mounted on the host): /proc,
# /sys, /dev, a fresh tmpfs on /tmp, the host's Rust toolchain (rustup's ~/.cargo and
# ~/.rustup: sid's rustc is older than ours) and this checkout at the same path. The host's
# network is shared (the test hosts and the scheduler listen on loopback addresses). Only a
# short list of environment variables is passed in (PATH, HOME, CI, and those named
# PARALLELLY_*, R_PARALLELLY_*, SSH_TEST_HOSTS_*, SLURM_TEST_CLUSTER_*, _R_CHECK_*).
#
# Environment:
#   PARALLELLY_SID_CHROOT   the chroot's directory (default /var/cache/parallelly/sid)
#   PARALLELLY_SID_MIRROR   the Debian mirror (default http://deb.debian.org/debian)
#   PARALLELLY_SID_WORKDIR  the directory bound into the chroot and run in (default: this
#                           checkout); R_LIBS is passed in too, for a library inside it
#
# Needs root, debootstrap (tools/setup-debian.sh installs it) and unshare.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

CHROOT="${PARALLELLY_SID_CHROOT:-/var/cache/parallelly/sid}"
MIRROR="${PARALLELLY_SID_MIRROR:-http://deb.debian.org/debian}"

die() { echo "sid-chroot: $*" >&2; exit 1; }

# What the suite needs in the chroot: R and its packages from sid (the same list as
# tools/setup-debian.sh for the host, less Rmpi and roxygen2, which the suite does not use),
# the tools of the test hosts and of the scheduler cluster, and checkbashisms for
# R CMD check --as-cran.
packages=(r-base-core r-base-dev r-cran-testthat r-cran-withr libssl-dev pkg-config zlib1g-dev
          r-cran-future r-cran-future.apply r-cran-knitr r-cran-rmarkdown pandoc jq
          r-cran-furrr r-cran-foreach r-cran-doparallel r-cran-dorng r-cran-progressr
          r-cran-parallelmap r-cran-future.batchtools r-cran-parallelly
          openssh-server openssh-client dash tcsh fish iptables iproute2 procps psmisc
          slurmctld slurmd slurm-client munge gridengine-master gridengine-exec
          gridengine-client devscripts xz-utils ca-certificates hostname passwd util-linux)

# apt-get inside the chroot needs /proc and /dev; a private mount namespace drops them after.
with_mounts() {
  unshare --mount --propagation private -- bash -c '
    set -e
    c=$1; shift
    mount -t proc proc "$c/proc"
    mount --rbind /dev "$c/dev"
    mount --rbind /sys "$c/sys"
    "$@"' with_mounts "$CHROOT" "$@"
}

setup() {
  [ "$(id -u)" = 0 ] || die "needs root"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
  # debootstrap writes to CHROOT.new, renamed when whole: an existing CHROOT is complete.
  if [ ! -x "$CHROOT/usr/bin/Rscript" ]; then
    echo "sid-chroot: making $CHROOT with debootstrap (about 2 minutes)"
    rm -rf "$CHROOT.new"
    mkdir -p "$(dirname "$CHROOT")"
    if ! debootstrap --variant=minbase --include=r-base-core,r-base-dev,ca-certificates \
         sid "$CHROOT.new" "$MIRROR" >"$(dirname "$CHROOT")/debootstrap.log" 2>&1; then
      tail -n 20 "$(dirname "$CHROOT")/debootstrap.log" >&2
      die "debootstrap failed (log: $(dirname "$CHROOT")/debootstrap.log)"
    fi
    rm -rf "$CHROOT"
    mv "$CHROOT.new" "$CHROOT"
  fi
  # Daemons installed into the chroot must not start (they would run in the host's network).
  printf '#!/bin/sh\nexit 101\n' >"$CHROOT/usr/sbin/policy-rc.d"
  chmod 755 "$CHROOT/usr/sbin/policy-rc.d"
  # Name resolution as on the host (the scheduler binds to what the host name resolves to).
  cp /etc/hosts "$CHROOT/etc/hosts"
  cp /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
  hostname >"$CHROOT/etc/hostname"
  local missing=() p
  for p in "${packages[@]}"; do
    if ! chroot "$CHROOT" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "sid-chroot: installing ${missing[*]}"
    # Grid Engine's questions answered as in tools/setup-debian.sh (no host is configured).
    chroot "$CHROOT" debconf-set-selections <<DEBCONF
gridengine-common shared/gridenginemaster string $(hostname)
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridengineconfig boolean true
DEBCONF
    local log
    log="$(dirname "$CHROOT")/apt.log"
    if ! with_mounts bash -c '
        c=$1; shift
        # A sid Release file may be past its Valid-Until date (a mirror snapshot).
        run() { chroot "$c" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
                  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                  apt-get -o Acquire::Check-Valid-Until=false "$@"; }
        run update -qq && run install -y -qq --no-install-recommends "$@"' _ "$CHROOT" "${missing[@]}" \
        >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "apt-get install in the chroot failed (log: $log)"
    fi
  fi
  touch "$CHROOT/.parallelly-complete"
  chroot "$CHROOT" Rscript -e 'cat("sid-chroot:", R.version.string, "future", format(packageVersion("future")), "reference parallelly", format(packageVersion("parallelly", lib.loc = "/usr/lib/R/site-library")), "\n")'
}

run() {
  [ "$(id -u)" = 0 ] || die "needs root"
  [ -f "$CHROOT/.parallelly-complete" ] || die "no chroot at $CHROOT: run 'tools/sid-chroot.sh setup' first"
  [ "$#" -gt 0 ] || die "usage: tools/sid-chroot.sh run CMD ..."
  local workdir
  workdir=$(cd "${PARALLELLY_SID_WORKDIR:-$root}" && pwd -P)
  # The environment passed in: a fixed base and the suite's own variables.
  local envs=(HOME=/root LANG=C.UTF-8 "TERM=${TERM:-dumb}"
              PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  local name
  while IFS= read -r name; do
    case "$name" in
      CI|R_LIBS|PARALLELLY_*|R_PARALLELLY_*|SSH_TEST_HOSTS_*|SLURM_TEST_CLUSTER_*|_R_CHECK_*)
        envs+=("$name=${!name}") ;;
    esac
  done < <(compgen -e)
  unshare --mount --propagation private -- bash -c '
    set -e
    c=$1; repo=$2; shift 2
    # The chroot a mount point of its own: unshare --mount inside it (the test hosts) must be
    # able to make its root private.
    mount --bind "$c" "$c"
    mount -t proc proc "$c/proc"
    mount --rbind /dev "$c/dev"
    mount --rbind /sys "$c/sys"
    mount -t tmpfs -o mode=1777 tmpfs "$c/tmp"
    for d in /root/.cargo /root/.rustup; do
      if [ -d "$d" ]; then mkdir -p "$c$d"; mount --bind "$d" "$c$d"; fi
    done
    mkdir -p "$c$repo"
    mount --bind "$repo" "$c$repo"
    exec chroot "$c" /usr/bin/env -i "$@"' run "$CHROOT" "$workdir" "${envs[@]}" \
    bash -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}

case "${1:-}" in
  setup) setup ;;
  run) shift; run "$@" ;;
  path) echo "$CHROOT" ;;
  *) die "usage: tools/sid-chroot.sh setup | run CMD ... | path" ;;
esac
