#!/usr/bin/env bash
# The crate boundaries of the design, checked on Cargo's own dependency
# graph: a crate that must not do I/O cannot depend on anything that does,
# and the load generator and the SIP fuzz target build without clang (no XDP
# crate below them). Fails with the offending crate named.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
# forbid PACKAGE REGEX WHY: PACKAGE's normal dependencies (transitive, with
# the features the package itself turns on) must match none of REGEX.
forbid() {
  local pkg=$1 re=$2 why=$3 found
  found=$(cargo tree -p "$pkg" -e normal --prefix none --locked 2>/dev/null \
    | sed 's/ .*//' | sort -u | grep -vx "$pkg" | grep -Ex "$re" | tr '\n' ' ' || true)
  if [ -n "$found" ]; then
    echo "boundary broken: $pkg depends on ${found}($why)" >&2
    status=1
  else
    echo "ok: $pkg ($why)"
  fi
}

io='libc|mio|socket2|aya|aya-obj|xdpilone|netlink-.*|tiny_http|ureq|signal-hook.*|core_affinity|crossbeam-.*|ratatui|crossterm|prometheus-client'
ours_io='dce-sys|dce-xdp|dce-dataplane|dce-telemetry|dce-appliance|dce-lab|dce-profile'

forbid dce-proxy "$io|$ours_io" "the proxy is sans-IO: no sockets, system calls, threads or clocks of its own"
forbid dce-route "$io|$ours_io" "route tables are pure data; huge pages are an opt-in feature"
forbid dce-sip "$io|dce-.*" "the parser reads bytes, nothing else"
forbid dce-wire "$io|dce-.*" "frame views and writers depend on nothing"
forbid dce-config "$io|dce-.*" "configuration errors depend on nothing of ours"
forbid dce-fleet "$io|$ours_io" "the fleet's decisions (announce or withdraw, which shared bans to take) are sans-IO; the appliance drives BIRD and the bus"
forbid dce-testpki "dce-.*" "test certificates depend on nothing of ours, so any crate's tests can use them without a cycle"
forbid dce-loadgen "dce-xdp|aya|aya-obj|xdpilone|dce-dataplane|dce-appliance" "the load generator builds without clang"
exit $status
