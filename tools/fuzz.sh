#!/usr/bin/env bash
# A long mutation-fuzzing campaign over every parser a peer's bytes reach
# (src/rust/tests/fuzz.rs; `cargo test` runs the same with 100,000 cases
# each). Usage: bash tools/fuzz.sh [cases per parser, default 10000000]
set -euo pipefail
cd "$(dirname "$0")/../src/rust"
CASES=${1:-10000000}
if [ -f vendor.tar.xz ] && [ ! -d vendor ]; then xz -dc vendor.tar.xz | tar -xf -; fi
R_HOME=$(R RHOME); export R_HOME
export LD_LIBRARY_PATH="$R_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
MIRAI_FUZZ_CASES=$CASES cargo test --release --offline --test fuzz \
  --config 'source.crates-io.replace-with="vendored-sources"' \
  --config "source.vendored-sources.directory=\"$(pwd)/vendor\"" -- --nocapture
