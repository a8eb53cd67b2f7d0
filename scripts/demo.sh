#!/usr/bin/env bash
# The lab demo on a fresh machine: installs what it needs, builds dce-edge
# and dce-loadgen in release mode, and runs `dce-edge demo` (as root: it
# creates network namespaces and attaches XDP). Extra arguments go to the
# demo, e.g. `./scripts/demo.sh --seconds 60 --cps 500 --json report.json`.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --locked --workspace --bins -j "${CARGO_BUILD_JOBS:-2}"
exec ./target/release/dce-edge demo "$@"
