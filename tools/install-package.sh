#!/usr/bin/env bash
# Build the Rust library and install the R package from this checkout into R's default
# library. The cargo target directory (src/rust/target) is kept, so rebuilds are warm.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$HOME/.cargo/bin"
log=$(mktemp)
if ! R CMD INSTALL --no-multiarch . >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "R CMD INSTALL failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "Installed parallelly $(Rscript -e 'cat(format(packageVersion("parallelly")))') into $(Rscript -e 'cat(.libPaths()[1])')"
