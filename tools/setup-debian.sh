#!/usr/bin/env bash
# Install what building, demonstrating and testing parallelly needs on a Debian machine
# (run as root). Installs only what is missing: R from Debian's packages without
# Recommends (the Recommends pull in ~450 R packages), OpenSSL headers for the SSH layer,
# OpenSSH's server for the test hosts, and future/future.apply for the future tests.
set -euo pipefail

packages=(r-base-dev r-cran-testthat libssl-dev pkg-config openssh-server
          r-cran-future r-cran-future.apply)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain comes from rustup (Debian's cargo is too old for our crates).
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "cargo was not found: install the Rust toolchain (rustup, rustc >= 1.95) first" >&2
  exit 1
fi
