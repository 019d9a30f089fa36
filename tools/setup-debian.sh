#!/usr/bin/env bash
# Install what building, demonstrating, testing and checking parallelly needs on a Debian
# machine (run as root). Installs only what is missing: R from Debian's packages without
# Recommends (the Recommends pull in ~450 R packages), OpenSSL headers for the SSH layer,
# OpenSSH's server for the test hosts, future/future.apply for the future tests, and for
# R CMD check of the source tarball: knitr, rmarkdown and pandoc (vignettes), Rmpi (a
# suggested package), jq and cargo-vendor-filterer (vendoring the crates). The clients that
# the drop-in tests run on our clusters (furrr, foreach/doParallel/doRNG, progressr,
# parallelMap, future.batchtools; Debian's parallelly 1.34 comes with them and is the
# reference in side-by-side tests), login shells and iptables for realistic SSH test hosts,
# Slurm with munge and Grid Engine for the scheduler test clusters, and debootstrap (the
# Debian sid chroot of today's R stack, tools/sid-chroot.sh) with devscripts (checkbashisms,
# for R CMD check --as-cran).
set -euo pipefail

packages=(r-base-dev r-cran-testthat libssl-dev pkg-config openssh-server
          r-cran-future r-cran-future.apply r-cran-knitr r-cran-rmarkdown pandoc
          r-cran-rmpi jq r-cran-roxygen2
          r-cran-furrr r-cran-foreach r-cran-doparallel r-cran-dorng r-cran-progressr
          r-cran-parallelmap r-cran-future.batchtools r-cran-parallelly
          dash tcsh fish iptables iproute2 slurmctld slurmd slurm-client munge
          gridengine-master gridengine-exec gridengine-client
          debootstrap devscripts)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Grid Engine's packages ask for the master's host and cell; answered here, they install
  # without configuring a host (tools/gridengine-test-cluster.sh runs a cluster of its own,
  # on other ports than a system qmaster would use).
  debconf-set-selections <<DEBCONF
gridengine-common shared/gridenginemaster string $(hostname)
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridengineconfig boolean true
DEBCONF
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain comes from rustup (Debian's cargo is too old for our crates).
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "cargo was not found: install the Rust toolchain (rustup, rustc >= 1.95) first" >&2
  exit 1
fi
export PATH="$PATH:$HOME/.cargo/bin"
if ! cargo vendor-filterer --help >/dev/null 2>&1; then
  echo "Installing cargo-vendor-filterer (crates.io)"
  cargo install --quiet --locked cargo-vendor-filterer
fi
