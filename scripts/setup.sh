#!/usr/bin/env bash
# Installs what dce-edge needs to build, test and run its lab on a fresh
# Debian bookworm machine (run as root). Installs only what is missing, so it
# is cheap to run again.
set -euo pipefail

packages=(
  clang llvm libc6-dev linux-libc-dev   # the XDP program (C, built by build.rs)
  iproute2 ethtool nftables             # the lab: namespaces, veth, nft peer
  sip-tester kamailio sipvicious        # real peers: SIPp, Kamailio, svmap/svwar/svcrack
  kamailio-tls-modules                  # Kamailio over TLS in the edge_stream bench
  netsniff-ng tcpdump tmux python3      # trafgen, captures, the live-view test
  hping3                                # SYN floods at the SIP-over-TCP listener
  bird2 nats-server                     # the fleet lab: BGP anycast, the shared-state bus
  shellcheck                            # the tuning scripts
  dpkg-dev binutils adduser             # the Debian package: scripts/package.sh (cargo-deb)
  systemd man-db logrotate libcap2-bin strace   # its checks: scripts/check-package.sh
  prometheus                            # promtool: the alert rules and their tests
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
  # Only promtool is wanted from `prometheus`: no package may start a
  # server here. A policy-rc.d that refuses every start is put in place for
  # the install when the machine has none (container images usually do).
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# scripts/setup.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ -n "$own_policy" ] && rm -f "$policy"; exit 1; }
  [ -n "$own_policy" ] && rm -f "$policy"
  # Where systemd runs, an enabled unit would start at the next boot.
  if [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust 1.95 (rustup) first" >&2
  exit 1
fi
