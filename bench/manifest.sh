#!/usr/bin/env bash
# bench/manifest.sh: how long a downloader waits for a large folder's
# manifest from one seeder and from several, each seeder's uplink capped.
#
# A folder of --files empty files with long names has a manifest of about
# 130 bytes a file and nothing else to fetch, so the wait for the manifest
# is what there is to time. The same content (one publisher key) is shared
# by --seeders seeders: the publisher, and others with keys of their own
# that found the same folder on disk ('get --seed' into it: they check the
# copy and seed it). Each is in a network namespace of its own whose
# uplink a tbf qdisc caps at --up; the tracker and the downloader have
# namespaces of their own, uncapped, all on one bridge. A fresh downloader
# gets the content --reps times while one seeder runs, then --reps times
# while all do. Printed: the manifest's size, the median wait for it each
# way (from the downloader's swarm going "fetching" to "opening", two
# lines of its own debug log, so neither its start nor the making of the
# folder's files counts), the speed-up, and its ratio to the seeders'
# count (their uplinks together against one).
#
# usage: bench/manifest.sh [--files 10000] [--seeders 4] [--up 4mbit]
#                          [--reps 3] [--bin DIR]
#
# Needs root, ip and tc (it says so and exits 0 without them). Everything
# it starts is stopped, and every namespace it made removed, on exit, also
# on failure; every wait has a deadline.
set -euo pipefail

prog=manifest.sh
files=10000
seeders=4
up=4mbit
reps=3
bin=${SHOAL_BIN:-build/bin}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
  --files | --seeders | --up | --reps | --bin)
    [ $# -ge 2 ] || { echo "$prog: $1 needs a value" >&2; exit 2; }
    case $1 in
    --files) files=$2 ;;
    --seeders) seeders=$2 ;;
    --up) up=$2 ;;
    --reps) reps=$2 ;;
    --bin) bin=$2 ;;
    esac
    shift 2
    ;;
  -h | --help) usage; exit 0 ;;
  *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$files" "$seeders" "$reps"; do
  [[ $v =~ ^[1-9][0-9]{0,5}$ ]] || { echo "$prog: '$v' is not a count" >&2; exit 2; }
done
if [ "$seeders" -lt 2 ] || [ "$seeders" -gt 16 ] || [ "$files" -gt 100000 ] ||
  [ "$reps" -gt 20 ]; then
  echo "$prog: --seeders must be 2 to 16, --files at most 100000, --reps at most 20" >&2
  exit 2
fi
[[ $up =~ ^[1-9][0-9]*(k|m)?bit$ ]] || { echo "$prog: --up '$up' is not like 4mbit" >&2; exit 2; }
peer=$(cd "$(dirname "$bin/shoal-peer")" && pwd)/shoal-peer
tracker=$(cd "$(dirname "$bin/shoal-tracker")" && pwd)/shoal-tracker
for b in "$peer" "$tracker"; do
  [ -x "$b" ] || { echo "$prog: $b missing (run make, or give --bin)" >&2; exit 2; }
done
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "$prog: skipped: needs root, ip and tc (network namespaces and tbf caps)"
  exit 0
fi

prefix=shoalm-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-manifest-XXXXXX")
made_ns=()
pids=()
cleanup() {
  local p n
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${made_ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN.
wait_for() {
  local end
  end=$(awk -v t="$(now)" -v s="$3" 'BEGIN { printf "%.3f", t + s }')
  until grep -q -E "$2" "$1" 2>/dev/null; do
    if awk -v t="$(now)" -v e="$end" 'BEGIN { exit !(t > e) }'; then
      echo "$prog: no '$2' in $1 within $3 s:" >&2
      tail -n 5 "$1" "${1%.out}.err" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.02
  done
}

# The network: a bridge, and one namespace per host.
br=$prefix-br
ip netns add "$br"
made_ns+=("$br")
ip -n "$br" link add br0 type bridge
ip -n "$br" link set br0 up
# add_host NAME ADDR UP (0: no cap)
add_host() {
  local ns=$prefix-$1
  ip netns add "$ns"
  made_ns+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "$1" netns "$br"
  ip -n "$br" link set "$1" master br0 up
  ip -n "$ns" addr add "$2/24" dev eth0
  ip -n "$ns" link set eth0 up
  if [ "$3" != 0 ]; then
    tc -n "$ns" qdisc add dev eth0 root tbf rate "$3" burst 16384 latency 50ms
  fi
}
add_host tr 10.203.0.2 0
add_host dl 10.203.0.3 0
for ((k = 1; k <= seeders; k++)); do add_host "s$k" "10.203.0.$((10 + k))" "$up"; done

start_on() { # HOST BASE CMD...: in the background, its PID kept
  local host=$1 base=$2
  shift 2
  ip netns exec "$prefix-$host" "$@" >"$base.out" 2>"$base.err" &
  pids+=($!)
  last_pid=$!
}

start_on tr "$work/tracker" "$tracker" --listen 10.203.0.2:7070 --key "$work/tracker.key"
wait_for "$work/tracker.out" '^tracker key ' 20
trk=10.203.0.2:7070@$(sed -n 's/^tracker key //p' "$work/tracker.out" | head -n 1)

# The folder: empty files with names of 100 bytes.
mkdir -p "$work/src/many"
for ((i = 0; i < files; i++)); do
  printf -v name '%0100d' "$i"
  : >"$work/src/many/$name"
done

# The publisher shares the folder; each other seeder gets it into the
# folder that holds it already, checks the copy and seeds it. The tracker
# lists peers by key: seeders sharing one key would be one peer.
start_seeder() {
  mkdir -p "$work/s$1"
  if [ "$1" = 1 ]; then
    start_on s1 "$work/s1" "$peer" share "$work/src/many" --home "$work/s1" \
      --tracker "$trk" --listen 10.203.0.11:7000 --json --no-config
    # "shared" comes once the tracker lists it.
    wait_for "$work/s1.out" '"event":"shared"' 120
  else
    start_on "s$1" "$work/s$1" "$peer" get "$link" -o "$work/src" --seed \
      --home "$work/s$1" --tracker "$trk" --listen "10.203.0.$((10 + $1)):7000" \
      --json --no-config
    wait_for "$work/s$1.out" '"event":"complete"' 300
  fi
}

# get_once NAME: a fresh downloader; prints the seconds its swarm spent
# fetching the manifest, by its own log's clock.
get_once() {
  local pid
  mkdir -p "$work/$1/out"
  start_on dl "$work/$1" "$peer" get "$link" -o "$work/$1/out" --home "$work/$1" \
    --tracker "$trk" --listen 10.203.0.3:0 --json --no-config --log-level debug
  pid=$last_pid
  wait_for "$work/$1.err" 'fetching -> opening' 300
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk '/: new -> fetching$/ { a = $1 } /: fetching -> opening$/ { b = $1 }
    function secs(t) { split(substr(t, 12, 12), p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
    END { printf "%.2f\n", secs(b) - secs(a) }' "$work/$1.err"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

start_seeder 1
link=$(grep -o '"link":"[^"]*"' "$work/s1.out" | head -n 1 | sed 's/"link":"//; s/"$//')
[ -n "$link" ] || { echo "$prog: the seeder printed no link" >&2; exit 1; }
one=()
for ((r = 1; r <= reps; r++)); do one+=("$(get_once "one-$r")"); done
bytes=$(stat -c %s "$work/one-1/manifests/"* 2>/dev/null | head -n 1)
for ((k = 2; k <= seeders; k++)); do start_seeder "$k"; done
all=()
for ((r = 1; r <= reps; r++)); do all+=("$(get_once "all-$r")"); done

m1=$(printf '%s\n' "${one[@]}" | median)
mk=$(printf '%s\n' "${all[@]}" | median)
echo "$prog: $files empty files, a manifest of ${bytes:-?} bytes; each seeder's uplink $up (tbf), $("$peer" -V 2>/dev/null | head -n 1)"
echo "  wait for the manifest, 1 seeder     ${m1} s   (runs: ${one[*]})"
echo "  wait for the manifest, $seeders seeders    ${mk} s   (runs: ${all[*]})"
awk -v a="$m1" -v b="$mk" -v k="$seeders" 'BEGIN {
  printf "  speed-up                            %.2f   (%d seeders: %.2f of %d)\n", a / b, k, a / b / k, k }'
