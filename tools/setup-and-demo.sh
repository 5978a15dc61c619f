#!/usr/bin/env bash
# Fresh machine to working mirai: system dependencies, the package (built
# offline from the vendored Rust crates), then a short demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
CARGO_NET_OFFLINE=true R CMD INSTALL .
Rscript tools/demo.R
