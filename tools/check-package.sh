#!/usr/bin/env bash
# Build the source tarball the way it is released and run `R CMD check --no-manual` on it:
#   1. tools/vendor-crates.sh writes src/rust/vendor.tar.xz (so the tarball installs offline);
#   2. R CMD build . in a scratch directory;
#   3. R CMD check --no-manual on the tarball, with an empty local CRAN-like repository
#      (there is no CRAN mirror here) and the SSH test hosts script of this checkout.
# Prints the end of the check log and the sizes of the tarball and of the installed package;
# exits non-zero unless the check ends with "Status: OK".
# Usage: tools/check-package.sh [--no-tests] [--as-cran] [OUTDIR]
#   OUTDIR: default a new directory under /tmp; it is kept. --no-tests and --as-cran go to
#   R CMD check. With --as-cran, the checks that need the internet are off (there is none
#   here): the CRAN incoming checks (_R_CHECK_CRAN_INCOMING_=false) and the check of the
#   system clock against a time server (_R_CHECK_SYSTEM_CLOCK_=false).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$PATH:$HOME/.cargo/bin"
check_args=(--no-manual)
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-tests|--as-cran) check_args+=("$1"); shift ;;
    -*) echo "check-package.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
out=${1:-$(mktemp -d /tmp/parallelly-check.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

echo "== Vendoring the crates"
bash tools/vendor-crates.sh

# An empty repository, so that R CMD check does not look for CRAN.
mkdir -p "$out/repo/src/contrib"
Rscript -e "invisible(tools::write_PACKAGES('$out/repo/src/contrib', type = 'source'))"
# write_PACKAGES writes no index for an empty directory: make empty ones.
[ -f "$out/repo/src/contrib/PACKAGES" ] || : >"$out/repo/src/contrib/PACKAGES"
[ -f "$out/repo/src/contrib/PACKAGES.gz" ] || gzip -c </dev/null >"$out/repo/src/contrib/PACKAGES.gz"
cat >"$out/Rprofile" <<PROFILE
options(repos = c(CRAN = "file://$out/repo"))
PROFILE
export R_PROFILE="$out/Rprofile"
export _R_CHECK_CRAN_INCOMING_=false
export _R_CHECK_SYSTEM_CLOCK_=false
# Rmpi (Suggests, for makeClusterMPI) is usually not installed; its example is \dontrun.
export _R_CHECK_FORCE_SUGGESTS_=${_R_CHECK_FORCE_SUGGESTS_:-false}
export R_PARALLELLY_SSH_TEST_HOSTS_SCRIPT="$root/tools/ssh-test-hosts.sh"
export R_PARALLELLY_SLURM_TEST_CLUSTER_SCRIPT="$root/tools/slurm-test-cluster.sh"
export R_PARALLELLY_GRIDENGINE_TEST_CLUSTER_SCRIPT="$root/tools/gridengine-test-cluster.sh"

echo "== R CMD build"
rm -f "$out"/parallelly_*.tar.gz
(cd "$out" && R CMD build "$root" >build.log 2>&1) || { cat "$out/build.log"; exit 1; }
tarball=$(ls "$out"/parallelly_*.tar.gz)
echo "$tarball"

echo "== R CMD check ${check_args[*]}"
start=$(date +%s)
(cd "$out" && R CMD check "${check_args[@]}" "$tarball" >check.log 2>&1) || true
echo "(check took $(( $(date +%s) - start )) s; log: $out/check.log, details: $out/parallelly.Rcheck)"
tail -n 25 "$out/check.log"

echo "== Sizes"
echo "tarball:           $(du -h "$tarball" | cut -f1) ($(stat -c %s "$tarball") bytes)"
echo "  of which vendor: $(du -h src/rust/vendor.tar.xz | cut -f1)"
if [ -d "$out/parallelly.Rcheck/parallelly" ]; then
  echo "installed package: $(du -sh "$out/parallelly.Rcheck/parallelly" | cut -f1)"
  echo "  libs:            $(du -sh "$out/parallelly.Rcheck/parallelly/libs" | cut -f1)"
fi

grep -q '^Status: OK$' "$out/check.log"
