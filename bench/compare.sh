#!/usr/bin/env bash
# bench/compare.sh: client-server against peer-to-peer, measured on one
# machine with the textbook lower bounds beside the measurements.
#
# Each host (tracker, origin, downloaders 1..N) gets its own network
# namespace, joined by a veth link to a bridge that lives in a namespace of
# its own. Every host's upload is capped with a tbf qdisc on its veth
# (set_refused_tries says what that asks of the kernel); a download cap,
# when asked for, is a tbf qdisc on the bridge's port facing the
# downloader. For each N the same file is distributed three ways on the
# same hosts and caps: shoal --mode p2p, shoal --mode cs, and a stock HTTP
# server on the origin with curl on every downloader.
#
# Completion times are on one clock: the script's monotonic clock
# (/proc/uptime) marks a common start T0 and each downloader's launch; a
# downloader's completion is its launch offset plus the duration it reports
# itself (shoal's `complete` event "seconds", curl's time_total).
#
# Everything made here (namespaces, veth links, the bridge, qdiscs,
# processes, temp files) is removed on exit, also after ^C or a failure.
# Names carry the prefix shoalc-$$ so that parallel runs never collide and
# leftovers of a killed run can be found (--clean-stale).
#
# Run `bench/compare.sh --help` for the flags.
set -euo pipefail
cd "$(dirname "$0")/.."

prog=compare
usage() {
  cat <<'EOF'
usage: bench/compare.sh [options]

Distributes one file of random data from an origin to N downloaders three
ways (shoal p2p, shoal cs, HTTP) and compares the distribution time D with
the client-server and peer-to-peer lower bounds. Needs root (network
namespaces, tc), unless --loopback.

  --n "LIST"          downloader counts ("1 2 4 8 16")
  --reps R            repetitions of every system and N (3)
  --size S            file size; suffixes K M G are powers of 1024 (64M)
  --origin-up RATE    origin upload cap, tc units: kbit mbit gbit (40mbit)
  --peer-up RATE      upload cap of each downloader (10mbit)
  --peer-down RATE    download cap of each downloader (none)
  --hetero            half the downloaders (the even-numbered ones) upload
                      at a quarter of --peer-up
  --origin-leaves     shoal p2p only: the origin quits as soon as one full
                      copy exists in the swarm (the first downloader is
                      complete); the downloaders keep seeding
  --tracker-stop FRACTION
                      shoal p2p only: the tracker is killed (SIGKILL, by
                      its PID) once the downloaders together hold FRACTION
                      (0.01 to 0.99) of the N copies, as their progress
                      events report it; the peers log at info level and
                      tracker_stop.csv counts, per downloader, the sessions
                      opened and lost after the stop and the dials that
                      peer exchange and the remembered tracker replies made
  --loopback          no namespaces: everything on 127.0.0.1 with shoal's
                      own --upload-rate/--download-rate; HTTP is skipped
  --systems "LIST"    which systems to run, of "p2p cs http" (all)
  --mtu BYTES         MTU of every veth link (1500)
  --cc NAME           TCP congestion control in every namespace, one of
                      /proc/sys/net/ipv4/tcp_available_congestion_control
                      (cubic, Debian's default, when the kernel has it;
                      "host": what new namespaces get from this kernel,
                      which may be another, such as bbr)
  --out DIR           results folder (build/compare)
  --bin DIR           where shoal-peer and shoal-tracker are ($SHOAL_BIN,
                      else build/bin)
  --keep-logs         keep each shoal run's event logs (the --json lines and
                      stderr of every process) under DIR/logs/SYSTEM-nN-rR/
  --check             the compare-quick checks: every copy identical, shoal
                      p2p D below shoal cs D at N = 4, CSV and plots
                      written; "skipped: ..." and status 0 when network
                      namespaces cannot be made
  --clean-stale       remove namespaces left by killed runs of this script
                      (prefix shoalc-PID- with PID no longer running), exit
  --arrivals RATE     a flash crowd with churn, shoal p2p only: the N
                      downloaders of --n (one N) arrive as a Poisson
                      process of RATE a second (0.001 to 100) instead of
                      all at once, and the run is set beside the fluid
                      model of the swarm (build/bench/fluidmodel, next to
                      --bin's bin/); --reps defaults to 1 here. Outputs
                      churn.csv, churn_ts.csv, churn_model.csv,
                      churn.md and churn.png instead of the study's
  --linger SECONDS    with --arrivals: a downloader seeds this long after
                      it completes (0 to 3600), then is stopped by its
                      PID (default: it stays until the run ends)
  --seed N            with --arrivals: the arrival times' random stream;
                      repetition r uses N + r - 1 (1)
  -h, --help

Outputs in DIR: runs.csv (a row per run and host), cpu.csv (a row per run:
the machine's CPU use and each process's, machine-bound runs flagged),
summary.csv, summary.md,
settings.txt, d_vs_n.png, ratio.png, cdf.png (and the gnuplot data under
DIR/plot/).
EOF
}

say() { printf '%s: %s\n' "$prog" "$*"; }
warn() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 1
}
usage_err() {
  printf '%s: %s (see --help)\n' "$prog" "$*" >&2
  exit 2
}

# ---------------------------------------------------------------------------
# Flags.
opt_n="1 2 4 8 16"
opt_reps=3
opt_size=64M
opt_origin_up=40mbit
opt_peer_up=10mbit
opt_peer_down=""
opt_hetero=0
opt_origin_leaves=0
opt_tracker_stop=""
opt_loopback=0
opt_systems="p2p cs http"
opt_mtu=1500
opt_cc=cubic
opt_cc_set=0
opt_out=build/compare
opt_bin=${SHOAL_BIN:-build/bin}
opt_check=0
opt_keep_logs=0
opt_clean_stale=0
opt_arrivals=""
opt_linger=""
opt_seed=1
opt_reps_set=0
opt_systems_set=0

need_arg() { [ "$#" -ge 2 ] || usage_err "$1 needs a value"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
  --n) need_arg "$@"; opt_n=$2; shift 2 ;;
  --reps) need_arg "$@"; opt_reps=$2; opt_reps_set=1; shift 2 ;;
  --size) need_arg "$@"; opt_size=$2; shift 2 ;;
  --origin-up) need_arg "$@"; opt_origin_up=$2; shift 2 ;;
  --peer-up) need_arg "$@"; opt_peer_up=$2; shift 2 ;;
  --peer-down) need_arg "$@"; opt_peer_down=$2; shift 2 ;;
  --hetero) opt_hetero=1; shift ;;
  --origin-leaves) opt_origin_leaves=1; shift ;;
  --tracker-stop) need_arg "$@"; opt_tracker_stop=$2; shift 2 ;;
  --loopback) opt_loopback=1; shift ;;
  --systems) need_arg "$@"; opt_systems=$2; opt_systems_set=1; shift 2 ;;
  --mtu) need_arg "$@"; opt_mtu=$2; shift 2 ;;
  --cc) need_arg "$@"; opt_cc=$2; opt_cc_set=1; shift 2 ;;
  --out) need_arg "$@"; opt_out=$2; shift 2 ;;
  --bin) need_arg "$@"; opt_bin=$2; shift 2 ;;
  --check) opt_check=1; shift ;;
  --keep-logs) opt_keep_logs=1; shift ;;
  --clean-stale) opt_clean_stale=1; shift ;;
  --arrivals) need_arg "$@"; opt_arrivals=$2; shift 2 ;;
  --linger) need_arg "$@"; opt_linger=$2; shift 2 ;;
  --seed) need_arg "$@"; opt_seed=$2; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) usage_err "unknown option '$1'" ;;
  esac
done

# A rate in tc's units (bit kbit mbit gbit, decimal; a bare number is bits)
# to whole bits a second, or nothing when it does not parse.
rate_bits() {
  awk -v r="$1" 'BEGIN {
    if (match(r, /^[0-9]+(\.[0-9]+)?/) == 0) exit 1
    v = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
    if (u == "" || u == "bit") m = 1
    else if (u == "kbit") m = 1e3
    else if (u == "mbit") m = 1e6
    else if (u == "gbit") m = 1e9
    else exit 1
    b = v * m
    if (b < 8000 || b > 100e9) exit 1
    printf "%d\n", b
  }'
}

# A size with K M G (powers of 1024, optional "iB") to bytes.
size_bytes() {
  awk -v s="$1" 'BEGIN {
    if (match(s, /^[0-9]+/) == 0) exit 1
    v = substr(s, 1, RLENGTH); u = toupper(substr(s, RLENGTH + 1))
    sub(/I?B$/, "", u)
    if (u == "") m = 1
    else if (u == "K") m = 1024
    else if (u == "M") m = 1048576
    else if (u == "G") m = 1073741824
    else exit 1
    b = v * m
    if (b < 1 || b > 16 * 1073741824) exit 1
    printf "%d\n", b
  }'
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && [ "${#1}" -le 6 ]; }

# ---------------------------------------------------------------------------
# Stale leftovers of killed runs (only with --clean-stale).
clean_stale() {
  local ns pid n=0
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
    [[ $ns =~ ^shoalc-([0-9]+)- ]] || continue
    pid=${BASH_REMATCH[1]}
    if kill -0 "$pid" 2>/dev/null; then continue; fi
    ip netns del "$ns" 2>/dev/null && n=$((n + 1)) || warn "could not remove $ns"
  done
  say "removed $n stale namespace(s)"
}
if [ "$opt_clean_stale" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "--clean-stale needs root"
  clean_stale
  exit 0
fi

size=$(size_bytes "$opt_size") || usage_err "--size: '$opt_size' is not a size such as 64M"
origin_bits=$(rate_bits "$opt_origin_up") || usage_err "--origin-up: '$opt_origin_up' is not a rate such as 40mbit"
peer_bits=$(rate_bits "$opt_peer_up") || usage_err "--peer-up: '$opt_peer_up' is not a rate such as 10mbit"
down_bits=0
if [ -n "$opt_peer_down" ]; then
  down_bits=$(rate_bits "$opt_peer_down") || usage_err "--peer-down: '$opt_peer_down' is not a rate such as 20mbit"
fi
if [ -n "$opt_tracker_stop" ]; then
  [[ $opt_tracker_stop =~ ^0?\.[0-9]{1,3}$ ]] &&
    awk -v f="$opt_tracker_stop" 'BEGIN { exit !(f >= 0.01 && f <= 0.99) }' ||
    usage_err "--tracker-stop: '$opt_tracker_stop' is not a fraction from 0.01 to 0.99 such as 0.5"
fi
is_uint "$opt_reps" && [ "$opt_reps" -ge 1 ] && [ "$opt_reps" -le 100 ] ||
  usage_err "--reps must be 1 to 100"
is_uint "$opt_mtu" && [ "$opt_mtu" -ge 576 ] && [ "$opt_mtu" -le 65535 ] ||
  usage_err "--mtu must be 576 to 65535"
[[ $opt_cc =~ ^[a-z0-9_]{1,15}$ ]] ||
  usage_err "--cc: '$opt_cc' is not a congestion control name such as cubic or bbr"
if [ "$opt_cc" != host ] &&
  ! grep -qw -- "$opt_cc" /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null; then
  cc_have=$(cat /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null)
  [ "$opt_cc_set" = 1 ] &&
    usage_err "--cc: '$opt_cc' is not a congestion control this kernel has (${cc_have:-none listed}); load its module (modprobe tcp_$opt_cc) or pass --cc host"
  # The default only: a kernel without cubic keeps its own, and says so.
  warn "this kernel has no $opt_cc (${cc_have:-none listed}), so the namespaces keep its default"
  opt_cc=host
fi
# --arrivals: one N, shoal p2p alone, none of the other scenarios.
if [ -n "$opt_arrivals" ]; then
  [[ $opt_arrivals =~ ^[0-9]{1,3}(\.[0-9]{1,6})?$ ]] &&
    awk -v a="$opt_arrivals" 'BEGIN { exit !(a >= 0.001 && a <= 100) }' ||
    usage_err "--arrivals: '$opt_arrivals' is not a rate from 0.001 to 100 a second such as 0.5"
  if [ -n "$opt_linger" ]; then
    [[ $opt_linger =~ ^[0-9]{1,4}(\.[0-9]{1,3})?$ ]] &&
      awk -v l="$opt_linger" 'BEGIN { exit !(l <= 3600) }' ||
      usage_err "--linger: '$opt_linger' is not a number of seconds from 0 to 3600"
  fi
  is_uint "$opt_seed" || usage_err "--seed: '$opt_seed' is not a whole number up to 999999"
  [ "$(wc -w <<<"$opt_n")" = 1 ] || usage_err "--arrivals takes one downloader count in --n"
  if [ "$opt_systems_set" = 1 ] && [ "$(xargs <<<"$opt_systems")" != p2p ]; then
    usage_err "--arrivals runs shoal p2p only (--systems p2p)"
  fi
  opt_systems=p2p
  [ "$opt_reps_set" = 1 ] || opt_reps=1
  [ -z "$opt_tracker_stop" ] && [ "$opt_origin_leaves" = 0 ] && [ "$opt_check" = 0 ] ||
    usage_err "--arrivals does not combine with --tracker-stop, --origin-leaves or --check"
else
  [ -z "$opt_linger" ] || usage_err "--linger needs --arrivals"
  [ "$opt_seed" = 1 ] || usage_err "--seed needs --arrivals"
fi
ns_list=()
for n in $opt_n; do
  is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le 200 ] ||
    usage_err "--n: '$n' is not a downloader count from 1 to 200"
  ns_list+=("$n")
done
[ "${#ns_list[@]}" -gt 0 ] || usage_err "--n is empty"
max_n=$(printf '%s\n' "${ns_list[@]}" | sort -n | tail -n 1)
systems=()
for s in $opt_systems; do
  case "$s" in
  p2p | cs) systems+=("$s") ;;
  http)
    if [ "$opt_loopback" = 1 ]; then
      say "HTTP baseline skipped: --loopback has no per-host caps for a stock server"
    else
      systems+=("$s")
    fi
    ;;
  *) usage_err "--systems: '$s' is not one of p2p cs http" ;;
  esac
done
[ "${#systems[@]}" -gt 0 ] || usage_err "--systems leaves nothing to run"
has_system() {
  local s
  for s in "${systems[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# ---------------------------------------------------------------------------
# Root, tools, namespaces. --check turns "cannot make namespaces" into a skip.
skip_or_die() {
  if [ "$opt_check" = 1 ]; then
    say "skipped: $*"
    exit 0
  fi
  die "$*"
}

if [ "$opt_loopback" = 0 ] && [ "$(id -u)" != 0 ]; then
  skip_or_die "network namespaces and tc need root; run as root (sudo $0 ...), or add --loopback to use shoal's own rate limits on 127.0.0.1"
fi

missing=()
need_tool() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_tool gnuplot gnuplot-nox
need_tool cmp diffutils
need_tool awk gawk
if [ "$opt_loopback" = 0 ]; then
  need_tool ip iproute2
  need_tool tc iproute2
fi
http_server=""
if has_system http; then
  need_tool curl curl
  if command -v lighttpd >/dev/null 2>&1; then
    http_server=lighttpd
  elif command -v busybox >/dev/null 2>&1 && busybox --list 2>/dev/null | grep -qx httpd; then
    http_server=busybox
  else
    missing+=(lighttpd)
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  die "missing tools; install them with: apt-get install -y ${missing[*]}"
fi
for exe in shoal-peer shoal-tracker; do
  [ -x "$opt_bin/$exe" ] || die "$opt_bin/$exe is missing (run make)"
done
bin=$(cd "$opt_bin" && pwd)
fluid_bin=""
if [ -n "$opt_arrivals" ]; then
  fluid_bin=$(cd "$bin/.." && pwd)/bench/fluidmodel
  [ -x "$fluid_bin" ] || die "$fluid_bin is missing (run make bench)"
fi

# ---------------------------------------------------------------------------
# State and cleanup. Everything made is recorded here and undone in reverse.
prefix="shoalc-$$"
work=""
declare -A live=()  # PID -> name, processes started and not yet reaped
made_ns=()          # namespaces, in the order made
made_qdisc=()       # "NS DEV"
made_link=()        # "NS DEV"

# wait_gone TENTHS PID...: waits up to TENTHS tenths of a second for the
# processes to end by themselves.
wait_gone() {
  local tenths=$1 pid left i
  shift
  for ((i = 0; i < tenths; i++)); do
    left=0
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then left=1; fi
    done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
}

# Sends TERM to the given PIDs, waits up to $1 tenths of a second for all to
# exit, then KILLs what is left; reaps all of them.
stop_pids() {
  local tenths=$1 pid
  shift
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait_gone "$tenths" "$@"
  for pid in "$@"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "live[$pid]"
  done
}

cleanup() {
  local rc=$? i entry
  trap - EXIT INT TERM
  set +e
  if [ "${#live[@]}" -gt 0 ]; then
    stop_pids 30 "${!live[@]}"
  fi
  for ((i = ${#made_qdisc[@]} - 1; i >= 0; i--)); do
    entry=${made_qdisc[$i]}
    tc -n "${entry% *}" qdisc del dev "${entry#* }" root 2>/dev/null
  done
  for ((i = ${#made_link[@]} - 1; i >= 0; i--)); do
    entry=${made_link[$i]}
    ip -n "${entry% *}" link del "${entry#* }" 2>/dev/null
  done
  for ((i = ${#made_ns[@]} - 1; i >= 0; i--)); do
    ip netns del "${made_ns[$i]}" 2>/dev/null ||
      warn "could not remove namespace ${made_ns[$i]}"
  done
  for entry in "${sysctl_saved[@]}"; do
    sysctl -q -w "$entry" >/dev/null 2>&1 ||
      warn "could not restore $entry"
  done
  if [ -n "$work" ]; then rm -rf "$work"; fi
  if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; then
    warn "stopped with status $rc; everything it made has been removed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work=$(mktemp -d "${TMPDIR:-/tmp}/$prefix-XXXXXX")

# The monotonic clock, in hundredths of a second, into $now (no fork).
now=0
clock() {
  local up _
  read -r up _ </proc/uptime
  now=$((10#${up/./}))
}

# Floating-point arithmetic.
calc() { awk "BEGIN { printf \"%.6f\n\", $1 }"; }

# ---------------------------------------------------------------------------
# The network.
net=10.201
tracker_addr=$net.0.2
origin_addr=$net.0.3
host_addr() { echo "$net.$((1 + ($1 - 1) / 250)).$((1 + ($1 - 1) % 250))"; }

# tbf needs a bucket of at least one packet and a few timer ticks of tokens.
tbf_args() {
  local bits=$1 burst
  burst=$((bits / 8 / 100))
  [ "$burst" -ge $((opt_mtu * 4)) ] || burst=$((opt_mtu * 4))
  [ "$burst" -ge 16384 ] || burst=16384
  echo "rate ${bits}bit burst $burst latency 50ms"
}

mk_ns() {
  ip netns add "$1" || die "could not create network namespace $1"
  made_ns+=("$1")
}

# A namespace other than the first may only choose one of
# net.ipv4.tcp_allowed_congestion_control, so cc_allow adds --cc's there for
# the run (restored on exit, as the neighbour table sizes are).
cc_allow() {
  local cur
  [ "$opt_cc" = host ] && return 0
  cur=$(sysctl -n net.ipv4.tcp_allowed_congestion_control 2>/dev/null) || return 0
  [[ " $cur " == *" $opt_cc "* ]] && return 0
  sysctl -q -w "net.ipv4.tcp_allowed_congestion_control=$cur $opt_cc" >/dev/null 2>&1 ||
    die "could not allow TCP congestion control $opt_cc in namespaces (net.ipv4.tcp_allowed_congestion_control is '$cur')"
  sysctl_saved+=("net.ipv4.tcp_allowed_congestion_control=$cur")
}
# The namespace's TCP congestion control (a per-namespace sysctl), unless
# --cc host: a new namespace otherwise takes whatever this kernel was built
# or booted with, which is not always Debian's cubic.
set_cc() {
  [ "$opt_cc" = host ] && return 0
  ip netns exec "$1" sysctl -q -w "net.ipv4.tcp_congestion_control=$opt_cc" >/dev/null ||
    die "could not set TCP congestion control $opt_cc in namespace $1"
}

# Every cap is a tbf queue on the sending host's own veth, so a packet the
# queue refuses is refused inside the sender's kernel, which TCP takes as
# local congestion, not loss. A connection whose whole first flight was
# refused has nothing in flight and no ACK to wake it; it tries again every
# 500 ms, and after net.ipv4.tcp_retries2 (15) refused tries, some 8 s, the
# kernel aborts it and answers the other side's next segment with a reset.
# 64 curls opening their connections to one HTTP server in the same
# instant send 64 initial windows of 10 segments (some 970 KB) into the
# origin's 300 KB queue, and at N = 64 the connections whose first flight
# found it full lose the free places, try after try, to those whose ACKs
# keep them sending: one of the 64 curls ended with "Connection reset by
# peer" in six of eight runs (issue 18). Behind a router's queue those packets
# would be dropped and sent again, and the kernel would go on retransmitting
# for its usual quarter of an hour; so each host here allows 100 refused
# tries, 50 s. The setting is per namespace; it also lengthens how long
# the kernel retransmits lost data before it gives up, to hours, which no
# run here reaches.
refused_tries=100
refused_tries_warned=0
set_refused_tries() {
  ip netns exec "$1" sysctl -q -w "net.ipv4.tcp_retries2=$refused_tries" >/dev/null 2>&1 && return 0
  [ "$refused_tries_warned" = 1 ] && return 0
  refused_tries_warned=1
  warn "could not set net.ipv4.tcp_retries2 in namespace $1; a connection a host's own queue keeps refusing is aborted after the kernel's default tries"
}

br_ns=$prefix-br
# add_host NAME ADDR UP_BITS DOWN_BITS
add_host() {
  local name=$1 addr=$2 up=$3 down=$4 ns=$prefix-$1
  mk_ns "$ns"
  ip -n "$ns" link set lo up
  set_cc "$ns"
  set_refused_tries "$ns"
  ip -n "$ns" link add eth0 mtu "$opt_mtu" type veth peer name "$name" \
    mtu "$opt_mtu" netns "$br_ns"
  made_link+=("$ns eth0")
  ip -n "$br_ns" link set "$name" master br0 up
  ip -n "$ns" addr add "$addr/16" dev eth0
  ip -n "$ns" link set eth0 up
  if [ "$up" -gt 0 ]; then
    # shellcheck disable=SC2046
    tc -n "$ns" qdisc add dev eth0 root tbf $(tbf_args "$up")
    made_qdisc+=("$ns eth0")
  fi
  if [ "$down" -gt 0 ]; then
    # shellcheck disable=SC2046
    tc -n "$br_ns" qdisc add dev "$name" root tbf $(tbf_args "$down")
    made_qdisc+=("$br_ns $name")
  fi
}

# Upload cap of downloader i in bits a second.
peer_up_bits() {
  if [ "$opt_hetero" = 1 ] && [ $(($1 % 2)) = 0 ]; then
    echo $((peer_bits / 4))
  else
    echo "$peer_bits"
  fi
}

# The kernel's ARP table is one for every namespace, and its limits
# (net.ipv4.neigh.default.gc_thresh1-3: 128, 512, 1024 by default) count
# the entries of all of them: N + 2 hosts that all talk to each other need
# about (N + 2)^2 entries, 4356 at N = 64. Past gc_thresh3 a host that
# lacks an entry cannot make one ("neighbor table overflow" in the kernel
# log) and never reaches the others; at N = 64 that cut 11 to 21 of the
# downloaders off from every peer (issue 18). The limits are raised for
# the run and put back on exit.
sysctl_saved=()
neigh_room() {
  local need=$(((max_n + 3) * (max_n + 3) * 2)) key cur want
  for key in gc_thresh1 gc_thresh2 gc_thresh3; do
    cur=$(sysctl -n "net.ipv4.neigh.default.$key" 2>/dev/null) || return 0
    case $key in
      gc_thresh1) want=$((need / 4)) ;;
      gc_thresh2) want=$((need / 2)) ;;
      *) want=$need ;;
    esac
    [ "$cur" -lt "$want" ] || continue
    if sysctl -q -w "net.ipv4.neigh.default.$key=$want" >/dev/null 2>&1; then
      sysctl_saved+=("net.ipv4.neigh.default.$key=$cur")
    else
      warn "net.ipv4.neigh.default.$key is $cur, below the $want this N needs; some hosts may not reach each other"
    fi
  done
}

net_up() {
  local i
  if ! ip netns add "$br_ns" 2>"$work/netns.err"; then
    skip_or_die "cannot create network namespaces ($(head -n 1 "$work/netns.err")); run as root on a kernel with network namespaces, or use --loopback"
  fi
  made_ns+=("$br_ns")
  neigh_room
  cc_allow
  ip -n "$br_ns" link add br0 type bridge
  made_link+=("$br_ns br0")
  ip -n "$br_ns" link set br0 up
  add_host tr "$tracker_addr" 0 0
  add_host or "$origin_addr" "$origin_bits" 0
  for ((i = 1; i <= max_n; i++)); do
    add_host "d$i" "$(host_addr "$i")" "$(peer_up_bits "$i")" "$down_bits"
  done
}

# Runs a command on host $1 ("tr", "or", "dN") in the background, output to
# $2.out and $2.err; its PID is in $bg_pid. In a namespace `ip netns exec`
# execs the command itself, so the PID is the command's.
bg_pid=0
start_on() {
  local host=$1 base=$2
  shift 2
  if [ "$opt_loopback" = 1 ]; then
    "$@" >"$base.out" 2>"$base.err" 9>&- &
  else
    ip netns exec "$prefix-$host" "$@" >"$base.out" 2>"$base.err" 9>&- &
  fi
  bg_pid=$!
  live[$bg_pid]=$host
}
run_on() {
  local host=$1
  shift
  if [ "$opt_loopback" = 1 ]; then "$@"; else ip netns exec "$prefix-$host" "$@"; fi
}

# The start line. Downloaders are started parked on a FIFO (a small sh
# reads from it, then execs the real command) and let go together when the
# script closes its end, so their slow start-up (ip netns exec mounts a
# fresh /sys) is not part of D. The script holds the FIFO open read-write on
# fd 9 (so that opening it never blocks); children never inherit fd 9.
gate=""
gate_open() {
  gate=$1
  mkfifo "$gate"
  exec 9<>"$gate"
}
# start_gated HOST BASE CMD...
start_gated() {
  local host=$1 base=$2
  shift 2
  # shellcheck disable=SC2016
  start_on "$host" "$base" sh -c 'read -r x <"$0" || :; exec "$@"' "$gate" "$@"
}
# gate_release PID...: waits (at most 30 s) until every PID reads the FIFO,
# notes the time in $t0 and opens the gate. Status 1 when one is not parked.
t0=0
gate_release() {
  local pid i parked=0
  for ((i = 0; i < 600; i++)); do
    parked=1
    for pid in "$@"; do
      [ "/proc/$pid/fd/0" -ef "$gate" ] && continue
      parked=0
      kill -0 "$pid" 2>/dev/null || break 2
    done
    [ "$parked" = 1 ] && break
    sleep 0.05
  done
  clock
  t0=$now
  exec 9>&-
  [ "$parked" = 1 ]
}

# CPU use, so that a figure never blames shoal for the test bed. Every
# host shares this machine's CPUs: cpu_machine prints the ticks the
# machine spent busy and in all since boot (/proc/stat, all CPUs), and
# cpu_ticks PID the ticks a process spent (utime + stime, /proc/PID/stat),
# 0 once it is gone. A run whose machine was busy for at least
# MACHINE_BOUND of its CPUs' time, or one of whose shoal processes (the
# origin or a downloader) kept one CPU that busy, is flagged
# "machine-bound" in cpu.csv, in the run's line and in summary.md: its D
# measures the test bed too. For HTTP the origin is the web server; each
# curl has exited by then and counts 0.
# The share is an average over the whole run, whose start and end have
# fewer peers at work: 85% on average means every CPU was busy through the
# middle of it (N = 64 in issue 18's study: 89%).
MACHINE_BOUND=0.85
cpu_machine() {
  awk '$1 == "cpu" { idle = $5 + $6; t = 0; for (i = 2; i <= 9; i++) t += $i; print t - idle, t; exit }' /proc/stat
}
cpu_ticks() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  st=${st##*) }
  awk '{ print $12 + $13 }' <<<"$st"
}
# cpu_record SYSTEM N REP M0 M1 ORIGIN_PID TRACKER_PID DOWNLOADER...:
# a row of cpu.csv from the machine's counters at the start (M0) and the
# end (M1) of the run and each process's ticks now (all still running); a
# DOWNLOADER given as =TICKS is one that left the run, with the ticks it
# had spent when it was told to leave.
cpu_record() {
  local system=$1 n=$2 rep=$3 m0=$4 m1=$5 opid=$6 tpid=$7 pid sum=0 most=0 t hz cpus
  shift 7
  for pid in "$@"; do
    if [ "${pid:0:1}" = = ]; then t=${pid:1}; else t=$(cpu_ticks "$pid"); fi
    sum=$((sum + t))
    [ "$t" -gt "$most" ] && most=$t
  done
  hz=$(getconf CLK_TCK)
  cpus=$(nproc)
  awk -v s="$system" -v n="$n" -v r="$rep" -v m0="$m0" -v m1="$m1" \
    -v o="$(cpu_ticks "$opid")" -v tr="$(cpu_ticks "$tpid")" -v d="$sum" \
    -v most="$most" -v hz="$hz" -v cpus="$cpus" -v lim="$MACHINE_BOUND" '
    BEGIN {
      split(m0, a, " "); split(m1, b, " ")
      busy = b[1] - a[1]; all = b[2] - a[2]
      f = all > 0 ? busy / all : 0
      secs = all / hz / cpus
      printf "%s,%s,%s,%.2f,%d,%.3f,%.2f,%.2f,%.2f,%.2f,%d\n", s, n, r, secs,
        cpus, f, o / hz, tr / hz, d / hz, most / hz,
        (f >= lim || (secs > 0 && (o > most ? o : most) / hz / secs >= lim) ? 1 : 0)
    }' >>"$cpu_csv"
  tail -n 1 "$cpu_csv" | awk -F, '{
    printf "%s", "machine busy " int(100 * $6 + 0.5) "% of " $5 " CPUs; CPU s: origin " $7 ", tracker " $8 ", downloaders " $9 " (at most " $10 " each)"
    if ($11 == 1) printf "%s", "  MACHINE-BOUND"
    print ""
  }'
}

# host_lost N WATCH_ORIGIN: fails the run and returns 0 when one of
# downloaders 1..N that is not complete (the caller's got, dl_pids) has
# exited, or, with WATCH_ORIGIN 1, the origin (origin_pid); else returns 1.
host_lost() {
  local n=$1 watch_origin=$2 i
  for ((i = 1; i <= n; i++)); do
    [ -n "${got[$i]:-}" ] && continue
    if ! kill -0 "${dl_pids[$i]}" 2>/dev/null; then
      tail_of "$r/d$i.err"
      fail_run "downloader $i exited before it was complete"
      return 0
    fi
  done
  if [ "$watch_origin" = 1 ] && ! kill -0 "$origin_pid" 2>/dev/null; then
    tail_of "$r/origin.err"
    fail_run "the origin exited during the run"
    return 0
  fi
  return 1
}

# Last lines of a file, for a failure message.
tail_of() { if [ -s "$1" ]; then tail -n 3 "$1" | sed 's/^/    /' >&2; fi; }

# A number after "key": in the last line of file $1 with event $2.
json_num() {
  { grep -F "\"event\":\"$2\"" "$1" 2>/dev/null || true; } | tail -n 1 |
    { grep -o "\"$3\":[0-9.eE+-]*" || true; } | head -n 1 | cut -d: -f2
}

# ---------------------------------------------------------------------------
# Bounds, in seconds, for N downloaders.
# u_s: origin upload (bytes/s); u_i: downloader uploads; d_min: the download
# cap (infinite when none).
bound_cs() {
  awk -v F="$size" -v n="$1" -v us="$((origin_bits / 8))" -v d="$((down_bits / 8))" 'BEGIN {
    b = n * F / us; if (d > 0 && F / d > b) b = F / d; printf "%.6f\n", b }'
}
bound_p2p() {
  local i sum=0
  for ((i = 1; i <= $1; i++)); do sum=$((sum + $(peer_up_bits "$i") / 8)); done
  awk -v F="$size" -v n="$1" -v us="$((origin_bits / 8))" -v sum="$sum" \
    -v d="$((down_bits / 8))" 'BEGIN {
    b = F / us; if (d > 0 && F / d > b) b = F / d
    c = n * F / (us + sum); if (c > b) b = c; printf "%.6f\n", b }'
}
sum_caps() {
  local i sum=$((origin_bits / 8))
  for ((i = 1; i <= $1; i++)); do sum=$((sum + $(peer_up_bits "$i") / 8)); done
  echo "$sum"
}

# ---------------------------------------------------------------------------
# One run. Sets run_status ("ok" or a reason) and appends to runs.csv and to
# the per-run table; never exits on a failed run, so the study goes on.
runs_csv=""
runs_tsv=""
run_status=ok
comp=()      # completion time of downloader i from T0, seconds
launch=()    # launch offset of downloader i from T0, seconds
up_b=()      # bytes uploaded by downloader i
down_b=()    # bytes downloaded by downloader i
same=()      # 1 when the copy is identical
origin_up=0

fail_run() {
  if [ "$run_status" = ok ]; then run_status=$1; fi
  warn "run failed: $1"
}

# Listen addresses and the tracker's address.
peer_listen() { if [ "$opt_loopback" = 1 ]; then echo 127.0.0.1:0; else echo 0.0.0.0:7000; fi; }

tracker_pid=0
tracker_at=""
tracker_key=""
start_tracker() {
  local r=$1 i listen=$tracker_addr:7070 per_addr=()
  # On loopback every peer connects from 127.0.0.1: lift the per-address
  # connection cap to the tracker's whole --max-connections (1024).
  if [ "$opt_loopback" = 1 ]; then
    listen=127.0.0.1:0
    per_addr=(--max-per-address 1024)
  fi
  start_on tr "$r/tracker" "$bin/shoal-tracker" --listen "$listen" \
    --key "$work/tracker.key" --interval 30 --rate 2000 --burst 4000 \
    "${per_addr[@]}" --log-level warn
  tracker_pid=$bg_pid
  tracker_at=""
  tracker_key=""
  for ((i = 0; i < 100; i++)); do
    tracker_at=$(sed -n 's/^listening on \([0-9.]*:[0-9]*\)$/\1/p' "$r/tracker.out" | head -n 1)
    tracker_key=$(sed -n 's/^tracker key \([a-z2-7]*\)$/\1/p' "$r/tracker.out")
    [ -n "$tracker_at" ] && [ -n "$tracker_key" ] && return 0
    kill -0 "$tracker_pid" 2>/dev/null || break
    sleep 0.1
  done
  tail_of "$r/tracker.err"
  fail_run "the tracker did not start within 10 s"
  return 1
}

# Completion, bytes and identity of each copy, then the rows.
record_run() {
  local system=$1 n=$2 rep=$3 i d=0 total_up caps bound util host
  local name
  name=$(basename "$file")
  for ((i = 1; i <= n; i++)); do
    same[$i]=0
    if [ -f "$r/d$i/$name" ] && cmp -s "$file" "$r/d$i/$name"; then
      same[$i]=1
    else
      fail_run "downloader $i: its copy is missing or differs from the original"
    fi
  done
  total_up=$origin_up
  for ((i = 1; i <= n; i++)); do total_up=$((total_up + ${up_b[$i]:-0})); done
  caps=$(sum_caps "$n")
  if [ "$system" = p2p ]; then bound=$(bound_p2p "$n"); else bound=$(bound_cs "$n"); fi
  if [ "$run_status" = ok ]; then
    d=$(printf '%s\n' "${comp[@]:1:n}" | sort -g | tail -n 1)
    util=$(calc "$total_up / ($d * $caps)")
  else
    d=NA
    util=NA
  fi
  printf '%s,%s,%s,origin,%s,,,,,%s,%s,%s\n' "$system" "$n" "$rep" \
    "$((origin_bits / 8))" "$origin_up" 0 "$run_status" >>"$runs_csv"
  for ((i = 1; i <= n; i++)); do
    host=d$i
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$system" "$n" "$rep" "$host" \
      "$(($(peer_up_bits "$i") / 8))" "$((down_bits / 8))" "${launch[$i]:-}" \
      "${comp[$i]:-}" "${same[$i]}" "${up_b[$i]:-0}" "${down_b[$i]:-0}" \
      "$run_status" >>"$runs_csv"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$n" "$rep" "$d" "$bound" \
    "$util" "$origin_up" "$total_up" "$run_status" >>"$runs_tsv"
  if [ "$run_status" = ok ]; then
    say "$(printf '%-4s N=%-3s rep %s: D %7.2f s  bound %7.2f s  D/bound %.3f  origin sent %s MiB' \
      "$system" "$n" "$rep" "$d" "$bound" "$(calc "$d / $bound")" \
      "$(calc "$origin_up / 1048576" | awk '{ printf "%.1f", $1 }')")"
    if [ -n "$cpu_line" ]; then say "     $cpu_line"; fi
  fi
  cpu_line=""
}

# held_bytes DIR N: the bytes downloaders 1..N hold, from the last
# progress event of each (the whole file once it reported "complete"),
# then the peers each last reported: "SUM P1 P2 ...".
held_bytes() {
  local dir=$1 n=$2 i files=()
  for ((i = 1; i <= n; i++)); do files+=("$dir/d$i.out"); done
  awk -v F="$size" '
    FNR == 1 { k++ }
    /"event":"progress"/ {
      if (match($0, /"have":[0-9]+/)) have[k] = substr($0, RSTART + 7, RLENGTH - 7) + 0
      if (match($0, /"peers":[0-9]+/)) peers[k] = substr($0, RSTART + 8, RLENGTH - 8) + 0
    }
    /"event":"complete"/ { done[k] = 1 }
    END {
      for (i = 1; i <= k; i++) { sum += done[i] ? F : have[i] + 0; list = list " " peers[i] + 0 }
      printf "%.0f%s\n", sum, list
    }' "${files[@]}" 2>/dev/null || echo 0
}

# record_stop N REP: one row per downloader in tracker_stop.csv: the peers
# it reported just before the stop, the sessions it opened before the stop
# and between the stop and the end of the run (the last completion), the
# sessions it lost between the stop and its own completion (a duplicate
# of a session it keeps is not lost), and its dials in that time to the
# addresses of peer-exchange records and to peers the tracker had named
# before (the two ways a downloader finds peers with no tracker). Uses the
# caller's $r, $stop_at, $end_at, $stop_peers, $stop_s and $stop_held.
record_stop() {
  local n=$1 rep=$2 i before after
  for ((i = 1; i <= n; i++)); do
    before=$(head -c "${stop_at[i]}" "$r/d$i.err")
    after=$(head -c "${end_at[i]}" "$r/d$i.err" | tail -c "+$((stop_at[i] + 1))")
    printf 'p2p,%s,%s,%s,%s,d%s,%s,%s,%s,%s,%s,%s,%s\n' "$n" "$rep" "$opt_tracker_stop" \
      "$stop_s" "$i" "$stop_held" "${stop_peers[$((i - 1))]:-}" \
      "$(grep -c ': session with ' <<<"$before" || true)" \
      "$(grep -c ': session with ' <<<"$after" || true)" \
      "$(sed '/ storage: .*: complete$/q' <<<"$after" | grep ' closed: ' |
        grep -c -v 'closed: duplicate session$' || true)" \
      "$(grep -c 'from peer exchange$' <<<"$after" || true)" \
      "$(grep -c 'tracker unreachable; dialling a known peer$' <<<"$after" || true)" \
      >>"$stop_csv"
  done
}

# take_completions: the downloaders whose "complete" event is new since
# the last call. It fills the caller's got, ndone and comp (its launch
# time plus the seconds the event says) and lists their numbers in fresh.
fresh=()
take_completions() {
  local f i secs
  fresh=()
  for f in $(cd "$r" && grep -l -F '"event":"complete"' d*.out 2>/dev/null || true); do
    i=${f#d}
    i=${i%.out}
    [ -n "${got[$i]:-}" ] && continue
    secs=$(json_num "$r/$f" complete seconds)
    [ -n "$secs" ] || continue
    got[$i]=1
    ndone=$((ndone + 1))
    comp[$i]=$(calc "${launch[$i]} + $secs")
    fresh+=("$i")
  done
}

# read_totals N: what the origin and downloaders 1..N printed on their way
# out (origin_up, up_b, down_b); a downloader that printed none fails an
# otherwise good run.
read_totals() {
  local n=$1 i
  origin_up=$(json_num "$r/origin.out" stats uploaded)
  origin_up=${origin_up:-0}
  for ((i = 1; i <= n; i++)); do
    up_b[$i]=$(json_num "$r/d$i.out" stats uploaded)
    down_b[$i]=$(json_num "$r/d$i.out" stats downloaded)
    if [ "$run_status" = ok ] && { [ -z "${up_b[$i]}" ] || [ -z "${down_b[$i]}" ]; }; then
      tail_of "$r/d$i.err"
      fail_run "downloader $i printed no stats on exit"
    fi
  done
}

# finish_run NAME: with --keep-logs the run's event logs go to
# DIR/logs/NAME/; the run's folder is removed.
finish_run() {
  if [ "$opt_keep_logs" = 1 ]; then
    mkdir -p "$opt_out/logs/$1"
    cp "$r"/*.out "$r"/*.err "$opt_out/logs/$1/" 2>/dev/null || true
  fi
  rm -rf "$r"
}

# start_origin MODE: the origin shares $file in MODE (into $r) and the
# caller's origin_pid and link are set once it prints its share link; the
# run fails when none comes within 120 s.
start_origin() {
  local mode=$1 i rate_args=()
  if [ "$opt_loopback" = 1 ]; then rate_args=(--upload-rate "$((origin_bits / 8))"); fi
  start_on or "$r/origin" "$bin/shoal-peer" share "$file" --tracker "$tracker_at" \
    --tracker-key "$tracker_key" --home "$r/home-origin" --listen "$(peer_listen)" \
    --interval-cap 1 --json --mode "$mode" "${rate_args[@]}"
  origin_pid=$bg_pid
  link=""
  for ((i = 0; i < 1200; i++)); do
    link=$({ grep -F '"event":"shared"' "$r/origin.out" || true; } |
      sed -n 's/.*"link":"\([^"]*\)".*/\1/p')
    [ -n "$link" ] && break
    kill -0 "$origin_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$link" ]; then
    tail_of "$r/origin.err"
    fail_run "the origin printed no share link within 120 s"
  fi
}

run_shoal() {
  local mode=$1 n=$2 rep=$3 i f t0 deadline_cs secs origin_pid origin_left=0
  local link="" ndone=0 rate_args=() down_args=() dl_pids=() k log_args=()
  local cpu_m0=""
  local stopping=0 held stop_bytes=0 stop_at=() end_at=() stop_peers=()
  local -A got=()
  # --tracker-stop: the downloaders' sessions and dials are counted from
  # their info-level log lines, before and after the stop.
  stop_s=""
  stop_held=""
  if [ -n "$opt_tracker_stop" ] && [ "$mode" = p2p ]; then
    stopping=1
    log_args=(--log-level info)
    stop_bytes=$(awk -v f="$opt_tracker_stop" -v n="$n" -v s="$size" 'BEGIN { printf "%d", f * n * s }')
  fi
  run_status=ok
  comp=() launch=() up_b=() down_b=() same=()
  origin_up=0
  r=$work/run
  rm -rf "$r"
  mkdir -p "$r"
  start_tracker "$r" || { record_run "$mode" "$n" "$rep"; stop_pids 30 "$tracker_pid"; return 0; }

  start_origin "$mode"

  if [ "$run_status" = ok ]; then
    if [ "$opt_loopback" = 1 ] && [ "$down_bits" -gt 0 ]; then
      down_args=(--download-rate "$((down_bits / 8))")
    fi
    gate_open "$r/gate"
    for ((i = 1; i <= n; i++)); do
      mkdir -p "$r/d$i"
      rate_args=()
      if [ "$opt_loopback" = 1 ]; then rate_args=(--upload-rate "$(($(peer_up_bits "$i") / 8))"); fi
      start_gated "d$i" "$r/d$i" "$bin/shoal-peer" get "$link" -o "$r/d$i" --seed \
        --home "$r/home-d$i" --listen "$(peer_listen)" --interval-cap 1 --json \
        --mode "$mode" "${rate_args[@]}" "${down_args[@]}" "${log_args[@]}"
      dl_pids[$i]=$bg_pid
      launch[$i]=0
    done
    gate_release "${dl_pids[@]}" || fail_run "the downloaders did not start within 30 s"
    cpu_m0=$(cpu_machine)
    deadline_cs=$((t0 + 100 * deadline_s))
    while [ "$run_status" = ok ]; do
      take_completions
      if [ "${#fresh[@]}" -gt 0 ] && [ "$opt_origin_leaves" = 1 ] &&
        [ "$mode" = p2p ] && [ "$origin_left" = 0 ]; then
        # One full copy now exists among the downloaders: the origin goes.
        kill -TERM "$origin_pid" 2>/dev/null || true
        origin_left=1
      fi
      [ "$ndone" -ge "$n" ] && break
      if [ "$stopping" = 1 ]; then
        # What the downloaders hold together, from their last progress
        # events (a complete one holds the whole file).
        held=$(held_bytes "$r" "$n")
        if [ "${held%% *}" -ge "$stop_bytes" ]; then
          kill -KILL "$tracker_pid" 2>/dev/null || true
          wait "$tracker_pid" 2>/dev/null || true
          unset "live[$tracker_pid]"
          clock
          stop_s=$(awk -v c="$((now - t0))" 'BEGIN { printf "%.2f", c / 100 }')
          stop_held=$(calc "${held%% *} / ($n * $size)")
          read -r -a stop_peers <<<"${held#* }"
          for ((i = 1; i <= n; i++)); do
            stop_at[i]=$(stat -c %s "$r/d$i.err")
          done
          stopping=2
          say "tracker killed $stop_s s after the start, the downloaders holding $(calc "100 * $stop_held" |
            awk '{ printf "%.1f", $1 }')% of the copies"
        fi
      fi
      if host_lost "$n" "$((1 - origin_left))"; then break; fi
      clock
      if [ "$now" -gt "$deadline_cs" ]; then
        fail_run "$((n - ndone)) of $n downloaders not complete after $deadline_s s"
        break
      fi
      sleep 0.1
    done
  fi

  # CPU: the machine's over the run, each process's until now (every one
  # still runs: the downloaders seed).
  if [ "$run_status" = ok ]; then
    cpu_line=$(cpu_record "$mode" "$n" "$rep" "$cpu_m0" "$(cpu_machine)" \
      "$origin_pid" "$tracker_pid" "${dl_pids[@]:1:n}")
  fi
  # The stop's counts end here, before the shutdown closes every session.
  if [ "$stopping" = 2 ]; then
    for ((i = 1; i <= n; i++)); do end_at[i]=$(stat -c %s "$r/d$i.err"); done
  fi

  # Everyone stops; each shoal-peer prints its totals on the way out. An
  # origin that was told to leave is on its way out already: a second TERM
  # would end it before it prints them, so it gets time first.
  if [ "$origin_left" = 1 ]; then
    wait_gone 50 "$origin_pid"
  fi
  k=()
  for ((i = 1; i <= n; i++)); do
    if [ -n "${dl_pids[$i]:-}" ]; then k+=("${dl_pids[$i]}"); fi
  done
  stop_pids 50 "${k[@]}" "$origin_pid"
  stop_pids 30 "$tracker_pid"
  read_totals "$n"
  if [ "$stopping" = 1 ] && [ "$run_status" = ok ]; then
    fail_run "the run ended before the downloaders held $opt_tracker_stop of the copies: the tracker was never stopped"
  fi
  if [ "$stopping" = 2 ]; then
    record_stop "$n" "$rep"
  fi
  record_run "$mode" "$n" "$rep"
  finish_run "$mode-n$n-r$rep"
}

run_http() {
  local n=$1 rep=$2 i t0 deadline_cs srv_pid name rc w ndone=0 cpu_m0=""
  local -A got=()
  local dl_pids=() k=()
  run_status=ok
  comp=() launch=() up_b=() down_b=() same=()
  origin_up=0
  r=$work/run
  rm -rf "$r"
  mkdir -p "$r/www"
  name=$(basename "$file")
  ln "$file" "$r/www/$name" 2>/dev/null || cp "$file" "$r/www/$name"
  if [ "$http_server" = lighttpd ]; then
    cat >"$r/lighttpd.conf" <<EOF
server.document-root = "$r/www"
server.bind = "$origin_addr"
server.port = 80
server.errorlog = "$r/lighttpd.log"
server.max-connections = 1024
mimetype.assign = ( "" => "application/octet-stream" )
EOF
    start_on or "$r/httpd" lighttpd -D -f "$r/lighttpd.conf"
  else
    start_on or "$r/httpd" busybox httpd -f -p "$origin_addr:80" -h "$r/www"
  fi
  srv_pid=$bg_pid
  for ((i = 0; i < 100; i++)); do
    if run_on or curl -s -o /dev/null -I --max-time 1 "http://$origin_addr/$name" 2>/dev/null; then
      break
    fi
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! run_on or curl -s -o /dev/null -I --max-time 1 "http://$origin_addr/$name" 2>/dev/null; then
    tail_of "$r/httpd.err"
    tail_of "$r/lighttpd.log"
    fail_run "the HTTP server on the origin did not answer within 10 s"
  fi

  if [ "$run_status" = ok ]; then
    gate_open "$r/gate"
    for ((i = 1; i <= n; i++)); do
      mkdir -p "$r/d$i"
      start_gated "d$i" "$r/d$i" curl -sS --fail -o "$r/d$i/$name" \
        -w '%{time_total} %{size_download}\n' "http://$origin_addr/$name"
      dl_pids[$i]=$bg_pid
      launch[$i]=0
    done
    gate_release "${dl_pids[@]}" || fail_run "the downloaders did not start within 30 s"
    cpu_m0=$(cpu_machine)
    deadline_cs=$((t0 + 100 * deadline_s))
    while [ "$run_status" = ok ] && [ "$ndone" -lt "$n" ]; do
      for ((i = 1; i <= n; i++)); do
        [ -n "${got[$i]:-}" ] && continue
        kill -0 "${dl_pids[$i]}" 2>/dev/null && continue
        if wait "${dl_pids[$i]}"; then rc=0; else rc=$?; fi
        unset "live[${dl_pids[$i]}]"
        got[$i]=1
        ndone=$((ndone + 1))
        w=$(head -n 1 "$r/d$i.out")
        if [ "$rc" != 0 ] || [ -z "$w" ]; then
          tail_of "$r/d$i.err"
          fail_run "curl on downloader $i exited with status $rc"
          continue
        fi
        comp[$i]=$(calc "${launch[$i]} + ${w% *}")
        down_b[$i]=${w#* }
        up_b[$i]=0
        origin_up=$((origin_up + ${w#* }))
      done
      [ "$ndone" -ge "$n" ] && break
      [ "$run_status" = ok ] || break
      clock
      if [ "$now" -gt "$deadline_cs" ]; then
        fail_run "$((n - ndone)) of $n downloads not complete after $deadline_s s"
        break
      fi
      sleep 0.05
    done
  fi
  k=()
  for ((i = 1; i <= n; i++)); do
    if [ -n "${dl_pids[$i]:-}" ] && [ -n "${live[${dl_pids[$i]}]:-}" ]; then k+=("${dl_pids[$i]}"); fi
  done
  # CPU: the machine's over the run, the server's; each curl has exited.
  if [ "$run_status" = ok ]; then
    cpu_line=$(cpu_record http "$n" "$rep" "$cpu_m0" "$(cpu_machine)" \
      "$srv_pid" 0)
  fi
  stop_pids 30 "${k[@]}" "$srv_pid"
  record_run http "$n" "$rep"
  rm -rf "$r"
}

# ---------------------------------------------------------------------------
# A flash crowd with churn (--arrivals): the downloaders arrive one by one
# as a Poisson process, seed --linger seconds after they complete, and
# leave. Each is started before the run, parked (its sh stops itself with
# SIGSTOP before it execs shoal-peer, so that the slow start-up of ip
# netns exec is not part of its download), and let go with SIGCONT at its
# arrival time; it leaves by SIGTERM to its PID.
churn_csv=""

# poisson_plan N SEED: N arrival times in seconds from the start, with
# exponential gaps of mean 1/--arrivals, from awk's generator seeded by SEED.
poisson_plan() {
  awk -v lambda="$opt_arrivals" -v n="$1" -v seed="$2" 'BEGIN {
    srand(seed); t = 0
    for (i = 1; i <= n; i++) { t += -log(1 - rand()) / lambda; printf "%.3f\n", t }
  }'
}

# is_parked PID: the process is stopped (state T in /proc/PID/stat).
is_parked() {
  local rest
  [ -r "/proc/$1/stat" ] || return 1
  read -r rest <"/proc/$1/stat" || return 1
  rest=${rest##*) }
  [ "${rest:0:1}" = T ]
}

# Seconds from $t0 to the clock's $now, as a decimal.
since_t0() { awk -v c="$((now - t0))" 'BEGIN { printf "%.2f", c / 100 }'; }

run_churn() {
  local n=$1 rep=$2 seed=$((opt_seed + $2 - 1)) i f secs origin_pid
  local link="" ndone=0 ngone=0 rate_args=() down_args=() dl_pids=() k
  local plan=() plan_cs=() depart=() due_cs=() nlaunched=0 deadline_cs end_s parked
  local cpu_m0="" cpu_who=()
  local -A got=() gone=() started=() left_ticks=()
  run_status=ok
  comp=() launch=() up_b=() down_b=() same=()
  origin_up=0
  r=$work/run
  rm -rf "$r"
  mkdir -p "$r"
  mapfile -t plan < <(poisson_plan "$n" "$seed")
  # The plan in hundredths of a second too, for the loop's integer tests.
  mapfile -t plan_cs < <(printf '%s\n' "${plan[@]}" | awk '{ printf "%d\n", $1 * 100 + 0.5 }')
  start_tracker "$r" || { record_churn "$n" "$rep" "$seed" "${plan[@]}"; stop_pids 30 "$tracker_pid"; return 0; }

  start_origin p2p

  if [ "$run_status" = ok ]; then
    if [ "$opt_loopback" = 1 ] && [ "$down_bits" -gt 0 ]; then
      down_args=(--download-rate "$((down_bits / 8))")
    fi
    for ((i = 1; i <= n; i++)); do
      mkdir -p "$r/d$i"
      rate_args=()
      if [ "$opt_loopback" = 1 ]; then rate_args=(--upload-rate "$(($(peer_up_bits "$i") / 8))"); fi
      # shellcheck disable=SC2016
      start_on "d$i" "$r/d$i" sh -c 'kill -STOP $$; exec "$@"' sh \
        "$bin/shoal-peer" get "$link" -o "$r/d$i" --seed \
        --home "$r/home-d$i" --listen "$(peer_listen)" --interval-cap 1 --json \
        --mode p2p "${rate_args[@]}" "${down_args[@]}"
      dl_pids[$i]=$bg_pid
    done
    # Every downloader parked, within 60 s.
    for ((k = 0; k < 1200; k++)); do
      parked=0
      for ((i = 1; i <= n; i++)); do
        if is_parked "${dl_pids[$i]}"; then parked=$((parked + 1)); fi
      done
      [ "$parked" = "$n" ] && break
      sleep 0.05
    done
    [ "$parked" = "$n" ] || fail_run "only $parked of $n downloaders were ready after 60 s"
  fi

  if [ "$run_status" = ok ]; then
    clock
    t0=$now
    cpu_m0=$(cpu_machine)
    deadline_s=$(awk -v b="$(bound_cs "$n")" -v last="${plan[$((n - 1))]}" \
      -v l="${opt_linger:-0}" 'BEGIN { printf "%d", last + 3 * b + l + 30 }')
    deadline_cs=$((t0 + 100 * deadline_s))
    say "rep $rep: $n arrivals over $(printf '%.1f' "${plan[$((n - 1))]}") s (seed $seed); at most $deadline_s s"
    while [ "$run_status" = ok ]; do
      clock
      # Arrivals due.
      while [ "$nlaunched" -lt "$n" ] && [ $((now - t0)) -ge "${plan_cs[$nlaunched]}" ]; do
        i=$((nlaunched + 1))
        kill -CONT "${dl_pids[$i]}" 2>/dev/null || true
        clock
        launch[$i]=$(since_t0)
        started[$i]=1
        nlaunched=$i
      done
      # Completions.
      take_completions
      if [ -n "$opt_linger" ]; then
        for i in "${fresh[@]}"; do
          due_cs[$i]=$(awk -v c="${comp[$i]}" -v l="$opt_linger" 'BEGIN { printf "%d", 100 * (c + l) + 0.5 }')
        done
      fi
      # Departures due: by SIGTERM to the downloader's PID.
      if [ -n "$opt_linger" ]; then
        clock
        for i in "${!due_cs[@]}"; do
          [ -n "${gone[$i]:-}" ] && continue
          [ $((now - t0)) -ge "${due_cs[$i]}" ] || continue
          left_ticks[$i]=$(cpu_ticks "${dl_pids[$i]}")
          kill -TERM "${dl_pids[$i]}" 2>/dev/null || true
          depart[$i]=$(since_t0)
          gone[$i]=1
          ngone=$((ngone + 1))
        done
      fi
      if [ "$ndone" -ge "$n" ] && { [ -z "$opt_linger" ] || [ "$ngone" -ge "$n" ]; }; then
        break
      fi
      if host_lost "$nlaunched" 1; then break; fi
      if [ "$now" -gt "$deadline_cs" ]; then
        fail_run "$((n - ndone)) of $n downloaders not complete after $deadline_s s"
        break
      fi
      sleep 0.05
    done
  fi

  # The run ends here: whoever is still in the swarm leaves now.
  clock
  end_s=$(since_t0)
  if [ -n "$cpu_m0" ]; then
    for ((i = 1; i <= n; i++)); do
      if [ -n "${left_ticks[$i]:-}" ]; then cpu_who+=("=${left_ticks[$i]}"); else cpu_who+=("${dl_pids[$i]}"); fi
    done
    cpu_line=$(cpu_record churn "$n" "$rep" "$cpu_m0" "$(cpu_machine)" \
      "$origin_pid" "$tracker_pid" "${cpu_who[@]}")
  fi
  for ((i = 1; i <= n; i++)); do
    if [ -n "${started[$i]:-}" ] && [ -z "${gone[$i]:-}" ]; then depart[$i]=$end_s; fi
  done
  # Those that left are on their way out already: a second TERM would end
  # them before they print their totals, so they get time first.
  k=()
  for i in "${!gone[@]}"; do k+=("${dl_pids[$i]}"); done
  if [ "${#k[@]}" -gt 0 ]; then wait_gone 50 "${k[@]}"; fi
  k=()
  for ((i = 1; i <= n; i++)); do
    if [ -n "${dl_pids[$i]:-}" ]; then
      # A downloader still parked gets going, so that TERM reaches it.
      [ -n "${started[$i]:-}" ] || kill -CONT "${dl_pids[$i]}" 2>/dev/null || true
      k+=("${dl_pids[$i]}")
    fi
  done
  stop_pids 50 "${k[@]}" "$origin_pid"
  stop_pids 30 "$tracker_pid"
  read_totals "$n"
  record_churn "$n" "$rep" "$seed" "${plan[@]}"
  finish_run "churn-n$n-r$rep"
}

# record_churn N REP SEED PLAN...: a row per downloader in churn.csv, from
# the caller's launch, comp, depart, up_b, down_b and run_status; each
# complete copy is compared with the original.
record_churn() {
  local n=$1 rep=$2 seed=$3 i name dl
  shift 3
  name=$(basename "$file")
  for ((i = 1; i <= n; i++)); do
    same[$i]=0
    if [ -n "${comp[$i]:-}" ]; then
      if [ -f "$r/d$i/$name" ] && cmp -s "$file" "$r/d$i/$name"; then
        same[$i]=1
      else
        fail_run "downloader $i: its copy is missing or differs from the original"
      fi
    fi
  done
  for ((i = 1; i <= n; i++)); do
    dl=""
    if [ -n "${comp[$i]:-}" ]; then dl=$(calc "${comp[$i]} - ${launch[$i]}"); fi
    printf '%s,%s,%s,d%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$n" "$rep" "$seed" "$i" \
      "${!i}" "${launch[$i]:-}" "${comp[$i]:-}" "${depart[$i]:-}" "$dl" \
      "${same[$i]}" "${up_b[$i]:-0}" "${down_b[$i]:-0}" "$run_status" >>"$churn_csv"
  done
  printf '%s,%s,%s,origin,,,,,,,%s,0,%s\n' "$n" "$rep" "$seed" "$origin_up" "$run_status" >>"$churn_csv"
  if [ "$run_status" = ok ]; then
    say "rep $rep: every downloader complete and identical; mean download $(awk -F, -v r="$rep" \
      '$2 == r && $4 != "origin" { s += $9; k++ } END { printf "%.2f", s / k }' "$churn_csv") s"
    if [ -n "$cpu_line" ]; then say "     $cpu_line"; fi
  fi
  cpu_line=""
}

# The model's parameters in files a second. Rates are what TCP carries
# through a tbf cap (payload over frame bytes at this MTU); with no
# download cap a downloader can at most take everything the others upload.
model_args() {
  local n=$1 i sum=0 eff mu_bits c_bits
  for ((i = 1; i <= n; i++)); do sum=$((sum + $(peer_up_bits "$i"))); done
  if [ "$opt_loopback" = 1 ]; then eff=1; else eff=$(calc "($opt_mtu - 52) / ($opt_mtu + 14)"); fi
  mu_bits=$((sum / n))
  c_bits=$down_bits
  [ "$c_bits" -gt 0 ] || c_bits=$((origin_bits + sum))
  awk -v F="$((size * 8))" -v e="$eff" -v c="$c_bits" -v mu="$mu_bits" \
    -v mu0="$origin_bits" -v lambda="$opt_arrivals" -v l="$opt_linger" -v n="$n" 'BEGIN {
    g = l == "" ? 0 : 1 / (l < 0.05 ? 0.05 : l)
    printf "--lambda %s --c %.9g --mu %.9g --mu0 %.9g --eta 1 --gamma %.9g --total %d --every 0.1 --dt 0.005\n",
      lambda, c * e / F, mu * e / F, mu0 * e / F, g, n
  }'
}

# The value of "# KEY VALUE" in the model's output.
model_val() { sed -n "s/^# $1 //p" "$opt_out/plot/churn-model.out" | head -n 1; }

# churn_outputs N: the time series, the model, churn.md and churn.png.
churn_outputs() {
  local n=$1 rep margs xmax
  # x(t) and y(t) of each repetition every 0.1 s, from the rows of
  # churn.csv: x counts the downloaders that have arrived and are not yet
  # complete, y those complete and not yet gone.
  echo "rep,t_s,x,y" >"$opt_out/churn_ts.csv"
  for ((rep = 1; rep <= opt_reps; rep++)); do
    awk -F, -v r="$rep" -v OFS=, '
      $2 == r && $4 != "origin" && $6 != "" {
        k++; a[k] = $6; c[k] = $7 == "" ? 1e9 : $7; d[k] = $8 == "" ? 1e9 : $8
        if ($8 != "" && $8 + 0 > end) end = $8 + 0
      }
      END {
        for (s = 0; s <= 10 * end + 1.5; s++) {
          t = s / 10; x = 0; y = 0
          for (i = 1; i <= k; i++) {
            if (a[i] <= t && t < c[i]) x++
            else if (c[i] <= t && t < d[i]) y++
          }
          print r, sprintf("%.1f", t), x, y
        }
      }' "$churn_csv" >>"$opt_out/churn_ts.csv"
    awk -F, -v r="$rep" '$1 == r { print $2, $3, $4 }' "$opt_out/churn_ts.csv" \
      >"$opt_out/plot/churn-ts-$rep.dat"
    awk -F, -v r="$rep" '$2 == r && $4 != "origin" && $9 != "" { print $6, $9 }' "$churn_csv" \
      >"$opt_out/plot/churn-dl-$rep.dat"
  done

  margs=$(model_args "$n")
  echo "fluidmodel $margs" >>"$opt_out/settings.txt"
  # shellcheck disable=SC2086
  "$fluid_bin" $margs >"$opt_out/plot/churn-model.out" || {
    warn "fluidmodel failed: $fluid_bin $margs"
    return 1
  }
  awk 'BEGIN { print "t_s,x,y,arrived,completed,departed" }
    /^[0-9]/ { $1 = $1; gsub(/ /, ","); print }' "$opt_out/plot/churn-model.out" \
    >"$opt_out/churn_model.csv"
  grep '^[0-9]' "$opt_out/plot/churn-model.out" >"$opt_out/plot/churn-model.dat"
  # The model's download time of a downloader arriving at t, when every
  # downloader gets an equal share r / x of the completions (as the swarm
  # shares its upload among all downloaders): the time until the integral
  # of r / x from t reaches one file.
  awk -v cut="$(awk -v n="$n" -v l="$opt_arrivals" 'BEGIN { print n / l }')" '
    { t[NR] = $1; x[NR] = $2; c[NR] = $5 }
    END {
      for (j = 1; j < NR && t[j] < cut; j += 5) {
        got = 0
        for (k = j; k < NR; k++) {
          xm = (x[k] + x[k + 1]) / 2
          if (xm <= 1e-9) continue
          step = (c[k + 1] - c[k]) / xm
          if (got + step >= 1) { printf "%.2f %.3f\n", t[j], t[k] + (t[k + 1] - t[k]) * (1 - got) / step - t[j]; break }
          got += step
        }
      }
    }' "$opt_out/plot/churn-model.dat" >"$opt_out/plot/churn-model-T.dat"
  churn_md "$n"
  # Both panels span the measured run or the model's, whichever is longer
  # (the model's ends when fewer than half a peer is left).
  xmax=$(awk -F, 'NR > 1 && $8 != "" && $8 + 0 > m { m = $8 + 0 } END { print m + 0 }' "$churn_csv")
  xmax=$(awk -v m="$xmax" '$2 + $3 >= 0.5 { e = $1 } END { if (e < m) e = m; printf "%d", e * 1.05 + 1 }' \
    "$opt_out/plot/churn-model.dat")
  rm -f "$opt_out/churn.png"
  gnuplot -e "dir='$opt_out'; reps='$(seq -s ' ' 1 "$opt_reps")'; subtitle='$plot_subtitle'; steadyT='$(model_val steady_T)'; xmax=$xmax" \
    bench/churn-plot.gp 2>"$work/gnuplot.err" || {
    cat "$work/gnuplot.err" >&2
    warn "gnuplot failed"
    return 1
  }
}

# churn.md: measured against the model, a row per repetition.
churn_md() {
  local n=$1
  {
    echo "# shoal: a flash crowd with churn ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "Settings: $settings_text"
    echo
    echo "Model (bench/fluidmodel, rates in files a second): $(sed -n 's/^fluidmodel //p' "$opt_out/settings.txt" | tail -n 1)"
    echo
    echo "Steady state of endless arrivals: $(model_val steady_regime)-bound, x = $(model_val steady_x) downloaders, y = $(model_val steady_y) seeders, T = $(model_val steady_T) s."
    echo
    echo "| | downloads | mean download (s) | median (s) | max (s) | mean, later half of arrivals (s) | last completion (s) | peak x | peak y | origin sent (MiB) |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for ((rep = 1; rep <= opt_reps; rep++)); do
      awk -F, -v r="$rep" -v n="$n" '
        FNR == NR { if (FNR > 1 && $1 == r) { if ($3 + 0 > px) px = $3 + 0; if ($4 + 0 > py) py = $4 + 0 } ; next }
        $2 == r && $4 == "origin" { orig = $11 }
        $2 == r && $4 != "origin" && $9 != "" { k++; d[k] = $9 + 0; s += $9; if ($7 + 0 > last) last = $7 + 0
          if (k > n / 2) { hs += $9; hk++ } }
        END {
          for (i = 2; i <= k; i++) { v = d[i]; for (j = i - 1; j >= 1 && d[j] > v; j--) d[j + 1] = d[j]; d[j + 1] = v }
          if (k == 0) { printf "| measured, rep %d | 0 of %d | | | | | | | | |\n", r, n; exit }
          med = k % 2 ? d[(k + 1) / 2] : (d[k / 2] + d[k / 2 + 1]) / 2
          printf "| measured, rep %d | %d of %d | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %d | %.1f |\n",
            r, k, n, s / k, med, d[k], hk ? hs / hk : 0, last, px, py, orig / 1048576
        }' "$opt_out/churn_ts.csv" "$churn_csv"
    done
    printf '| fluid model | %s (fluid) | %.2f (integral of x / N) | | | | %.2f (N - 0.5 completed) | %.2f at %.1f s | %.2f at %.1f s | |\n' \
      "$n" "$(model_val run_mean_T)" "$(model_val run_last_completion)" "$(model_val peak_x)" \
      "$(model_val peak_x_t)" "$(model_val peak_y)" "$(model_val peak_y_t)"
    echo
    echo "x: downloaders present and not complete; y: complete downloaders still seeding (the origin not counted)."
    echo
    awk -F, -v lim="$MACHINE_BOUND" 'NR > 1 && $1 == "churn" {
        printf "CPU, rep %s: machine busy %d%% of %s CPUs over %.1f s; CPU s: origin %s, tracker %s, downloaders %s (at most %s each)%s.\n",
          $3, int(100 * $6 + 0.5), $5, $4, $7, $8, $9, $10, $11 == 1 ? "; machine-bound (the test bed, not shoal, set the pace)" : ""
      }' "$cpu_csv"
    echo "Arrival, completion and departure of each downloader: churn.csv; x(t), y(t): churn_ts.csv; the model's: churn_model.csv. Plot: churn.png."
  } >"$opt_out/churn.md"
}

# The whole --arrivals run: the repetitions, then the outputs.
churn_study() {
  local n=${ns_list[0]} rep failed=0
  # The study's own tables are not made here.
  rm -f "$runs_csv" "$runs_tsv"
  churn_csv=$opt_out/churn.csv
  echo "n,rep,seed,host,planned_s,arrival_s,complete_s,depart_s,download_s,identical,uploaded_B,downloaded_B,status" >"$churn_csv"
  for ((rep = 1; rep <= opt_reps; rep++)); do
    run_churn "$n" "$rep"
    [ "$run_status" = ok ] || failed=$((failed + 1))
  done
  mkdir -p "$opt_out/plot"
  churn_outputs "$n" || failed=$((failed + 1))
  echo
  sed -n '/^Steady/,/^$/p; /^| /p' "$opt_out/churn.md"
  say "results in $opt_out (churn.csv, churn_ts.csv, churn_model.csv, churn.md, churn.png)"
  [ "$failed" = 0 ] || { warn "$failed repetition(s) or outputs failed; see churn.csv (status column)"; return 1; }
}

# ---------------------------------------------------------------------------
# Summary, tables and plots.
label_of() {
  case "$1" in
  p2p) echo "shoal p2p" ;;
  cs) echo "shoal cs" ;;
  http) echo "HTTP ($http_server + curl)" ;;
  esac
}

write_summary() {
  local s n
  # summary.csv from the per-run table: median, min, max of D and of D/bound
  # over the successful runs of each system and N.
  awk -F '\t' -v OFS=, '
    function med(a, k,   i, j, t) {
      for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    {
      key = $1 SUBSEP $2
      if (!(key in seen)) { seen[key] = 1; order[++nk] = key; sys[key] = $1; nn[key] = $2 }
      bound[key] = $5; runs[key]++
      if ($9 != "ok") { failed[key]++; next }
      k = ++ok[key]
      D[key, k] = $4 + 0; U[key, k] = $6 + 0; O[key, k] = $7 + 0; T[key, k] = $8 + 0
      if (!(key in lo) || $4 + 0 < lo[key]) lo[key] = $4 + 0
      if (!(key in hi) || $4 + 0 > hi[key]) hi[key] = $4 + 0
    }
    END {
      print "system,n,runs,failed,d_median_s,d_min_s,d_max_s,bound_s,ratio_median,ratio_max,upload_utilisation,origin_uploaded_B,total_uploaded_B"
      for (q = 1; q <= nk; q++) {
        key = order[q]; k = ok[key] + 0
        if (k == 0) {
          print sys[key], nn[key], runs[key], failed[key] + 0, "NA", "NA", "NA", bound[key], "NA", "NA", "NA", "NA", "NA"
          continue
        }
        for (i = 1; i <= k; i++) { a[i] = D[key, i] } ; dm = med(a, k)
        for (i = 1; i <= k; i++) { a[i] = U[key, i] } ; um = med(a, k)
        for (i = 1; i <= k; i++) { a[i] = O[key, i] } ; om = med(a, k)
        for (i = 1; i <= k; i++) { a[i] = T[key, i] } ; tm = med(a, k)
        printf "%s,%s,%d,%d,%.3f,%.3f,%.3f,%.3f,%.4f,%.4f,%.4f,%.0f,%.0f\n", sys[key], nn[key], runs[key], failed[key] + 0, dm, lo[key], hi[key], bound[key], dm / bound[key], hi[key] / bound[key], um, om, tm
      }
    }' "$runs_tsv" >"$opt_out/summary.csv"

  # Data for gnuplot.
  mkdir -p "$opt_out/plot"
  rm -f "$opt_out"/plot/*.dat
  for n in "${ns_list[@]}"; do
    printf '%s %s %s\n' "$n" "$(bound_cs "$n")" "$(bound_p2p "$n")"
  done | sort -n >"$opt_out/plot/bounds.dat"
  for s in "${systems[@]}"; do
    awk -F, -v s="$s" 'NR > 1 && $1 == s && $5 != "NA" {
      print $2, $5, $6, $7, $8, $9, $6 / $8, $7 / $8 }' "$opt_out/summary.csv" |
      sort -n >"$opt_out/plot/d-$s.dat"
    for n in "${ns_list[@]}"; do
      # Completion-time CDF over every downloader of every successful run.
      awk -F, -v s="$s" -v n="$n" 'NR > 1 && $1 == s && $2 == n && $4 != "origin" &&
        $12 == "ok" && $8 != "" { print $8 }' "$runs_csv" | sort -g |
        awk '{ t[NR] = $1 } END { if (NR == 0) exit; print 0, 0;
          for (i = 1; i <= NR; i++) print t[i], i / NR }' >"$opt_out/plot/cdf-$n-$s.dat"
      [ -s "$opt_out/plot/cdf-$n-$s.dat" ] || rm -f "$opt_out/plot/cdf-$n-$s.dat"
    done
  done
}

# Targets: the worst median D/bound over N, and the worst single run.
target_line() {
  local s=$1 target=$2 reference=$3
  awk -F, -v s="$s" -v t="$target" -v lbl="$(label_of "$s")" -v ref="$reference" '
    NR > 1 && $1 == s && $9 != "NA" {
      if ($9 + 0 > worst) { worst = $9 + 0; wn = $2 }
      if ($10 + 0 > wrun) wrun = $10 + 0
      txt = txt sprintf("%sN=%s %.3f", sep, $2, $9); sep = ", "; any = 1
    }
    END {
      if (!any) { printf "- %s: no successful run\n", lbl; exit }
      printf "- %s: target D <= %.2fx its bound at every N%s; measured (median) %s; worst %.3f at N=%s, worst single run %.3f: %s\n",
        lbl, t, ref, txt, worst, wn, wrun, worst <= t ? "MET" : "NOT MET"
    }' "$opt_out/summary.csv"
}

write_md() {
  local md=$opt_out/summary.md s
  {
    echo "# shoal: client-server vs peer-to-peer ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "Settings: $settings_text"
    echo
    if [ "$opt_loopback" = 1 ]; then
      echo "Loopback run: every host on 127.0.0.1, caps by shoal's own --upload-rate /"
      echo "--download-rate. The HTTP baseline was skipped (a stock server has no"
      echo "per-host caps here). shoal's limiter counts payload bytes only and starts"
      echo "with a full bucket (a quarter second of traffic), so D can come out"
      echo "slightly below the bound."
    else
      echo "The caps are tbf qdiscs, which count whole Ethernet frames: at MTU $opt_mtu"
      echo "a full TCP segment carries $((opt_mtu - 52)) payload bytes in a $((opt_mtu + 14))-byte"
      echo "frame, so no TCP transfer can get below $(calc "($opt_mtu + 14) / ($opt_mtu - 52)" |
        awk '{ printf "%.3f", $1 }')x the bound here."
    fi
    echo
    echo "D = time until the last downloader is complete (median, min-max over the"
    echo "repetitions). Bounds: client-server max(N*F/u_s, F/d_min), peer-to-peer"
    echo "max(F/u_s, F/d_min, N*F/(u_s + sum u_i)). Utilisation = bytes uploaded by"
    echo "all hosts / (D x sum of all upload caps)."
    echo
    echo "| N | system | runs | D median (s) | D min-max (s) | cs bound (s) | p2p bound (s) | D / own bound | upload utilisation | origin uploaded (MiB) |"
    echo "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    awk -F, -v lp2p="shoal p2p" -v lcs="shoal cs" -v lhttp="HTTP" '
      FNR == NR { split($0, b, " "); bcs[b[1]] = b[2]; bp2p[b[1]] = b[3]; next }
      FNR > 1 {
        l = $1 == "p2p" ? lp2p : $1 == "cs" ? lcs : lhttp
        runs = $3 - $4; if ($4 > 0) runs = runs " (+" $4 " failed)"
        if ($5 == "NA") { printf "| %s | %s | %s | failed | | %.2f | %.2f | | | |\n", $2, l, runs, bcs[$2], bp2p[$2]; next }
        printf "| %s | %s | %s | %.2f | %.2f-%.2f | %.2f | %.2f | %.3f | %.1f%% | %.1f |\n",
          $2, l, runs, $5, $6, $7, bcs[$2], bp2p[$2], $9, 100 * $11, $12 / 1048576
      }' "$opt_out/plot/bounds.dat" "$opt_out/summary.csv"
    echo
    echo "Targets (median D / bound per N):"
    echo
    targets_text
    echo
    echo "CPU (cpu.csv): every host shares this machine's $(nproc) CPUs. A run whose"
    echo "machine was busy for at least $(calc "100 * $MACHINE_BOUND" | awk '{ printf "%d", $1 }')% of its CPUs' time, or one of whose shoal"
    echo "processes kept one CPU that busy, is machine-bound: its D measures the"
    echo "test bed as well as the system."
    echo
    awk -F, 'NR > 1 { n++; if ($11 == 1) { b++; list = list sprintf("%s%s N=%s rep %s (%.0f%%)", b > 1 ? ", " : "", $1, $2, $3, 100 * $6) } }
      END { if (n == 0) print "No run recorded its CPU."; else if (b == 0) printf "No run of %d was machine-bound.\n", n; else printf "Machine-bound runs, %d of %d: %s.\n", b, n, list }' "$cpu_csv"
    echo
    if [ -s "$stop_csv" ]; then stop_md; fi
    echo "Plots: d_vs_n.png, ratio.png, cdf.png."
  } >"$md"
}

# The tracker-stop table of summary.md: a row per run, from
# tracker_stop.csv and the per-run table.
stop_md() {
  echo "Tracker killed at $opt_tracker_stop of the bytes (shoal p2p). Sessions and dials are"
  echo "counted from each downloader's info-level log; \"peers\" is the sessions"
  echo "of its last progress event before the stop (the origin included);"
  echo "\"lost\" counts sessions closed after the stop while the downloader was"
  echo "not yet complete (duplicates of a session it kept aside)."
  echo
  echo "| N | rep | stopped at (s) | held at stop | D (s) | D / bound | peers at stop (min-max) | sessions opened after | sessions lost after | dials from peer exchange | dials to peers the tracker named |"
  echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  awk -F '\t' 'FNR == NR { if ($1 == "p2p") { D[$2, $3] = $4; B[$2, $3] = $5 } ; next }
    FNR > 1 {
      key = $2 SUBSEP $3
      if (!(key in seen)) { seen[key] = 1; order[++nk] = key; at[key] = $5; held[key] = $7; lo[key] = $8; hi[key] = $8 }
      if ($8 + 0 < lo[key] + 0) lo[key] = $8
      if ($8 + 0 > hi[key] + 0) hi[key] = $8
      opened[key] += $10; lost[key] += $11; pex[key] += $12; known[key] += $13
    }
    END {
      for (q = 1; q <= nk; q++) {
        key = order[q]; split(key, nr, SUBSEP)
        d = D[key]; ratio = d == "NA" || d == "" ? "failed" : sprintf("%.3f", d / B[key])
        printf "| %s | %s | %.1f | %.1f%% | %s | %s | %s-%s | %d | %d | %d | %d |\n", nr[1], nr[2], at[key],
          100 * held[key], d == "NA" ? "failed" : sprintf("%.2f", d), ratio, lo[key], hi[key],
          opened[key], lost[key], pex[key], known[key]
      }
    }' "$runs_tsv" FS=, "$stop_csv"
  echo
}

targets_text() {
  if has_system p2p; then
    if [ -n "$opt_tracker_stop" ]; then
      target_line p2p 1.15 " with the tracker killed at $opt_tracker_stop of the bytes"
    else
      target_line p2p 1.10 ""
    fi
  fi
  if has_system cs; then target_line cs 1.06 ""; fi
  if has_system http; then target_line http 1.06 " (reference: the issue quotes 1.05x)"; fi
  if [ "$opt_hetero" = 1 ] || [ "$opt_origin_leaves" = 1 ] || [ -n "$opt_peer_down" ]; then
    echo "- (the targets are stated for the default homogeneous set-up; this run used other scenario flags)"
  fi
}

plot() {
  local s sys_ok=() n ns_ok=()
  for s in "${systems[@]}"; do
    [ -s "$opt_out/plot/d-$s.dat" ] && sys_ok+=("$s")
  done
  for n in "${ns_list[@]}"; do
    ls "$opt_out"/plot/cdf-"$n"-*.dat >/dev/null 2>&1 && ns_ok+=("$n")
  done
  if [ "${#sys_ok[@]}" = 0 ]; then
    warn "no successful run: no plots"
    return 0
  fi
  rm -f "$opt_out"/d_vs_n.png "$opt_out"/ratio.png "$opt_out"/cdf.png
  gnuplot -e "dir='$opt_out'; systems='${sys_ok[*]}'; ns='$(printf '%s\n' "${ns_ok[@]}" | sort -n | tr '\n' ' ')'; subtitle='$plot_subtitle'; httplabel='$(label_of http)'" \
    bench/compare-plot.gp 2>"$work/gnuplot.err" || {
    cat "$work/gnuplot.err" >&2
    warn "gnuplot failed"
    return 1
  }
}

# ---------------------------------------------------------------------------
# The study.
mkdir -p "$opt_out"
opt_out=$(cd "$opt_out" && pwd)
runs_csv=$opt_out/runs.csv
runs_tsv=$opt_out/plot/runs.tsv
cpu_csv=$opt_out/cpu.csv
cpu_line=""
echo "system,n,rep,seconds,cpus,machine_busy,origin_cpu_s,tracker_cpu_s,downloaders_cpu_s,max_downloader_cpu_s,machine_bound" >"$cpu_csv"
mkdir -p "$opt_out/plot"
: >"$runs_tsv"
echo "system,n,rep,host,up_cap_Bps,down_cap_Bps,start_s,complete_s,identical,uploaded_B,downloaded_B,status" >"$runs_csv"
stop_csv=$opt_out/tracker_stop.csv
rm -f "$stop_csv"
if [ -n "$opt_tracker_stop" ] && has_system p2p; then
  echo "system,n,rep,stop_fraction,stop_s,host,held_at_stop,peers_at_stop,sessions_before,sessions_after,lost_after,pex_dials_after,known_dials_after" >"$stop_csv"
fi

if [ "$opt_loopback" = 0 ]; then
  net_up
  where="network namespaces $prefix-* joined by a bridge, tbf caps on each veth, MTU $opt_mtu, TCP congestion control $(ip netns exec "$prefix-or" cat /proc/sys/net/ipv4/tcp_congestion_control)"
else
  where="loopback (127.0.0.1), shoal's own rate limits, TCP congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control)"
fi
mib_text=$(calc "$size / 1048576" | awk '{ printf "%g", $1 }')
hetero_text=""
leaves_text=""
extra_flags=""
plot_extra=""
if [ "$opt_hetero" = 1 ]; then
  hetero_text=" (even-numbered downloaders at a quarter: hetero)"
  extra_flags+=" --hetero"
  plot_extra+=" (hetero)"
fi
if [ -n "$opt_peer_down" ]; then
  extra_flags+=" --peer-down $opt_peer_down"
  plot_extra+=", d = $opt_peer_down"
fi
if [ "$opt_origin_leaves" = 1 ]; then
  leaves_text="; origin leaves (p2p) once the first downloader is complete"
  extra_flags+=" --origin-leaves"
  plot_extra+=", origin leaves"
fi
if [ -n "$opt_tracker_stop" ]; then
  leaves_text+="; tracker killed (p2p) once the downloaders hold $opt_tracker_stop of the copies"
  extra_flags+=" --tracker-stop $opt_tracker_stop"
  plot_extra+=", tracker stops at $opt_tracker_stop"
fi
if [ -n "$opt_arrivals" ]; then
  if [ -n "$opt_linger" ]; then
    leaves_text+="; Poisson arrivals at $opt_arrivals a second (seed $opt_seed), each downloader seeding $opt_linger s after it completes"
    plot_extra+=", arrivals $opt_arrivals/s, linger $opt_linger s"
  else
    leaves_text+="; Poisson arrivals at $opt_arrivals a second (seed $opt_seed), each downloader seeding until the run ends"
    plot_extra+=", arrivals $opt_arrivals/s, seeders stay"
  fi
  extra_flags+=" --arrivals $opt_arrivals${opt_linger:+ --linger $opt_linger} --seed $opt_seed"
fi
if [ "$opt_loopback" = 1 ]; then
  extra_flags+=" --loopback"
  plot_extra+=", loopback"
fi
settings_text="file $mib_text MiB of random data; N in ${ns_list[*]}; $opt_reps repetition(s); origin upload $opt_origin_up, downloader upload $opt_peer_up$hetero_text, download cap ${opt_peer_down:-none}$leaves_text; systems ${systems[*]}; $where; $(nproc) CPUs, kernel $(uname -r)"
plot_subtitle="F = $mib_text MiB, u_s = $opt_origin_up, u_i = $opt_peer_up$plot_extra"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "command: bench/compare.sh --n \"$opt_n\" --reps $opt_reps --size $opt_size --origin-up $opt_origin_up --peer-up $opt_peer_up$extra_flags --systems \"${systems[*]}\" --mtu $opt_mtu --cc $opt_cc"
  echo "settings: $settings_text"
  echo "shoal: $("$bin/shoal-peer" --version 2>/dev/null | head -n 1) ($(git rev-parse --short HEAD 2>/dev/null || echo "no git"))"
  if [ -n "$http_server" ]; then
    echo "http: $($http_server -v 2>&1 | head -n 1); $(curl --version | head -n 1)"
  fi
} >"$opt_out/settings.txt"
say "$settings_text"

file=$work/content.bin
head -c "$size" /dev/urandom >"$file"

if [ -n "$opt_arrivals" ]; then
  churn_study
  exit 0
fi

start_cs=0
clock
start_cs=$now
failed_runs=0
for ((rep = 1; rep <= opt_reps; rep++)); do
  for n in "${ns_list[@]}"; do
    # The longest a run may take: three times the client-server bound
    # (the largest of the bounds), plus half a minute for start-up.
    deadline_s=$(awk -v b="$(bound_cs "$n")" 'BEGIN { printf "%d", 3 * b + 30 }')
    for s in "${systems[@]}"; do
      case "$s" in
      p2p | cs) run_shoal "$s" "$n" "$rep" ;;
      http) run_http "$n" "$rep" ;;
      esac
      [ "$run_status" = ok ] || failed_runs=$((failed_runs + 1))
    done
  done
done
clock
say "all runs done in $(((now - start_cs) / 100)) s"

write_summary
write_md
plot_rc=0
plot || plot_rc=1

echo
cat "$opt_out/summary.md" | sed -n '/^| N /,/^$/p'
say "targets:"
targets_text | sed 's/^/  /'
say "results in $opt_out (runs.csv, summary.csv, summary.md, d_vs_n.png, ratio.png, cdf.png)"

status=0
if [ "$failed_runs" -gt 0 ]; then
  warn "$failed_runs run(s) failed; see runs.csv (status column)"
  status=1
fi
[ "$plot_rc" = 0 ] || status=1

if [ "$opt_check" = 1 ]; then
  bad=()
  if [ "$failed_runs" -gt 0 ]; then bad+=("$failed_runs run(s) failed"); fi
  if awk -F, 'NR > 1 && $4 != "origin" && $9 != "1" { exit 1 }' "$runs_csv"; then :; else
    bad+=("a copy differs from the original or is missing")
  fi
  if has_system p2p && has_system cs && printf '%s\n' "${ns_list[@]}" | grep -qx 4; then
    d_p2p=$(awk -F, '$1 == "p2p" && $2 == 4 { print $5 }' "$opt_out/summary.csv")
    d_cs=$(awk -F, '$1 == "cs" && $2 == 4 { print $5 }' "$opt_out/summary.csv")
    if [ -z "$d_p2p" ] || [ -z "$d_cs" ] || [ "$d_p2p" = NA ] || [ "$d_cs" = NA ] ||
      ! awk -v a="$d_p2p" -v b="$d_cs" 'BEGIN { exit !(a < b) }'; then
      bad+=("shoal p2p D at N=4 ($d_p2p s) is not below shoal cs D ($d_cs s)")
    else
      say "check: shoal p2p D at N=4 $d_p2p s < shoal cs D $d_cs s"
    fi
  fi
  for f in runs.csv summary.csv summary.md d_vs_n.png ratio.png cdf.png; do
    [ -s "$opt_out/$f" ] || bad+=("$f was not written")
  done
  if [ -n "$opt_tracker_stop" ] && has_system p2p; then
    # A run whose tracker was never stopped has failed (above); each run
    # that stopped it has a row per downloader.
    if [ "$(awk -F, 'NR > 1' "$stop_csv" 2>/dev/null | wc -l)" -lt "$(awk -F, '$1 == "p2p" && $4 != "origin" && $12 == "ok"' "$runs_csv" | wc -l)" ]; then
      bad+=("tracker_stop.csv lacks rows for runs whose tracker was stopped")
    else
      say "check: the tracker was killed in every shoal p2p run and every downloader completed"
    fi
  fi
  if [ "${#bad[@]}" -gt 0 ]; then
    for f in "${bad[@]}"; do warn "check FAILED: $f"; done
    exit 1
  fi
  say "check: every copy identical; runs.csv, summary.csv, summary.md and plots written"
  say "check OK"
fi
exit "$status"
