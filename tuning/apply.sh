#!/usr/bin/env bash
# Applies a hardware profile's host tuning: RSS queue count (ethtool -L),
# queue IRQ affinity to the worker cores, offloads that hurt XDP off
# (ethtool -K), MTU, busy polling (sysctl and the interface's NAPI
# settings), the CPU frequency governor, and stops irqbalance. CPU isolation
# needs the kernel command line and a reboot: it is printed, never applied.
#
# The commands come from `dce-edge tune --fixes`, the same audit that
# `dce-edge tune --check` reports, so the script and the check never
# disagree. Only what differs from the profile is changed, and every
# command sets an absolute value: running it again changes nothing.
#
#   tuning/apply.sh --profile NAME --iface IF [--dry-run] [--root DIR]
#                   [--profiles-dir DIR] [--dce-edge PATH]
#
#   --dry-run       print the commands instead of running them
#   --root DIR      plan from a copy of another host's /sys and /proc (a
#                   fixture tree); only with --dry-run
#   --dce-edge PATH the dce-edge binary (default: dce-edge on PATH, or $DCE_EDGE)
#
# Exit status: 0 when the host passes the audit afterwards (or on a dry
# run), 1 when a check still fails, 2 on bad usage.
set -euo pipefail

usage() {
  sed -n '/^#   tuning/,/^#   --dce-edge/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

profile=""
iface=""
dry_run=0
root="/"
profiles_dir=""
dce_edge="${DCE_EDGE:-dce-edge}"

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a NAME}"; shift 2 ;;
    --iface) iface="${2:?--iface needs an interface}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --root) root="${2:?--root needs a DIR}"; shift 2 ;;
    --profiles-dir) profiles_dir="${2:?--profiles-dir needs a DIR}"; shift 2 ;;
    --dce-edge) dce_edge="${2:?--dce-edge needs a PATH}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "apply.sh: unknown argument $1" >&2; usage ;;
  esac
done

[ -n "$profile" ] || { echo "apply.sh: --profile NAME is required" >&2; usage; }
[ -n "$iface" ] || { echo "apply.sh: --iface IF is required" >&2; usage; }
if [ "$root" != "/" ] && [ "$dry_run" -eq 0 ]; then
  echo "apply.sh: --root plans for another host's files; it only goes with --dry-run" >&2
  exit 2
fi
if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "apply.sh: changing the host needs root (or use --dry-run)" >&2
  exit 2
fi
command -v "$dce_edge" >/dev/null 2>&1 || {
  echo "apply.sh: cannot find dce-edge ($dce_edge); pass --dce-edge PATH" >&2
  exit 2
}

args=(--profile "$profile" --iface "$iface" --root "$root")
if [ -n "$profiles_dir" ]; then
  args+=(--profiles-dir "$profiles_dir")
fi

plan() {
  "$dce_edge" tune --fixes "${args[@]}"
}

print_manual() {
  local manual
  manual="$(printf '%s\n' "$1" | grep '^# manual' || true)"
  if [ -n "$manual" ]; then
    echo "# steps to take by hand:"
    printf '%s\n' "$manual"
  fi
}

if [ "$dry_run" -eq 1 ]; then
  fixes="$(plan)"
  commands="$(printf '%s\n' "$fixes" | grep -v '^#' | grep -v '^$' || true)"
  echo "# dce-edge tuning for profile $profile on $iface (dry run: nothing is changed)"
  if [ -z "$commands" ]; then
    echo "# nothing to change"
  else
    printf '%s\n' "$commands"
    if printf '%s\n' "$commands" | grep -q '^ethtool -L '; then
      echo "# ethtool -L renumbers the queue interrupts: a real run re-reads them afterwards"
    fi
  fi
  print_manual "$fixes"
  exit 0
fi

# Changing the channel count reallocates the queue interrupts, so IRQ
# commands planned before it may name interrupts that no longer exist:
# after an ethtool -L they are deferred to the next round, which plans
# again from the new /proc/interrupts.
previous=""
for round in 1 2 3; do
  fixes="$(plan)"
  commands="$(printf '%s\n' "$fixes" | grep -v '^#' | grep -v '^$' || true)"
  if [ -z "$commands" ]; then
    [ "$round" -eq 1 ] && echo "nothing to change"
    break
  fi
  if [ "$commands" = "$previous" ]; then
    echo "apply.sh: these did not take effect:" >&2
    printf '  %s\n' "$commands" >&2
    break
  fi
  previous="$commands"
  renumbered=0
  while IFS= read -r cmd; do
    if [ "$renumbered" -eq 1 ] && [[ "$cmd" == *"/proc/irq/"* ]]; then
      echo "deferred (interrupts renumbered): $cmd"
      continue
    fi
    echo "+ $cmd"
    if ! sh -c "$cmd"; then
      echo "apply.sh: failed: $cmd" >&2
    fi
    if [[ "$cmd" == "ethtool -L "* ]]; then
      renumbered=1
    fi
  done <<< "$commands"
done

print_manual "$(plan)"
echo
set +e
"$dce_edge" tune --check "${args[@]}"
status=$?
set -e
exit "$status"
