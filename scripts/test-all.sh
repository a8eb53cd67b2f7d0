#!/usr/bin/env bash
# Every test of dce-edge, as CI runs them: set-up, formatting, lints, then the
# unit, property, BPF and end-to-end tests, then the alert rules (promtool)
# and the Debian package (built, installed, run against a lab, removed).
# Privileged tests (namespaces, XDP, AF_XDP) need root; they skip with a
# reason when not root, unless DCE_REQUIRE_PRIVILEGED=1, which turns a skip
# into a failure.
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

echo "== alert rules (promtool check and test)"
(cd alerts && promtool check rules dce-edge.rules.yml && promtool test rules dce-edge.rules.test.yml)

echo "== the Debian package (scripts/package.sh, scripts/check-package.sh)"
if [ "$(id -u)" -eq 0 ]; then
  ./scripts/package.sh
  ./scripts/check-package.sh
elif [ "${DCE_REQUIRE_PRIVILEGED:-0}" = 1 ]; then
  echo "the package check installs the package and needs root" >&2
  exit 1
else
  echo "skipped: the package check installs the package and needs root"
fi
