#!/usr/bin/env bash
# Set up (if needed), install, and run the whole test suite: the Rust unit tests, R CMD check
# of the offline source tarball, then the testthat suite against the installed package.
# Ends with "N passed, N failed" (testthat's totals) and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
bash tools/install-package.sh
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
echo "== R CMD check of the source tarball"
if ! bash tools/check-package.sh >/tmp/parallelly-check.log 2>&1; then
  tail -n 60 /tmp/parallelly-check.log
  echo "R CMD check failed"
  echo "0 passed, 1 failed"
  exit 1
fi
grep -E "^Status:|tarball:|installed:" /tmp/parallelly-check.log || true
echo "== R tests"
Rscript tools/run-testthat.R
