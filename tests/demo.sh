#!/usr/bin/env bash
# make demo: a tracker on loopback and five peers sharing a file and a folder.
#
# Peer 1 shares a 64 MiB file and a small folder tree. Peers 2-5 each run
# one `get` with both links, so each fetches both contents at the same time
# in one process. Downloads are capped at 16 MiB/s each and peer 1 uploads at most 16 MiB/s,
# so the four downloaders can only finish in time by trading chunks.
# Every copy is compared byte for byte. Everything started here is stopped by
# PID and the temp folder removed, also on failure or ^C.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SHOAL_BIN:-build/bin}
rate=16M
rate_text="16 MiB/s"
deadline_s=45
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo-XXXXXX")
pids=()

say() { printf 'demo: %s\n' "$*"; }
die() {
  printf 'demo: FAILED: %s\n' "$*" >&2
  exit 1
}

cleanup() {
  local rc=$? pid left i
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Give them 3 s to stop (a peer says "stopped" to the tracker first).
  for i in $(seq 1 30); do
    left=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then left=1; fi
    done
    if [ "$left" = 0 ]; then break; fi
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints the last lines of a process's stderr, for a failure message.
show_err() {
  if [ -s "$1" ]; then
    echo "--- $(basename "$1"):" >&2
    tail -n 5 "$1" >&2
  fi
}

# A whole number after "key": in the last line of file $1 that holds event $2.
json_num() {
  { grep "\"event\":\"$2\"" "$1" || true; } | tail -n 1 |
    { grep -o "\"$3\":[0-9.]*" || true; } | head -n 1 | cut -d: -f2
}

mib() { awk -v b="${1:-0}" 'BEGIN { printf "%.1f", b / 1048576 }'; }

for exe in shoal-tracker shoal-peer; do
  [ -x "$bin/$exe" ] || die "$bin/$exe is missing (run make)"
done

mkdir -p "$work/home"

# Content: a 64 MiB file and a folder with nested folders and an empty file.
head -c $((64 << 20)) /dev/urandom > "$work/holiday-video.bin"
mkdir -p "$work/photos/2024/beach" "$work/photos/2023"
head -c 300000 /dev/urandom > "$work/photos/2024/beach/sunset.jpg"
head -c 123457 /dev/urandom > "$work/photos/2024/beach/dunes.jpg"
head -c 54321 /dev/urandom > "$work/photos/2023/garden.jpg"
printf 'Holiday photos, 2023 and 2024.\n' > "$work/photos/README.txt"
: > "$work/photos/2023/empty.txt"

"$bin/shoal-tracker" --listen 127.0.0.1:0 --key "$work/tracker.key" \
  --log-file "$work/tracker.log" > "$work/tracker.out" 2> "$work/tracker.err" &
pids+=($!)
tracker_pid=$!
port=""
key=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/tracker.out")
  key=$(sed -n 's/^tracker key \([a-z2-7]*\)$/\1/p' "$work/tracker.out")
  [ -n "$port" ] && [ -n "$key" ] && break
  kill -0 "$tracker_pid" 2>/dev/null || { show_err "$work/tracker.err"; die "the tracker exited"; }
  sleep 0.1
done
if [ -z "$port" ] || [ -z "$key" ]; then die "the tracker did not start within 10 s"; fi
say "tracker on 127.0.0.1:$port"

common=(--listen 127.0.0.1:0 --interval-cap 2 --json)

"$bin/shoal-peer" share "$work/holiday-video.bin" "$work/photos" \
  --tracker "127.0.0.1:$port" --tracker-key "$key" --home "$work/home/p1" \
  --upload-rate "$rate" "${common[@]}" > "$work/p1.out" 2> "$work/p1.err" &
pids+=($!)
seeder_pid=$!
link_video=""
link_photos=""
for _ in $(seq 1 200); do
  link_video=$(grep '"event":"shared","name":"holiday-video.bin"' "$work/p1.out" |
    sed -n 's/.*"link":"\([^"]*\)".*/\1/p' || true)
  link_photos=$(grep '"event":"shared","name":"photos"' "$work/p1.out" |
    sed -n 's/.*"link":"\([^"]*\)".*/\1/p' || true)
  [ -n "$link_video" ] && [ -n "$link_photos" ] && break
  kill -0 "$seeder_pid" 2>/dev/null || { show_err "$work/p1.err"; die "peer 1 (share) exited"; }
  sleep 0.1
done
if [ -z "$link_video" ] || [ -z "$link_photos" ]; then
  die "peer 1 printed no share links within 20 s"
fi
say "peer 1 shares holiday-video.bin (64 MiB) and photos/ (5 files, one empty)"
say "  link: $link_video"
say "peers 2-5 fetch both at once (one 'get' with both links each); each"
say "  downloads at most $rate_text and peer 1 uploads at most $rate_text,"
say "  so the peers must trade chunks"

get_pids=()
get_names=()
start=$(date +%s.%N)
for p in 2 3 4 5; do
  mkdir -p "$work/peer$p"
  "$bin/shoal-peer" get "$link_video" "$link_photos" -o "$work/peer$p" \
    --home "$work/home/p$p" --download-rate "$rate" "${common[@]}" \
    > "$work/p$p.out" 2> "$work/p$p.err" &
  pids+=($!)
  get_pids+=($!)
  get_names+=("p$p")
done

# Wait for every get to exit by itself (each exits 0 once its copy is
# verified), with a deadline.
left=${#get_pids[@]}
declare -A done_rc=()
end=$(($(date +%s) + deadline_s))
while [ "$left" -gt 0 ]; do
  for i in "${!get_pids[@]}"; do
    pid=${get_pids[$i]}
    [ -n "${done_rc[$i]:-}" ] && continue
    kill -0 "$pid" 2>/dev/null && continue
    if wait "$pid"; then rc=0; else rc=$?; fi
    done_rc[$i]=$rc
    left=$((left - 1))
    if [ "$rc" != 0 ]; then
      show_err "$work/${get_names[$i]}.err"
      die "peer ${get_names[$i]#p} exited with status $rc"
    fi
  done
  [ "$left" -gt 0 ] || break
  if [ "$(date +%s)" -ge "$end" ]; then
    die "$left download(s) not finished after $deadline_s s"
  fi
  kill -0 "$seeder_pid" 2>/dev/null || { show_err "$work/p1.err"; die "peer 1 exited"; }
  sleep 0.1
done
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

for p in 2 3 4 5; do
  cmp -s "$work/holiday-video.bin" "$work/peer$p/holiday-video.bin" ||
    die "peer $p: holiday-video.bin differs from the original"
  diff -r "$work/photos" "$work/peer$p/photos" > /dev/null ||
    die "peer $p: photos/ differs from the original"
  if [ ! -f "$work/peer$p/photos/2023/empty.txt" ] ||
    [ -s "$work/peer$p/photos/2023/empty.txt" ]; then
    die "peer $p: the empty file is missing"
  fi
done
say "all 4 peers done in $elapsed s; every copy matches byte for byte"

# Stop peer 1 and the tracker; peer 1 prints its totals on exit.
kill -TERM "$seeder_pid"
if wait "$seeder_pid"; then rc=0; else rc=$?; fi
[ "$rc" = 0 ] || { show_err "$work/p1.err"; die "peer 1 exited with status $rc on SIGTERM"; }
kill -TERM "$tracker_pid"
wait "$tracker_pid" || die "the tracker did not exit cleanly"

seed_up=$(json_num "$work/p1.out" stats uploaded)
[ -n "$seed_up" ] || die "peer 1 printed no stats"
echo
printf '%-6s %-14s %-14s %12s %12s\n' peer holiday-video photos uploaded downloaded
printf '%-6s %-14s %-14s %8s MiB %8s MiB\n' 1 shared shared "$(mib "$seed_up")" \
  "$(mib "$(json_num "$work/p1.out" stats downloaded)")"
traded=0
for p in 2 3 4 5; do
  f="$work/p$p.out"
  times=()
  for c in holiday-video.bin photos; do
    s=$({ grep '"event":"complete"' "$f" || true; } | grep "/$c\"" |
      { grep -o '"seconds":[0-9.]*' || true; } | head -n 1 | cut -d: -f2)
    [ -n "$s" ] || die "peer $p printed no complete event for $c"
    times+=("$(awk -v s="$s" 'BEGIN { printf "%.1f s", s }')")
  done
  up=$(json_num "$f" stats uploaded)
  down=$(json_num "$f" stats downloaded)
  if [ -z "$up" ] || [ -z "$down" ]; then die "peer $p printed no stats"; fi
  traded=$((traded + up))
  printf '%-6s %-14s %-14s %8s MiB %8s MiB\n' "$p" "${times[0]}" "${times[1]}" \
    "$(mib "$up")" "$(mib "$down")"
done
echo
say "peer 1 uploaded $(mib "$seed_up") MiB; peers 2-5 uploaded $(mib "$traded") MiB to each other"
content=$(find "$work/holiday-video.bin" "$work/photos" -type f -printf '%s\n' |
  awk '{ s += $1 } END { print s }')
say "(peer 1 alone, at $rate_text, would have needed $(awk -v b="$content" \
  'BEGIN { printf "%.1f", 4 * b / 16777216 }') s for 4 copies)"
say "OK"
