#!/usr/bin/env bash
# Every test of dce-edge, as CI runs them: set-up, formatting, lints, then the
# unit, property, BPF and end-to-end tests. Privileged tests (namespaces, XDP,
# AF_XDP) need root; they skip with a reason when not root, unless
# DCE_REQUIRE_PRIVILEGED=1, which turns a skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

export CARGO_TERM_COLOR=never
jobs="${CARGO_BUILD_JOBS:-2}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== crate boundaries (Cargo's dependency graph)"
./scripts/check-boundaries.sh

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -j "$jobs" -- -D warnings

echo "== cargo test (release, so the end-to-end tests run at speed)"
cargo build --workspace --bins --release --locked -j "$jobs"
cargo test --workspace --release --locked -j "$jobs"
