#!/usr/bin/env bash
# make demo: a tracker on loopback and five peers meeting through it.
#
# Until the peer binary exists (it is the next step), the peers are played
# by tests/demo_tracker: real identities, a real signed manifest of a
# generated file, real signed announces, a catalog search and a swarm
# lookup, every reply verified against the tracker's key. Everything it
# starts is stopped by PID and its files removed, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SHOAL_BIN:-build/bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo-XXXXXX")
tracker_pid=""

cleanup() {
  if [ -n "$tracker_pid" ] && kill -0 "$tracker_pid" 2>/dev/null; then
    kill -TERM "$tracker_pid" 2>/dev/null || true
    wait "$tracker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "demo: generating an 8 MiB file"
head -c $((8 << 20)) /dev/urandom > "$work/holiday-video.bin"

echo "demo: starting shoal-tracker on 127.0.0.1"
"$bin/shoal-tracker" --listen 127.0.0.1:0 --key "$work/tracker.key" \
  --log-file "$work/tracker.log" > "$work/tracker.out" &
tracker_pid=$!

# Wait for the tracker to print its port and key, with a deadline.
port=""; key=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/tracker.out")
  key=$(sed -n 's/^tracker key \([a-z2-7]*\)$/\1/p' "$work/tracker.out")
  [ -n "$port" ] && [ -n "$key" ] && break
  kill -0 "$tracker_pid" 2>/dev/null || { echo "demo: the tracker exited"; cat "$work/tracker.log"; exit 1; }
  sleep 0.1
done
if [ -z "$port" ] || [ -z "$key" ]; then
  echo "demo: the tracker did not start within 10 s"; exit 1
fi
echo "demo: tracker listening on 127.0.0.1:$port, key $key"

build/tests/demo_tracker "$port" "$key" "$work/holiday-video.bin"

kill -TERM "$tracker_pid"
wait "$tracker_pid"
tracker_pid=""
echo "demo: tracker log:"
sed 's/^/  /' "$work/tracker.log"
echo "demo: OK"
