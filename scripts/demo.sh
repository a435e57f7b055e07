#!/usr/bin/env bash
# `make demo` (after `make static`): index the books, bake the searchd image
# on the local backend, start the baked searchd from the image's root file
# system on a free loopback port, wait for /ready, ask a few queries, stop.
set -euo pipefail
cd "$(dirname "$0")/.."

SEARCHD="${KILN_STATIC_SEARCHD:-$PWD/target/x86_64-unknown-linux-gnu/release/searchd}"
STATE="${KILN_STATE_DIR:-$PWD/build/demo-state}"
export KILN_STATIC_SEARCHD="$SEARCHD"
[ -x "$SEARCHD" ] || { echo "demo: no searchd at $SEARCHD (run make static)" >&2; exit 1; }

echo "== building bake (local backend only: the AWS SDK is not needed here)" >&2
cargo build --release -q -p bake --no-default-features
BAKE="$PWD/target/release/bake"

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== indexing images/books" >&2
"$SEARCHD" index --def images/books/index.toml --out "$WORK/books.idx" >&2

echo "== baking images/searchd.toml (state dir $STATE)" >&2
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
start=$(date +%s%N)
IMAGE="$("$BAKE" --state-dir "$STATE" build images/searchd.toml)"
echo "image $IMAGE ($(ms "$start") ms)" >&2
start=$(date +%s%N)
again="$("$BAKE" --state-dir "$STATE" build images/searchd.toml)"
[ "$again" = "$IMAGE" ] || { echo "demo: rebake gave $again, not $IMAGE" >&2; exit 1; }
echo "unchanged rebake: same id in $(ms "$start") ms, nothing launched" >&2
"$BAKE" --state-dir "$STATE" show "$IMAGE" >&2

echo "== starting searchd from the image's root" >&2
ROOT="$WORK/root"
mkdir -p "$ROOT"
zstd -q -dc "$STATE/images/$IMAGE/rootfs.tar.zst" | tar -x -C "$ROOT"
SNAPSHOT="$(sed -n 's/^SEARCHD_SNAPSHOT=//p' "$ROOT/etc/kiln/searchd.env")"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ADDR="127.0.0.1:$PORT"
"$ROOT/opt/kiln/bin/searchd" serve --snapshot "$ROOT$SNAPSHOT" --listen "$ADDR" --image "$IMAGE" &
PID=$!

ready=""
for _ in $(seq 1 100); do
    if curl -fs "http://$ADDR/ready" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$ready" ]; then
    echo "demo: searchd did not become ready on $ADDR" >&2
    exit 1
fi
echo "searchd ready on $ADDR" >&2

for q in "/version" "/books?query=alan&ids=3" "/books?query=title:hist&ids=2" "/books?query=hemingwai~&ids=2"; do
    echo "GET $q"
    curl -fsS "http://$ADDR$q"
    echo
done

echo "== stopping searchd" >&2
kill -TERM "$PID"
wait "$PID" || true
PID=""
