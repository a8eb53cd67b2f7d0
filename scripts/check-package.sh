#!/usr/bin/env bash
# Checks the Debian package the way an operator meets it, as root on a
# machine without it: install; the binaries, manual pages, completions,
# files and modes; the unit (systemd-analyze verify and security); the
# default configuration; the alert rules (promtool check and test); then the
# unit's own command lines against a lab (an edge namespace with a veth),
# run the way systemd would run them: as the unit's user, with its
# capabilities, umask, no-new-privileges and a read-only file system but for
# its writable paths, its ExecStartPre with full privileges. Start, answer
# SIP, reload, rotate the event log, stop with SIGTERM; start again and
# SIGKILL it, then its ExecStopPost. Every system call made is held against
# the unit's SystemCallFilter. Then remove and purge the package and check
# that no XDP program, pin folder, namespace or package file is left.
#
# Needs root and the package built first (./scripts/package.sh). Every step
# prints a line; the first failure stops it with the reason (exit 1). The
# lab runs in its own mount namespace with its own bpffs, so other tests'
# pins are never touched; it uses 198.18.201.0/24 inside the namespaces it
# makes and removes them, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

fail() { echo "check-package: FAILED: $*" >&2; exit 1; }
step() { echo "== $*"; }
ok() { echo "   ok: $*"; }

UNIT=/usr/lib/systemd/system/dce-edge.service
CONF=/etc/dce-edge/edge.toml

# Ends the dce-edge processes running in network namespace $1 (only this
# check starts any there).
stop_lab_edges() {
  local want p
  want=$(readlink "/run/netns/$1" 2>/dev/null || stat -L -c 'net:[%i]' "/run/netns/$1" 2>/dev/null) || return 0
  for p in $(pgrep -x dce-edge || true); do
    if [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$want" ]; then kill -KILL "$p" 2>/dev/null || true; fi
  done
}

# The value of KEY= in the installed unit (last one wins, as in systemd).
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n 1; }
# A command line of the unit without systemd's prefixes (+, -, !, @, :).
unit_command() { unit_value "$1" | sed 's/^[-+!@:]*//'; }

# ---------------------------------------------------------------------------
# The lab part, run by the outer part below inside its own mount namespace.
# ---------------------------------------------------------------------------
if [ "${1:-}" = "--inside" ]; then
  ns_edge=$2 ns_peer=$3 iface=$4 work=$5
  edge_ip=198.18.201.1 peer_ip=198.18.201.2

  user=$(unit_value User)
  group=$(unit_value Group)
  caps=$(unit_value AmbientCapabilities)
  bounding=$(unit_value CapabilityBoundingSet)
  [ "$caps" = "$bounding" ] || fail "AmbientCapabilities ($caps) and CapabilityBoundingSet ($bounding) differ"
  setpriv_caps=$(echo "$caps" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
  umask_value=$(unit_value UMask)
  [ "$(unit_value NoNewPrivileges)" = yes ] || fail "the unit does not set NoNewPrivileges=yes"

  # What systemd gives the service: bpffs at /sys/fs/bpf (mounted at boot;
  # here a private one), the runtime and logs directories, the pin folder
  # from the "+" ExecStartPre.
  mount -t bpf bpf /sys/fs/bpf
  # RuntimeDirectory=: fresh and the service's own; a tmpfs over it here, so
  # that nothing else on this machine that uses the path is touched.
  mount -t tmpfs -o "mode=$(unit_value RuntimeDirectoryMode),uid=$(id -u "$user"),gid=$(id -g "$group")" \
    tmpfs "/run/$(unit_value RuntimeDirectory)"
  install -d -o "$user" -g "$group" -m "$(unit_value LogsDirectoryMode)" "/var/log/$(unit_value LogsDirectory)"
  start_pre=$(unit_command ExecStartPre)
  $start_pre || fail "ExecStartPre ($start_pre) failed"
  [ "$(stat -c %U /sys/fs/bpf/dce-edge)" = "$user" ] || fail "ExecStartPre did not give /sys/fs/bpf/dce-edge to $user"
  ok "ExecStartPre: /sys/fs/bpf/dce-edge belongs to $user"

  # LimitMEMLOCK=infinity: AF_XDP's UMEM counts against RLIMIT_MEMLOCK
  # without CAP_IPC_LOCK. Where this sandbox may not raise it (no
  # CAP_SYS_RESOURCE), the lab configuration keeps the UMEM under it.
  umem=""
  if [ "$(unit_value LimitMEMLOCK)" = infinity ] && prlimit --pid $$ --memlock=unlimited:unlimited 2>/dev/null; then
    ok "LimitMEMLOCK=infinity applied"
  else
    umem=$'[dataplane]\nframe_count = 2048\nfill_ring = 1024\nrx_ring = 512\ntx_ring = 512\ncompletion_ring = 512\n'
    ok "LimitMEMLOCK=infinity cannot be applied here (memlock $(ulimit -l) KiB): lab UMEM 4 MiB"
  fi

  # The operator's edit: AF_XDP on the lab's veth.
  cat >"$CONF" <<EOF
[edge]
mode = "afxdp"
interface = "$iface"
listen = "$edge_ip:5060"
workers = 1
control_socket = "/run/dce-edge/control.sock"

$umem
[dataplane.idle]
busy_polls = 64
wait_us = 1000

[routes]
groups = "groups.toml"
prefixes = "prefixes.csv"

[metrics]
listen = "127.0.0.1:9560"

[events]
file = "/var/log/dce-edge/events.jsonl"
EOF
  /usr/bin/dce-edge run --config "$CONF" --check >/dev/null || fail "the lab configuration does not check"

  # ProtectSystem=strict: every mount read-only but the API file systems,
  # then ReadWritePaths= and the runtime and logs directories writable;
  # PrivateTmp= and ProtectHome=: fresh and empty.
  [ "$(unit_value ProtectSystem)" = strict ] || fail "the unit does not set ProtectSystem=strict"
  # The operator edits /etc/dce-edge outside the service's sandbox: this
  # check keeps a writable view of it for that.
  etc_rw=$6
  mkdir -p "$etc_rw"
  mount --bind /etc/dce-edge "$etc_rw"
  awk '{print $2}' /proc/self/mounts | sort -u | while read -r m; do
    case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$etc_rw"|*\\*) continue ;; esac
    mount -o remount,bind,ro "$m" 2>/dev/null || true
  done
  for p in "/run/$(unit_value RuntimeDirectory)" "/var/log/$(unit_value LogsDirectory)" $(unit_value ReadWritePaths); do
    case "$p" in /sys/*) continue ;; esac
    mount --bind "$p" "$p" && mount -o remount,bind,rw "$p"
  done
  if [ "$(unit_value PrivateTmp)" = yes ]; then
    for p in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$p"; done
  fi
  if [ "$(unit_value ProtectHome)" = yes ]; then
    for p in /home /root /run/user; do
      if [ -d "$p" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$p"; fi
    done
  fi
  if touch /usr/dce-edge-check 2>/dev/null; then fail "the read-only file system is writable"; fi
  work=/tmp/check  # the private /tmp
  mkdir -p "$work"
  ok "sandbox: / read-only; /run/dce-edge, /var/log/dce-edge, /sys/fs/bpf writable; private /tmp; no /home"

  cat >"$work/ping.py" <<'EOF'
# One SIP OPTIONS from the peer to the edge, retried for up to ARGV[3] s;
# exits 0 on a 200.
import socket, sys, time
src, dst, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
port = s.getsockname()[1]
s.settimeout(0.5)
deadline, n = time.time() + limit, 0
while time.time() < deadline:
    n += 1
    msg = (f"OPTIONS sip:{dst}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{port};branch=z9hG4bK-chk{n}\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:check@{src}>;tag=c{n}\r\nTo: <sip:{dst}>\r\n"
           f"Call-ID: chk-{n}@{src}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (dst, 5060))
    try:
        line = s.recvfrom(4096)[0].split(b"\r\n")[0].decode()
        print(line)
        sys.exit(0 if " 200 " in line else 1)
    except socket.timeout:
        pass
print(f"no answer in {limit} s")
sys.exit(1)
EOF
  cat >"$work/metrics.py" <<'EOF'
# Prints the /metrics sample lines whose names are given.
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9560/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.split("{")[0].split(" ")[0] in sys.argv[1:]:
        print(line)
EOF

  in_edge() { nsenter --net="/run/netns/$ns_edge" -- "$@"; }
  as_unit() {  # a command as the unit runs it: user, capabilities, no new privileges
    in_edge ${wrapper:-} setpriv --reuid="$user" --regid="$group" --init-groups \
      --inh-caps="$setpriv_caps" --ambient-caps="$setpriv_caps" --bounding-set=-all,"$setpriv_caps" \
      --no-new-privs "$@"
  }
  exec_start=$(unit_command ExecStart)
  exec_reload=$(unit_command ExecReload)
  exec_stop_post=$(unit_command ExecStopPost)
  timeout_stop=$(unit_value TimeoutStopSec)
  edge_pid=""
  descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
  start_edge() {  # $1: log file; $2: wrapper (strace) or empty
    umask "$umask_value"
    # shellcheck disable=SC2086
    wrapper=$2 as_unit $exec_start >"$1" 2>&1 &
    local job=$!
    umask 0022
    # The edge is a descendant of the background job (through strace when
    # there is one): the process whose executable is /usr/bin/dce-edge.
    edge_pid=""
    for _ in $(seq 1 100); do
      for p in $(descendants "$job"); do
        if [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/bin/dce-edge ]; then edge_pid=$p; fi
      done
      [ -n "$edge_pid" ] && break
      sleep 0.1
    done
    [ -n "$edge_pid" ] || fail "no dce-edge process: $(cat "$1")"
    ip netns exec "$ns_peer" python3 "$work/ping.py" "$peer_ip" "$edge_ip" 60 >"$work/ping.out" ||
      fail "the edge did not answer OPTIONS ($(cat "$work/ping.out")):
$(cat "$1")"
  }
  wait_gone() {  # $1: pid, $2: seconds
    for _ in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
  }
  cleanup_inside() { stop_lab_edges "$ns_edge"; }
  trap cleanup_inside EXIT

  # --- start, under strace when there is one --------------------------------
  step "start: ExecStart as $user with $caps"
  tracer=""
  command -v strace >/dev/null && tracer="strace -f -qq -o $work/strace.out"
  start_edge "$work/run-1.log" "$tracer"
  ok "ExecStart answers SIP OPTIONS from the peer: $(cat "$work/ping.out")"
  status=/proc/$edge_pid/status
  [ "$(awk '/^Uid:/{print $2}' "$status")" = "$(id -u "$user")" ] || fail "the edge does not run as $user"
  want_caps=$(echo "$caps" | tr 'A-Z' 'a-z' | tr ' ' '\n' | sort | tr '\n' ',' | sed 's/,$//')
  got_caps=$(capsh --decode="$(awk '/^CapEff:/{print $2}' "$status")" | sed 's/.*=//' | tr ',' '\n' | sort | tr '\n' ',' | sed 's/,$//')
  [ "$got_caps" = "$want_caps" ] || fail "effective capabilities are $got_caps, the unit gives $want_caps"
  [ "$(awk '/^NoNewPrivs:/{print $2}' "$status")" = 1 ] || fail "no_new_privs is not set"
  ok "runs as $user, effective capabilities $got_caps, no_new_privs"
  ip -n "$ns_edge" -d link show "$iface" | grep -q "prog/xdp" || fail "no XDP program on $iface"
  pins=$(find /sys/fs/bpf/dce-edge -mindepth 2 -maxdepth 2 -name "$iface")
  [ -n "$pins" ] || fail "no pins for $iface under /sys/fs/bpf/dce-edge"
  [ "$(stat -c %U "$pins")" = "$user" ] || fail "the pins belong to $(stat -c %U "$pins")"
  ok "XDP attached to $iface; maps pinned in $pins"
  [ "$(stat -c %a /var/log/dce-edge/events.jsonl)" = 640 ] || fail "events.jsonl mode $(stat -c %a /var/log/dce-edge/events.jsonl)"
  ok "event log /var/log/dce-edge/events.jsonl, mode 640"
  in_edge /usr/bin/dce-edge ban --list --iface "$iface" >"$work/bans.out" || fail "root cannot read the service's pins: $(cat "$work/bans.out")"
  ok "root's dce-edge ban --list finds the service's pins: $(head -n 1 "$work/bans.out")"
  sleep 2  # a snapshot published
  in_edge python3 "$work/metrics.py" dce_edge_ban_map_capacity dce_edge_worker_last_snapshot_age_seconds >"$work/metrics.out"
  grep -q '^dce_edge_ban_map_capacity{map="bans_v4"} 65536' "$work/metrics.out" || fail "no ban map capacity in /metrics: $(cat "$work/metrics.out")"
  grep -q '^dce_edge_worker_last_snapshot_age_seconds{worker="0"}' "$work/metrics.out" || fail "no worker snapshot age in /metrics"
  ok "/metrics: $(tr '\n' ' ' <"$work/metrics.out")"

  step "reload: ExecReload after a change of prefixes.csv"
  printf '4930,unrouted\n' >>"$etc_rw/prefixes.csv"
  # shellcheck disable=SC2086
  as_unit $exec_reload >"$work/reload.out" 2>&1 || fail "ExecReload failed: $(cat "$work/reload.out")"
  grep -q "accepted: route table version 2" "$work/reload.out" || fail "unexpected reload answer: $(cat "$work/reload.out")"
  ok "$(cat "$work/reload.out")"

  step "logrotate: rotate the event log, the appliance reopens it"
  logrotate -f -s "$work/logrotate.state" /etc/logrotate.d/dce-edge || fail "logrotate failed"
  [ -f /var/log/dce-edge/events.jsonl.1 ] || fail "no rotated events.jsonl.1"
  [ -f /var/log/dce-edge/events.jsonl ] || fail "the appliance did not reopen events.jsonl"
  # shellcheck disable=SC2086
  as_unit $exec_reload >/dev/null 2>&1 || fail "the second reload failed"
  # The control thread writes the reload's event right after it answers.
  for _ in $(seq 1 50); do
    grep -q '"route_reload_accepted"' /var/log/dce-edge/events.jsonl && break
    sleep 0.1
  done
  grep -q '"route_reload_accepted"' /var/log/dce-edge/events.jsonl || fail "the reload after the rotation is not in the new file"
  grep -q '"start"' /var/log/dce-edge/events.jsonl.1 || fail "the start event is not in the rotated file"
  ok "events before the rotation in events.jsonl.1, after it in events.jsonl"

  step "stop: SIGTERM (KillSignal=$(unit_value KillSignal)), then ExecStopPost"
  kill -TERM "$edge_pid"
  wait_gone "$edge_pid" "${timeout_stop%s}" || fail "the edge did not stop within TimeoutStopSec=$timeout_stop"
  grep -q "dce-edge: stopped" "$work/run-1.log" || fail "no clean stop: $(tail -n 5 "$work/run-1.log")"
  # shellcheck disable=SC2086
  as_unit $exec_stop_post >"$work/stop-post.out" 2>&1 || fail "ExecStopPost failed: $(cat "$work/stop-post.out")"
  edge_pid=""
  if ip -n "$ns_edge" -d link show "$iface" | grep -q "prog/xdp"; then fail "XDP still attached after the stop"; fi
  [ -z "$(find /sys/fs/bpf/dce-edge -mindepth 1)" ] || fail "pins left after the stop: $(find /sys/fs/bpf/dce-edge -mindepth 1)"
  [ ! -e /run/dce-edge/control.sock ] || fail "control socket left after the stop"
  grep -q '"stop"' /var/log/dce-edge/events.jsonl || fail "no stop event"
  ok "stopped cleanly: XDP detached, pins and control socket removed, stop event written"

  if [ -s "$work/strace.out" ]; then
    step "system calls against SystemCallFilter=$(unit_value SystemCallFilter)"
    expand() {
      systemd-analyze syscall-filter "$1" </dev/null | tail -n +2 |
        sed -n 's/^    \([-@a-z0-9_]*\)$/\1/p' |
        while read -r x; do case $x in @*) expand "$x" ;; *) echo "$x" ;; esac; done
    }
    for f in $(unit_value SystemCallFilter); do
      case $f in @*) expand "$f" ;; *) echo "$f" ;; esac
    done | sort -u >"$work/allowed"
    # Calls after setpriv handed over to dce-edge (its execve and on).
    awk '/execve\("\/usr\/bin\/dce-edge"/{on=1} on { sub(/^[0-9]+ +/, ""); if (match($0, /^[a-z_0-9]+\(/)) print substr($0, 1, RLENGTH-1) }' \
      "$work/strace.out" | sort -u >"$work/made"
    denied=$(grep -vxF -f "$work/allowed" "$work/made" || true)
    [ -z "$denied" ] || fail "system calls the unit's filter denies: $denied"
    ok "$(wc -l <"$work/made") distinct calls, all allowed"
    families=$(awk '/execve\("\/usr\/bin\/dce-edge"/{on=1} on' "$work/strace.out" |
      grep -o 'socket(AF_[A-Z0-9]*' | sed 's/socket(//' | sort -u | tr '\n' ' ')
    for f in $families; do
      case " $(unit_value RestrictAddressFamilies) " in *" $f "*) ;; *) fail "socket family $f is not in RestrictAddressFamilies" ;; esac
    done
    ok "socket families $families- all in RestrictAddressFamilies"
  else
    echo "   (no strace: system calls not checked)"
  fi

  step "crash: SIGKILL, then ExecStopPost"
  start_edge "$work/run-2.log" ""
  kill -KILL "$edge_pid"
  wait_gone "$edge_pid" 10 || fail "SIGKILL did not end the edge"
  edge_pid=""
  sleep 1
  if ip -n "$ns_edge" -d link show "$iface" | grep -q "prog/xdp"; then fail "XDP still attached after SIGKILL"; fi
  left=$(find /sys/fs/bpf/dce-edge -mindepth 2 -maxdepth 2 -name "$iface")
  [ -n "$left" ] || fail "expected the killed edge's pins to be left for ExecStopPost"
  # shellcheck disable=SC2086
  as_unit $exec_stop_post >"$work/stop-post.out" 2>&1 || fail "ExecStopPost failed: $(cat "$work/stop-post.out")"
  [ -z "$(find /sys/fs/bpf/dce-edge -mindepth 1)" ] || fail "ExecStopPost left pins: $(find /sys/fs/bpf/dce-edge -mindepth 1)"
  [ ! -e /run/dce-edge/control.sock ] || fail "ExecStopPost left the control socket"
  ok "XDP went with the process; ExecStopPost: $(tr '\n' ';' <"$work/stop-post.out")"
  exit 0
fi

# ---------------------------------------------------------------------------
# The outer part.
# ---------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root (it installs the package)"
deb=$(ls target/debian/dce-edge_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "no target/debian/dce-edge_*.deb: run ./scripts/package.sh first"
for tool in dpkg systemd-analyze man promtool logrotate capsh setpriv nsenter unshare python3 ip; do
  command -v "$tool" >/dev/null || fail "$tool is missing (./scripts/setup.sh installs it)"
done
if dpkg-query -W -f='${Status}' dce-edge 2>/dev/null | grep -q "ok installed"; then
  echo "check-package: dce-edge is installed already; it is replaced and purged at the end"
fi
prometheus_before=$(pgrep -x prometheus || true)
# The lab mounts a private tmpfs over the unit's RuntimeDirectory; its mount
# point is made here when missing, and removed again.
made_rundir=""
if [ ! -d /run/dce-edge ]; then
  mkdir -m 0700 /run/dce-edge
  made_rundir=1
fi

suffix=$$
ns_edge="pkc${suffix}e" ns_peer="pkc${suffix}p" iface="pkc${suffix}"
cleanup() {
  stop_lab_edges "$ns_edge"
  rmdir "/run/dce-edge-check.$$" 2>/dev/null || true
  if [ -n "$made_rundir" ]; then rmdir /run/dce-edge 2>/dev/null || true; fi
  ip netns del "$ns_edge" 2>/dev/null || true
  ip netns del "$ns_peer" 2>/dev/null || true
  if dpkg-query -W -f='${Status}' dce-edge 2>/dev/null | grep -q "installed"; then
    dpkg --purge dce-edge >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "install: dpkg -i $(basename "$deb")"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" </dev/null >/dev/null || fail "dpkg -i failed"
ok "$(dpkg-query -W -f='${Package} ${Version} ${Status}' dce-edge)"

step "binaries, manual pages, completions"
ok "$(dce-edge --version), $(dce-loadgen --version)"
for page in dce-edge dce-edge-run dce-edge-routes-reload dce-edge-events-reopen dce-loadgen; do
  man -w "$page" >/dev/null || fail "man -w $page finds nothing"
done
ok "man -w dce-edge: $(man -w dce-edge)"
for f in /usr/share/bash-completion/completions/dce-edge /usr/share/zsh/vendor-completions/_dce-edge \
  /usr/share/fish/vendor_completions.d/dce-edge.fish /usr/share/bash-completion/completions/dce-loadgen; do
  [ -s "$f" ] || fail "missing $f"
done
ok "bash, zsh and fish completions"

step "files, owners and modes"
getent passwd dce-edge >/dev/null || fail "no dce-edge user"
[ "$(stat -c '%U:%G %a' /var/log/dce-edge)" = "dce-edge:dce-edge 750" ] || fail "/var/log/dce-edge is $(stat -c '%U:%G %a' /var/log/dce-edge)"
for f in edge.toml groups.toml prefixes.csv; do
  [ "$(stat -c '%U:%G %a' /etc/dce-edge/$f)" = "root:dce-edge 640" ] || fail "/etc/dce-edge/$f is $(stat -c '%U:%G %a' /etc/dce-edge/$f)"
done
dpkg-query --control-show dce-edge conffiles | grep -qx "$CONF" || fail "$CONF is not a conffile"
for f in /usr/share/dce-edge/alerts/dce-edge.rules.yml /usr/share/doc/dce-edge/runbooks/edge-down.md \
  /usr/share/doc/dce-edge/operations.md /usr/share/dce-edge/profiles/small-edge.toml /etc/logrotate.d/dce-edge "$UNIT"; do
  [ -s "$f" ] || fail "missing $f"
done
ok "user dce-edge; /var/log/dce-edge 750; /etc/dce-edge/* root:dce-edge 640 conffiles; rules, runbooks, profiles, unit"

step "the default configuration is safe and valid"
grep -q '^mode = "socket"' "$CONF" || fail "the default configuration is not in socket mode"
if grep -qE '^(interface|\[filter\])' "$CONF"; then fail "the default configuration names an interface or a filter"; fi
dce-edge run --config "$CONF" --check || fail "the default configuration does not check"
dce-edge profile list --profiles-dir /usr/share/dce-edge/profiles >/dev/null || fail "the packaged profiles do not load"
ok "socket mode, no interface, no [filter]: never attaches XDP; packaged profiles load"

step "systemd-analyze verify and security"
out=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complains: $out"
ok "verify: no complaint"
systemd-analyze security --offline=yes --threshold=30 "$UNIT" >"/tmp/check-package-security.$$" 2>&1 ||
  fail "exposure above 3.0: $(tail -n 1 "/tmp/check-package-security.$$")"
ok "security: $(tail -n 1 "/tmp/check-package-security.$$" | sed 's/^→ //')"
rm -f "/tmp/check-package-security.$$"

step "alert rules: promtool check and test (installed copies)"
promtool check rules /usr/share/dce-edge/alerts/dce-edge.rules.yml >/dev/null || fail "promtool check rules"
(cd /usr/share/dce-edge/alerts && promtool test rules dce-edge.rules.test.yml >/dev/null) || fail "promtool test rules"
ok "8 rules; their unit tests pass"

step "logrotate snippet"
logrotate -d /etc/logrotate.d/dce-edge >/dev/null 2>&1 || fail "logrotate -d: $(logrotate -d /etc/logrotate.d/dce-edge 2>&1 | tail -n 3)"
ok "logrotate -d accepts it"

step "lab: namespaces $ns_edge, $ns_peer; veth $iface"
ip netns add "$ns_edge"
ip netns add "$ns_peer"
ip link add "$iface" netns "$ns_edge" numtxqueues 1 numrxqueues 1 type veth \
  peer name "${iface}p" netns "$ns_peer" numtxqueues 1 numrxqueues 1
ip -n "$ns_edge" addr add 198.18.201.1/24 dev "$iface"
ip -n "$ns_peer" addr add 198.18.201.2/24 dev "${iface}p"
for ns in "$ns_edge" "$ns_peer"; do ip -n "$ns" link set lo up; done
ip -n "$ns_edge" link set "$iface" up
ip -n "$ns_peer" link set "${iface}p" up
ns_inode=$(stat -L -c %i "/run/netns/$ns_edge")
etc_rw=/run/dce-edge-check.$$
unshare -m --propagation private bash "$root/scripts/check-package.sh" --inside "$ns_edge" "$ns_peer" "$iface" /tmp "$etc_rw" ||
  fail "the lab run failed"
rmdir "$etc_rw"
if [ -n "$made_rundir" ]; then rmdir /run/dce-edge; fi

step "remove and purge"
DEBIAN_FRONTEND=noninteractive dpkg -r dce-edge </dev/null >/dev/null || fail "dpkg -r failed"
[ ! -e /usr/bin/dce-edge ] || fail "/usr/bin/dce-edge left after dpkg -r"
[ -f "$CONF" ] || fail "dpkg -r removed the configuration (a conffile stays until purge)"
DEBIAN_FRONTEND=noninteractive dpkg --purge dce-edge </dev/null >/dev/null || fail "dpkg --purge failed"
for p in /etc/dce-edge /var/log/dce-edge /usr/share/dce-edge /usr/share/doc/dce-edge "$UNIT" /etc/logrotate.d/dce-edge; do
  [ ! -e "$p" ] || fail "$p left after purge"
done
ok "binaries gone after remove, configuration kept; everything gone after purge"

step "nothing left behind"
ip netns del "$ns_edge"
ip netns del "$ns_peer"
if ip netns list | grep -q "^pkc${suffix}"; then fail "namespaces left"; fi
if ip link show "$iface" >/dev/null 2>&1; then fail "veth $iface left"; fi
[ ! -e "/sys/fs/bpf/dce-edge/netns-$ns_inode" ] || fail "pins of the lab namespace left in /sys/fs/bpf/dce-edge/netns-$ns_inode"
if [ -z "$prometheus_before" ] && pgrep -x prometheus >/dev/null; then fail "a prometheus server is running"; fi
ok "no namespace, veth, pin folder or XDP program of this check; no prometheus server running"
echo "check-package: all checks passed"
