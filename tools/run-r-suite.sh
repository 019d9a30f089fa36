#!/usr/bin/env bash
# The R part of the suite on the R found on PATH (the host's, or the sid chroot's through
# tools/sid-chroot.sh run): install the package from this checkout, R CMD check the source
# tarball without its tests (the suite runs once, right after, against the installed package),
# then the testthat suite. Prints "R <version>: N passed, N failed, N skipped" last and writes
# the counts "passed failed skipped" to COUNTS_FILE when given.
#
# Usage: tools/run-r-suite.sh [--as-cran] [COUNTS_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
check_args=()
if [ "${1:-}" = "--as-cran" ]; then check_args+=(--as-cran); shift; fi
counts_file=${1:-}
export PATH="$PATH:$HOME/.cargo/bin"
rversion=$(Rscript -e 'cat(format(getRversion()))')

fail() {
  echo "$1"
  [ -z "$counts_file" ] || echo "0 1 0" >"$counts_file"
  echo "R $rversion: 0 passed, 1 failed"
  exit 1
}

echo "== R $rversion: install"
bash tools/install-package.sh || fail "installing the package failed"

echo "== R $rversion: R CMD check ${check_args[*]} of the source tarball (tests run next)"
log=$(mktemp /tmp/parallelly-check-log.XXXXXX)
if ! bash tools/check-package.sh --no-tests "${check_args[@]}" >"$log" 2>&1; then
  tail -n 60 "$log"
  fail "R CMD check failed (log: $log)"
fi
grep -E "^Status:|tarball:|installed:|check took" "$log" || true

echo "== R $rversion: testthat suite"
status=0
out=$(mktemp /tmp/parallelly-testthat.XXXXXX)
Rscript tools/run-testthat.R 2>&1 | tee "$out" || status=$?
counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1 | \
           sed -E 's/^([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')
rm -f "$out"
if [ -z "$counts" ]; then
  fail "the testthat run printed no totals (exit status $status)"
fi
[ -z "$counts_file" ] || echo "$counts" >"$counts_file"
read -r passed failed skipped <<<"$counts"
echo "R $rversion: $passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ] && [ "$failed" = 0 ]
