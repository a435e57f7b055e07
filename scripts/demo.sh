#!/usr/bin/env bash
# `make demo` (after `make static`): the whole story on the local backend.
#   1. bake v1 of the searchd image (and again: same inputs, same id, nothing launched)
#   2. roll up 3 instances behind the local load balancer, query through it
#   3. bake v2 from changed data (one more book)
#   4. roll out v2 blue/green under load (wrk), with a shadow bake time, and
#      print the evidence summary
#   5. roll back (one switch to the standby) under load
#   6. roll status, roll down
set -euo pipefail
cd "$(dirname "$0")/.."

SEARCHD="${KILN_STATIC_SEARCHD:-$PWD/target/x86_64-unknown-linux-gnu/release/searchd}"
STATE="${KILN_STATE_DIR:-$PWD/build/demo-state}"
export KILN_STATIC_SEARCHD="$SEARCHD" KILN_STATE_DIR="$STATE"
[ -x "$SEARCHD" ] || { echo "demo: no searchd at $SEARCHD (run make static)" >&2; exit 1; }

echo "== building bake and roll (local backend only: the AWS SDK is not needed here)" >&2
cargo build --release -q -p bake -p roll --no-default-features
BAKE="$PWD/target/release/bake"
ROLL="$PWD/target/release/roll"

WORK="$(mktemp -d)"
WRK_PID=""
cleanup() {
    if [ -n "$WRK_PID" ]; then kill "$WRK_PID" 2>/dev/null || true; fi
    "$ROLL" down --group web >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# A group left over from an interrupted demo.
"$ROLL" down --group web >/dev/null 2>&1 || true

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
load() {  # load SECONDS OUT: wrk through the balancer, or a curl loop without wrk
    if command -v wrk >/dev/null; then
        wrk -t2 -c8 -d"$1"s -s bench/wrk_queries.lua "$URL" > "$2" 2>&1 &
    else
        ( end=$(( $(date +%s) + $1 )); n=0; bad=0
          while [ "$(date +%s)" -lt "$end" ]; do
              curl -fs "$URL/books?query=alan" >/dev/null || bad=$((bad+1)); n=$((n+1))
          done; echo "$n requests, $bad failed (curl loop; install wrk for more load)" ) > "$2" 2>&1 &
    fi
    WRK_PID=$!
}
show_load() {
    wait "$WRK_PID" || true; WRK_PID=""
    grep -E "requests in|Non-2xx|Socket errors|Requests/sec|failed" "$1" | sed 's/^/   load: /' >&2 || true
}

echo "== 1. baking v1 (images/searchd.toml, state dir $STATE)" >&2
start=$(date +%s%N)
V1="$("$BAKE" build images/searchd.toml)"
echo "v1 = $V1 ($(ms "$start") ms)" >&2
start=$(date +%s%N)
[ "$("$BAKE" build images/searchd.toml)" = "$V1" ] || { echo "demo: rebake gave another id" >&2; exit 1; }
echo "unchanged rebake: same id in $(ms "$start") ms, nothing launched" >&2

echo "== 2. roll up: 3 instances of v1 behind the local balancer" >&2
PORT="$(free_port)"
start=$(date +%s%N)
URL="$("$ROLL" up --group web --image "$V1" --size 3 --listen "127.0.0.1:$PORT" --health-interval 250ms --health-timeout 250ms --deregistration-delay 10s)"
echo "balancer $URL, 3 healthy instances in $(ms "$start") ms" >&2
for q in "/books?query=alan&ids=3" "/books?query=title:hist&ids=2" "/books?query=hemingwai~&ids=2"; do
    echo "GET $q"
    curl -fsS "$URL$q"
    echo
done

echo "== 3. baking v2 from changed data (one more book)" >&2
cp -r images "$WORK/images"
printf '\n541,"Alan Turing: The Enigma","Hodges, Andrew",1983,Simon & Schuster,Biography\n' >> "$WORK/images/books/books.csv"
V2="$("$BAKE" build "$WORK/images/searchd.toml")"
echo "v2 = $V2" >&2

echo "== 4. roll out v2, blue/green, under load; 3 s of shadow comparison before the switch" >&2
load 12 "$WORK/out.load"
sleep 1
"$ROLL" out --group web --image "$V2" --strategy blue-green --bake-time 3s --shadow-percent 20 \
    --report "$STATE/last-roll.json" >/dev/null
echo "GET /books?query=alan&ids=3 (v2 knows the Turing biography)"
curl -fsS "$URL/books?query=alan&ids=3"; echo
show_load "$WORK/out.load"
echo "   evidence: $STATE/last-roll.json" >&2

echo "== 5. roll back: one switch to the v1 standby, under load" >&2
load 4 "$WORK/back.load"
sleep 1
start=$(date +%s%N)
"$ROLL" back --group web >/dev/null
echo "rolled back in $(ms "$start") ms (the whole command)" >&2
show_load "$WORK/back.load"

echo "== 6. roll status, roll down" >&2
"$ROLL" status --group web
"$ROLL" down --group web
