#!/usr/bin/env bash
# Copies the files `dce-edge profile detect` and `dce-edge tune --check`
# read from this host into DIR, shaped like / (plus ethtool/IF/{info,
# channels,features} holding `ethtool -i/-l/-k` output), so the host can be
# examined elsewhere: `dce-edge profile detect --root DIR`. Reads only; it
# changes nothing. Small text files only (no statistics, no addresses).
#
#   tuning/snapshot.sh --out DIR [--iface IF]...
set -euo pipefail

out=""
ifaces=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a DIR}"; shift 2 ;;
    --iface) ifaces+=("${2:?--iface needs an interface}"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "snapshot.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "snapshot.sh: --out DIR is required" >&2; exit 2; }
mkdir -p "$out"

# copy SRC [DEST]: a readable file's text, or nothing (the reader then says
# why it could not read it, as it would on the host).
copy() {
  local src="$1" dest="${2:-$1}" text
  [ -f "$src" ] || return 0
  text="$(cat "$src" 2>/dev/null)" || return 0
  mkdir -p "$out$(dirname "$dest")"
  printf '%s\n' "$text" > "$out$dest"
}

copy /proc/sys/kernel/osrelease
copy /proc/interrupts
copy /proc/sys/net/core/busy_poll
copy /proc/sys/net/core/busy_read
if mhz="$(grep -m1 '^cpu MHz' /proc/cpuinfo)"; then
  printf '%s\n' "$mhz" > "$out/proc/cpuinfo"
fi
for dir in /proc/irq/[0-9]*; do
  copy "$dir/smp_affinity_list"
done
for pid in $(pgrep -x irqbalance || true); do
  copy "/proc/$pid/comm"
done

for f in online isolated nohz_full; do
  copy "/sys/devices/system/cpu/$f"
done
for cpu in /sys/devices/system/cpu/cpu[0-9]*; do
  copy "$cpu/cpufreq/cpuinfo_max_freq"
  copy "$cpu/cpufreq/scaling_governor"
done
for node in /sys/devices/system/node/node[0-9]*; do
  copy "$node/cpulist"
done

if [ "${#ifaces[@]}" -eq 0 ]; then
  for dir in /sys/class/net/*; do
    ifaces+=("$(basename "$dir")")
  done
fi
for ifc in "${ifaces[@]}"; do
  sys="/sys/class/net/$ifc"
  [ -d "$sys" ] || { echo "snapshot.sh: no interface $ifc" >&2; exit 2; }
  for f in type mtu speed napi_defer_hard_irqs gro_flush_timeout; do
    copy "$sys/$f"
  done
  for q in "$sys"/queues/*; do
    [ -e "$q" ] && mkdir -p "$out$q"
  done
  if [ -e "$sys/device" ]; then
    copy "$sys/device/uevent"
    copy "$sys/device/numa_node"
    # PCI NICs list their vectors on the device, virtio on its PCI parent;
    # the snapshot keeps whichever exists where the reader looks first.
    for msi in "$sys/device/msi_irqs" "$sys/device/../msi_irqs"; do
      if [ -d "$msi" ]; then
        mkdir -p "$out$sys/device/msi_irqs"
        for v in "$msi"/*; do
          printf 'msix\n' > "$out$sys/device/msi_irqs/$(basename "$v")"
        done
        break
      fi
    done
  fi
  if command -v ethtool >/dev/null 2>&1; then
    mkdir -p "$out/ethtool/$ifc"
    ethtool -i "$ifc" > "$out/ethtool/$ifc/info" 2>/dev/null || rm -f "$out/ethtool/$ifc/info"
    ethtool -l "$ifc" > "$out/ethtool/$ifc/channels" 2>/dev/null || rm -f "$out/ethtool/$ifc/channels"
    ethtool -k "$ifc" > "$out/ethtool/$ifc/features" 2>/dev/null || rm -f "$out/ethtool/$ifc/features"
  fi
done
echo "snapshot in $out: dce-edge profile detect --root $out"
