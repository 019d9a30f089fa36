#!/usr/bin/env bash
# Set up (if needed), install, and run the whole test suite on two R versions:
#   1. the Rust unit tests;
#   2. on the host's R (Debian 12: R 4.2, future 1.31, the reference parallelly 1.34):
#      R CMD check of the offline source tarball, then the testthat suite;
#   3. in a Debian sid chroot (R 4.6, future 1.75, the reference 1.47; tools/sid-chroot.sh
#      makes it once and keeps it): R CMD check --as-cran of the tarball, then the suite.
# Each R version installs its own build (the chroot's cargo target stays in the chroot).
# Ends with "N passed, N failed, N skipped" (the totals of both R versions) and exits
# non-zero on any failure. PARALLELLY_TEST_R=host or PARALLELLY_TEST_R=sid runs one R only.
set -euo pipefail
cd "$(dirname "$0")/.."
which_r=${PARALLELLY_TEST_R:-both}
bash tools/setup-debian.sh
if [ "$which_r" != host ]; then bash tools/sid-chroot.sh setup; fi
export PATH="$PATH:$HOME/.cargo/bin"

echo "== Rust unit tests"
rust_log=$(mktemp)
if ! (cd src/rust && cargo test --release --jobs 2 >"$rust_log" 2>&1); then
  cat "$rust_log"
  echo "Rust unit tests failed"
  echo "0 passed, 1 failed"
  exit 1
fi
grep -E "^test result" "$rust_log" | head -n 1 | sed 's/^/Rust: /'
rm -f "$rust_log"

counts_dir=$(mktemp -d)
trap 'rm -rf "$counts_dir"' EXIT
status=0
if [ "$which_r" != sid ]; then
  bash tools/run-r-suite.sh "$counts_dir/host" || status=1
fi
if [ "$which_r" != host ]; then
  # The chroot sees this checkout at the same path; its counts come back through it.
  sid_counts=".sid-counts.$$"
  PARALLELLY_CARGO_TARGET_DIR=/var/cache/parallelly-target \
    bash tools/sid-chroot.sh run bash tools/run-r-suite.sh --as-cran "$sid_counts" || status=1
  mv -f "$sid_counts" "$counts_dir/sid" 2>/dev/null || echo "0 1 0" >"$counts_dir/sid"
fi

read -r passed failed skipped < <(cat "$counts_dir"/* | awk '
  { p += $1; f += $2; s += $3 } END { print p + 0, f + 0, s + 0 }')
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ]
