#!/usr/bin/env bash
# Installs what dce-edge needs to build, test and run its lab on a fresh
# Debian bookworm machine (run as root). Installs only what is missing, so it
# is cheap to run again.
set -euo pipefail

packages=(
  clang llvm libc6-dev linux-libc-dev   # the XDP program (C, built by build.rs)
  iproute2 ethtool nftables             # the lab: namespaces, veth, nft peer
  sip-tester kamailio sipvicious        # real peers: SIPp, Kamailio, svmap/svwar/svcrack
  netsniff-ng tcpdump tmux python3      # trafgen, captures, the live-view test
  bird2 nats-server                     # the fleet lab: BGP anycast, the shared-state bus
  shellcheck                            # the tuning scripts
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust 1.95 (rustup) first" >&2
  exit 1
fi
