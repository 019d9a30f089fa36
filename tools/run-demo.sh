#!/usr/bin/env bash
# Set up (if needed), install, and run the seed scenario on local workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
bash tools/install-package.sh
Rscript inst/scripts/seed-scenario.R
