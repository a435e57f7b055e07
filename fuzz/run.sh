#!/usr/bin/env bash
# make fuzz: run every fuzz target for a bounded time (FUZZ_SECONDS each, default 60).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP enables them on the one
# stable toolchain this machine has.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
mkdir -p corpus/snapshot
# Seed the snapshot fuzzer with a real snapshot.
if [ ! -s corpus/snapshot/books.idx ]; then
  cargo run -q --release --manifest-path ../Cargo.toml -p searchd -- \
    index --def ../images/books/index.toml --out corpus/snapshot/books.idx >/dev/null
fi
# damaged: the books snapshot (built in-process) with bytes inside its
# sections overwritten, opened with structure-only verification.
# snapshot: inputs as long as the seed (the books snapshot, ~330 KB), so
# mutations reach its sections and not only the header.
for target in query snapshot damaged; do
  max_len=65536
  [ "$target" = snapshot ] && max_len=$(( $(stat -c %s corpus/snapshot/books.idx) + 4096 ))
  echo "fuzzing $target for ${SECONDS_EACH}s" >&2
  cargo fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len="$max_len"
done
