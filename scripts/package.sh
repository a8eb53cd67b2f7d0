#!/usr/bin/env bash
# Builds the Debian package of dce-edge into target/debian/:
#   dce-edge_<version>-1_<arch>.deb         the package
#   dce-edge-dbgsym_<version>-1_<arch>.ddeb its debug symbols (perf, gdb)
# with cargo-deb (installed at the pinned version below when missing; it
# builds on the workspace's Rust). The package's contents are declared in
# edge/Cargo.toml ([package.metadata.deb]); the unit, the default
# configuration, logrotate and the maintainer scripts are in packaging/.
# Prints the path of the .deb as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CARGO_DEB_VERSION=3.8.0
jobs="${CARGO_BUILD_JOBS:-2}"
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out="$root/target/debian"

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" -j "$jobs"
fi

echo "== building dce-edge and dce-loadgen (release)"
cargo build --workspace --bins --release --locked -j "$jobs"

echo "== manual pages and shell completions (dce-edge generate)"
assets="$target_dir/release/deb-assets"
rm -rf "$assets"
"$target_dir/release/dce-edge" generate man --out "$assets/man" >/dev/null
"$target_dir/release/dce-edge" generate completions --out "$assets/completions" >/dev/null
# Debian's manual pages are gzip-compressed, without a timestamp (-n).
gzip -9n "$assets"/man/*.1

echo "== cargo deb"
rm -f "$out"/dce-edge_*.deb "$out"/dce-edge-dbgsym_*.ddeb
mkdir -p "$out"
cargo deb -p dce-edge --no-build --locked --dbgsym --output "$out/" >/dev/null
deb=$(ls "$out"/dce-edge_*.deb)
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Recommends\|Installed-Size\):/  \1:/p'
echo "$deb"
