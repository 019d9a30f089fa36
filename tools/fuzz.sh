#!/usr/bin/env bash
# Fuzz the Rust parsers of what others send us (issue 23, item 5) for a fixed budget each:
# the user's ssh config (ssh/config.rs), known_hosts files (libssh2's reader as session.rs
# uses it, and the lines ssh/known_hosts.rs writes), a remote host's answers to our
# scripts (ssh/remote.rs), and what a connecting worker (or stranger) sends to the master's
# port (handshake.rs). The targets are in src/rust/fuzz (entry points: src/fuzz_entry.rs).
#
#   tools/fuzz.sh [seconds per target, default 60] [target ...]
#
# Not run in CI. Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain
# (`rustup toolchain install nightly`; or set FUZZ_TOOLCHAIN). Each run starts from the
# seeds in src/rust/fuzz/seeds/<target> (plus the corpus it grew before, kept out of git in
# src/rust/fuzz/corpus). A panic, a hang (over 10 s on one input) or an allocation over
# 256 MB is a finding: the input is copied to src/rust/fuzz/regressions/<target>/, which
# `cargo test` replays (fuzz_entry.rs), and the script exits with status 1.
set -euo pipefail
cd "$(dirname "$0")/../src/rust/fuzz"
export PATH="$PATH:$HOME/.cargo/bin"
budget=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ssh_config known_hosts remote_answers worker_handshake)
toolchain=${FUZZ_TOOLCHAIN:-nightly}
command -v cargo-fuzz >/dev/null 2>&1 || { echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2; exit 2; }
# extendr-ffi's build script asks R for its version.
command -v R >/dev/null 2>&1 || { echo "R not found on PATH" >&2; exit 2; }

status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${budget} s"
  if cargo "+$toolchain" fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
       -max_total_time="$budget" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
       -max_len=65536 -print_final_stats=1 2>"artifacts/$t.log"; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "artifacts/$t.log" | sed "s/^/   /"
  else
    status=1
    echo "   FINDING: see src/rust/fuzz/artifacts/$t.log" >&2
    mkdir -p "regressions/$t"
    for f in artifacts/"$t"/*; do
      [ -f "$f" ] || continue
      cp "$f" "regressions/$t/" && echo "   input kept as src/rust/fuzz/regressions/$t/$(basename "$f")" >&2
    done
  fi
done
exit $status
