#!/usr/bin/env bash
# make bench: side-by-side benchmarks, printed as ratios against peers
# measured in the same run on the same machine. Never asserted in tests.
# See bench/README.md for what each number means and the knobs below.
#
#   PICKY_SRC     extracted floere/picky tree: also benchmark the real Picky
#                 (2 puma workers); unset: that half is skipped.
#   BENCH_QUICK=1 shorter runs (3 s per wrk run, 1 s warm-ups, fewer starts).
#   BENCH_DOCS    documents in the synthetic corpus (default 1000000).
#   BENCH_STREAM  distinct queries in the scale section's uncached stream
#                 (default 60000).
#   BENCH_TANTIVY a tantivy-cli binary to compare with (default: installed
#                 into build/tantivy-cli by cargo install on first use).
#   BENCH_ROUNDS  rounds of the alternating throughput and balancer runs
#                 (default 3, quick 2).
#   BENCH_DURATION  seconds per measured wrk run (default 10, quick 3).
#   BENCH_ONLY    comma list of sections: throughput,scale,bake,balancer
#                 (default all).
#   BENCH_OUT     output directory (default build/bench).
#
# Everything runs on 127.0.0.1, every wait is bounded, and every process
# started here is stopped by the EXIT trap, whatever happens.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
# shellcheck source=bench/balancer.sh
. "$HERE/balancer.sh"

QUICK=${BENCH_QUICK:-0}
DOCS=${BENCH_DOCS:-1000000}
STREAM=${BENCH_STREAM:-60000}
ONLY=${BENCH_ONLY:-throughput,scale,bake,balancer}
OUT=${BENCH_OUT:-$REPO/build/bench}
if [ "$QUICK" = 1 ]; then
  DUR=${BENCH_DURATION:-3}; WARM=1; STARTS=5; BAKE_RUNS=3; ROUNDS=${BENCH_ROUNDS:-2}
else
  DUR=${BENCH_DURATION:-10}; WARM=5; STARTS=20; BAKE_RUNS=5; ROUNDS=${BENCH_ROUNDS:-3}
fi
case "$DOCS$ROUNDS$DUR$STREAM" in *[!0-9]*) die "BENCH_DOCS, BENCH_ROUNDS, BENCH_DURATION and BENCH_STREAM must be whole numbers" ;; esac
{ [ "$DOCS" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$DUR" -ge 1 ] && [ "$STREAM" -ge 1 ]; } \
  || die "BENCH_DOCS, BENCH_ROUNDS, BENCH_DURATION, BENCH_STREAM must be >= 1"
want() { [[ ",$ONLY," == *",$1,"* ]]; }

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/work.XXXXXX")
RAW="$OUT/raw.jsonl"
: >"$RAW"
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  cleanup_all
  rm -rf "$WORK"
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

ensure_tools

# 1. Build (release) ---------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
CARGO=${CARGO:-cargo}
log "building searchd and benchkit (release)"
"$CARGO" build --release -q -p searchd -p benchkit || die "cargo build failed"
SEARCHD="$TARGET_DIR/release/searchd"
FIXED="$TARGET_DIR/release/fixed-body"
CORPUS="$TARGET_DIR/release/corpus"
PROBE="$TARGET_DIR/release/benchprobe"

log "indexing images/books/index.toml"
"$SEARCHD" index --def images/books/index.toml --out "$WORK/books.idx" >/dev/null 2>"$WORK/index-books.log" \
  || { cat "$WORK/index-books.log" >&2; die "indexing the books failed"; }

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
record "{\"kind\":\"meta\",\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\",\"nproc\":$(nproc),\"cpu\":$(json_str "${cpu:-unknown}"),\"kernel\":$(json_str "$(uname -r)"),\"wrk\":$(json_str "$(wrk -v 2>&1 | head -1)"),\"searchd\":$(json_str "$("$SEARCHD" --version)"),\"quick\":$([ "$QUICK" = 1 ] && echo true || echo false),\"duration_s\":$DUR,\"warmup_s\":$WARM,\"rounds\":$ROUNDS}"

serve_help=$("$SEARCHD" serve --help 2>&1 || true)

# How busy the machine is without us: other processes' CPU share over 2 s.
busy=$(cpu_busy_pct 2)
record "{\"kind\":\"meta\",\"cpu_busy_before_pct\":$busy}"
if [ "$busy" -ge 15 ]; then
  log "WARNING: the machine was ${busy}% busy before the runs (other processes): expect noisy numbers"
fi
# start_searchd SNAPSHOT LOG [ARGS...]: starts `searchd serve` on a free
# port; sets SD_PID and SD_ADDR. Returns 1 when it does not become ready.
start_searchd() {
  local snap=$1 logf=$2 port
  shift 2
  port=$("$PROBE" free-port)
  SD_ADDR="127.0.0.1:$port"
  "$SEARCHD" serve --snapshot "$snap" --listen "$SD_ADDR" "$@" >/dev/null 2>"$logf" </dev/null &
  SD_PID=$!
  track "$SD_PID" searchd
  if ! wait_ready "$SD_ADDR" /ready "$SD_PID" 60000; then
    sed -n 1,20p "$logf" >&2
    untrack_stop "$SD_PID"
    return 1
  fi
}

# 2. Throughput: searchd vs fixed-body vs Picky on the books mix ------------
throughput() {
  local lua="$HERE/wrk_queries.lua" servers=() urls=() pids=()
  log "throughput: starting searchd on the books snapshot"
  if ! start_searchd "$WORK/books.idx" "$WORK/searchd-books.log"; then
    skip throughput "searchd serve did not become ready (is it built yet? see above)"
    return 0
  fi
  local body
  body=$(avg_body_bytes "http://$SD_ADDR" "$lua") || die "searchd did not answer the query mix with 200s"
  log "searchd's average answer over the 20-query mix: $body bytes"
  record "{\"kind\":\"meta\",\"books_avg_body_bytes\":$body}"
  servers+=(searchd); urls+=("http://$SD_ADDR"); pids+=("$SD_PID")

  # The 20-query mix repeats, so after the warm-up every answer comes from
  # searchd's answer cache. The same server with the cache off measures
  # the engine itself.
  if grep -q -- '--cache-mb' <<<"$serve_help"; then
    start_searchd "$WORK/books.idx" "$WORK/searchd-books-nocache.log" --cache-mb 0 \
      || die "searchd --cache-mb 0 did not start"
    servers+=(searchd-nocache); urls+=("http://$SD_ADDR"); pids+=("$SD_PID")
  else
    skip searchd-nocache "searchd serve has no --cache-mb flag"
  fi

  local fport fpid
  fport=$("$PROBE" free-port)
  "$FIXED" --size "$body" --listen "127.0.0.1:$fport" >/dev/null 2>"$WORK/fixed-body.log" </dev/null &
  fpid=$!
  track "$fpid" fixed-body
  wait_ready "127.0.0.1:$fport" /ready "$fpid" 20000 || die "fixed-body did not start"
  servers+=(fixed-body); urls+=("http://127.0.0.1:$fport"); pids+=("$fpid")

  local ppid
  if [ -n "${PICKY_SRC:-}" ]; then
    log "throughput: starting the real Picky (2 puma workers) from $PICKY_SRC"
    bash "$HERE/picky/deps.sh" || die "installing Picky's Debian packages failed"
    local pport
    pport=$("$PROBE" free-port)
    ppid=$(PICKY_APP_DIR="$WORK/picky" timeout 180 bash "$HERE/picky/start.sh" "$PICKY_SRC" "$pport" 2 1) \
      || die "the Picky server did not start (see $WORK/picky/log)"
    track "$ppid" picky
    servers+=(picky); urls+=("http://127.0.0.1:$pport"); pids+=("$ppid")
  else
    skip picky "PICKY_SRC is not set (an extracted floere/picky tree): no searchd/Picky ratio"
  fi

  measure_rounds "$lua" servers urls pids
  local i
  for i in "${!pids[@]}"; do
    untrack_stop "${pids[$i]}"
  done
}

# 3. Scale: the synthetic corpus, against tantivy-cli -----------------------
scale() {
  local dir="$WORK/corpus" tdir="$WORK/tantivy" t0 t1 gen
  ensure_tantivy
  gen=(--out "$dir" --docs "$DOCS" --stream "$STREAM")
  [ -z "$TANTIVY" ] || gen+=(--tantivy "$tdir")
  log "scale: generating $DOCS documents and a stream of $STREAM distinct queries${TANTIVY:+, and the documents as JSON Lines for tantivy}"
  t0=$(now_s)
  "$CORPUS" "${gen[@]}" >"$WORK/corpus.json" 2>"$WORK/corpus.log" \
    || { cat "$WORK/corpus.log" >&2; die "corpus generation failed"; }
  t1=$(now_s)
  local src_bytes
  src_bytes=$(stat -c %s "$dir/corpus.csv")
  record "{\"kind\":\"scale\",\"name\":\"docs\",\"value\":$DOCS}"
  record "{\"kind\":\"scale\",\"name\":\"source_bytes\",\"value\":$src_bytes}"
  record "{\"kind\":\"scale\",\"name\":\"corpus_seconds\",\"value\":$(secs "$t0" "$t1")}"
  record "{\"kind\":\"scale\",\"name\":\"stream_queries\",\"value\":$(jq_num "$(cat "$WORK/corpus.json")" stream_queries)}"

  log "scale: indexing (searchd index)"
  run_peak "$WORK/index-corpus.log" 3600 "$SEARCHD" index --def "$dir/index.toml" --out "$dir/corpus.idx" </dev/null \
    || { cat "$WORK/index-corpus.log" >&2; die "indexing the corpus failed"; }
  local snap_bytes
  snap_bytes=$(stat -c %s "$dir/corpus.idx")
  record "{\"kind\":\"scale\",\"name\":\"index_seconds\",\"value\":$RUN_SECS}"
  record "{\"kind\":\"scale\",\"name\":\"index_peak_rss_kib\",\"value\":$RUN_PEAK_KIB}"
  record "{\"kind\":\"scale\",\"name\":\"snapshot_bytes\",\"value\":$snap_bytes}"
  record "{\"kind\":\"scale\",\"name\":\"snapshot_per_source\",\"value\":$(awk "BEGIN{printf \"%.3f\", $snap_bytes/$src_bytes}")}"
  [ -z "$TANTIVY" ] || tantivy_index "$tdir"

  # Start -> first /ready 200, polled tightly by benchprobe (page cache warm:
  # the file was just written).
  local cmd=("$SEARCHD" serve --snapshot "$dir/corpus.idx" --listen '127.0.0.1:{port}') st
  if grep -q -- '--verify' <<<"$serve_help"; then
    local mode
    for mode in background structure full; do
      log "scale: start -> /ready with --verify $mode ($STARTS starts)"
      st=$("$PROBE" startup --runs "$STARTS" --timeout-ms 60000 -- "${cmd[@]}" --verify "$mode") \
        || die "startup measurement (--verify $mode) failed"
      record "{\"kind\":\"scale\",\"name\":\"ready_ms_$mode\",\"value\":$(jq_num "$st" median_ms)}"
      record "{\"kind\":\"scale\",\"name\":\"ready_ms_${mode}_max\",\"value\":$(jq_num "$st" max_ms)}"
    done
  else
    log "scale: start -> /ready, default flags ($STARTS starts)"
    st=$("$PROBE" startup --runs "$STARTS" --timeout-ms 60000 -- "${cmd[@]}") \
      || die "startup measurement failed"
    record "{\"kind\":\"scale\",\"name\":\"ready_ms_default\",\"value\":$(jq_num "$st" median_ms)}"
    skip "scale --verify" "searchd serve has no --verify flag: measured with its default only"
  fi

  # Served with --verify structure when available: a full verify reads the
  # whole file through the mapping, so RSS would count every page of it
  # rather than what the queries touch.
  local verify=()
  grep -q -- '--verify' <<<"$serve_help" && verify=(--verify structure)
  log "scale: serving the corpus ${verify[*]}, warm-up then wrk -t2 -c8 (${DUR}s)"
  start_searchd "$dir/corpus.idx" "$WORK/searchd-corpus.log" "${verify[@]}" || die "searchd did not serve the corpus"
  avg_body_bytes "http://$SD_ADDR" "$dir/queries.lua" >/dev/null || die "the corpus query mix did not answer 200s"
  warm "http://$SD_ADDR" "$dir/queries.lua" "${WARM}s"
  local k
  for k in VmRSS VmHWM RssAnon RssFile; do
    local v
    v=$(proc_kib "$SD_PID" "$k")
    [ -z "$v" ] || record "{\"kind\":\"scale\",\"name\":\"$(scale_key "$k")\",\"value\":$v}"
  done
  run_wrk corpus c8 1 "http://$SD_ADDR" "$dir/queries.lua" "${DUR}s" "$SD_PID"
  record "{\"kind\":\"scale\",\"name\":\"rps\",\"value\":$WRK_RPS}"
  record "{\"kind\":\"scale\",\"name\":\"p50_us\",\"value\":$WRK_P50}"
  record "{\"kind\":\"scale\",\"name\":\"p99_us\",\"value\":$WRK_P99}"
  record "{\"kind\":\"scale\",\"name\":\"cpu_us_per_req\",\"value\":$WRK_SRV_US}"
  record "{\"kind\":\"scale\",\"name\":\"non2xx\",\"value\":$WRK_NON2XX}"

  untrack_stop "$SD_PID"

  # The same with the answer cache off: the engine's own cost at this size.
  if grep -q -- '--cache-mb' <<<"$serve_help"; then
    log "scale: serving the corpus with --cache-mb 0, warm-up then wrk -t2 -c8 (${DUR}s)"
    start_searchd "$dir/corpus.idx" "$WORK/searchd-corpus-nocache.log" "${verify[@]}" --cache-mb 0 \
      || die "searchd --cache-mb 0 did not serve the corpus"
    warm "http://$SD_ADDR" "$dir/queries.lua" "${WARM}s"
    run_wrk corpus-nocache c8 1 "http://$SD_ADDR" "$dir/queries.lua" "${DUR}s" "$SD_PID"
    record "{\"kind\":\"scale\",\"name\":\"rps_nocache\",\"value\":$WRK_RPS}"
    record "{\"kind\":\"scale\",\"name\":\"p50_us_nocache\",\"value\":$WRK_P50}"
    record "{\"kind\":\"scale\",\"name\":\"p99_us_nocache\",\"value\":$WRK_P99}"
    record "{\"kind\":\"scale\",\"name\":\"cpu_us_per_req_nocache\",\"value\":$WRK_SRV_US}"
    record "{\"kind\":\"scale\",\"name\":\"non2xx_nocache\",\"value\":$WRK_NON2XX}"
  else
    start_searchd "$dir/corpus.idx" "$WORK/searchd-corpus.log" "${verify[@]}" \
      || die "searchd did not serve the corpus"
  fi

  # Cost of each query of the mix alone (cache off when possible): 1 s of
  # wrk -t1 -c1 per path.
  log "scale: each query of the corpus mix alone (wrk -t1 -c1, 1 s each)"
  local p one="$WORK/one.lua" total
  while read -r p; do
    printf 'request = function() return wrk.format("GET", "%s") end\n' "$p" >"$one"
    timeout 30 wrk -t1 -c1 -d1s -s "$one" "http://$SD_ADDR" >"$WORK/one.txt" 2>&1 || die "wrk failed on $p"
    total=$(curl -sS --max-time 10 "http://$SD_ADDR$p" | grep -oE '"total":[0-9]+' | cut -d: -f2)
    record "{\"kind\":\"query\",\"set\":\"corpus\",\"path\":$(json_str "$p"),\"rps\":$(awk '/^Requests\/sec:/ {print $2}' "$WORK/one.txt"),\"total\":${total:-0}}"
  done < <(lua_paths "$dir/queries.lua")
  untrack_stop "$SD_PID"

  scale_stream "$dir" "$tdir"
}

# ensure_tantivy: sets TANTIVY to a tantivy-cli binary (BENCH_TANTIVY, or
# build/tantivy-cli/bin/tantivy, installed there by cargo install when
# missing), or to "" with a skip record saying why.
TANTIVY_CLI_VERSION=0.24.0
ensure_tantivy() {
  TANTIVY=""
  local root="$REPO/build/tantivy-cli" ilog="$REPO/build/tantivy-install.log" bin v
  bin=${BENCH_TANTIVY:-$root/bin/tantivy}
  if [ -z "${BENCH_TANTIVY:-}" ] && [ ! -x "$bin" ]; then
    log "scale: installing tantivy-cli $TANTIVY_CLI_VERSION into build/tantivy-cli (cargo install: minutes, once; log: build/tantivy-install.log)"
    mkdir -p "$REPO/build"
    # Its own target dir (the workspace's profile and lock file stay out of
    # it). No --locked: its lock file pins traitobject 0.1.0, which today's
    # rustc rejects. Its release profile asks for full debug info, which
    # only makes the build bigger and slower: off.
    if ! CARGO_TARGET_DIR="$REPO/build/tantivy-target" CARGO_PROFILE_RELEASE_DEBUG=0 \
        timeout --kill-after=30 3600 "$CARGO" install --root "$root" --version "$TANTIVY_CLI_VERSION" tantivy-cli \
        >"$ilog" 2>&1 </dev/null; then
      skip tantivy "cargo install tantivy-cli $TANTIVY_CLI_VERSION failed ($(grep -m 1 '^error' "$ilog" || tail -n 1 "$ilog"); see build/tantivy-install.log): searchd measured alone"
      return 0
    fi
    # Only the binary is needed from here on.
    rm -rf "$REPO/build/tantivy-target"
  fi
  if ! v=$("$bin" --version 2>&1 | head -n 1) || [ -z "$v" ]; then
    skip tantivy "$bin does not run: searchd measured alone"
    return 0
  fi
  TANTIVY=$bin
  # The library version cargo resolved, when the install log is ours.
  local lib=""
  [ -n "${BENCH_TANTIVY:-}" ] || lib=$(grep -oE 'Compiling tantivy v[0-9][^ ]*' "$ilog" 2>/dev/null | head -n 1 | cut -d ' ' -f 3)
  record "{\"kind\":\"meta\",\"tantivy_cli\":$(json_str "$v"),\"tantivy_lib\":$(json_str "${lib:-unknown}"),\"tantivy_cli_path\":$(json_str "$bin")}"
}

# tantivy_index DIR: `tantivy index` over DIR/docs.jsonl (on stdin, default
# flags: what a user runs) into DIR/index (its meta.json written by corpus);
# records the time, peak memory and the size of the index directory.
tantivy_index() {
  local tdir=$1 bytes segments
  log "scale: indexing (tantivy index, default flags, JSON Lines on stdin)"
  if ! run_peak "$WORK/tantivy-index.log" 3600 "$TANTIVY" index -i "$tdir/index" <"$tdir/docs.jsonl"; then
    tail -n 20 "$WORK/tantivy-index.log" >&2
    skip tantivy "tantivy index failed (see above): searchd measured alone"
    TANTIVY=""
    return 0
  fi
  # After its merges (index waits for them): what it serves from.
  bytes=$(du -sb "$tdir/index" | cut -f 1)
  segments=$(grep -o '"segment_id"' "$tdir/index/meta.json" | wc -l)
  record "{\"kind\":\"scale\",\"name\":\"tantivy_index_seconds\",\"value\":$RUN_SECS}"
  record "{\"kind\":\"scale\",\"name\":\"tantivy_index_peak_rss_kib\",\"value\":$RUN_PEAK_KIB}"
  record "{\"kind\":\"scale\",\"name\":\"tantivy_index_bytes\",\"value\":$bytes}"
  record "{\"kind\":\"scale\",\"name\":\"tantivy_segments\",\"value\":$segments}"
  # The input is not needed any more: keep the work directory small.
  rm -f "$tdir/docs.jsonl"
}

# scale_stream DIR TANTIVY_DIR: the uncached stream (corpus --stream),
# side by side: searchd with its answer cache off, tantivy-cli serve (no
# answer cache either) and the fixed-body peer (the machine's limit),
# alternating rounds of c8 and c1.
scale_stream() {
  local dir=$1 tdir=$2 servers=() urls=() pids=() luas=() verify=() sample busy
  if ! grep -q -- '--cache-mb' <<<"$serve_help"; then
    skip "scale stream" "searchd serve has no --cache-mb flag: no uncached stream"
    return 0
  fi
  grep -q -- '--verify' <<<"$serve_help" && verify=(--verify structure)
  busy=$(cpu_busy_pct 2)
  record "{\"kind\":\"meta\",\"cpu_busy_before_stream_pct\":$busy}"
  [ "$busy" -lt 15 ] || log "WARNING: the machine was ${busy}% busy before the stream runs: expect noisy numbers"

  log "scale: the uncached stream: searchd --cache-mb 0${TANTIVY:+, tantivy serve} and fixed-body"
  start_searchd "$dir/corpus.idx" "$WORK/searchd-stream.log" "${verify[@]}" --cache-mb 0 \
    || die "searchd --cache-mb 0 did not serve the corpus"
  local sd_pid=$SD_PID sd_body body matches zero
  sample=$(sample_paths "http://$SD_ADDR" "$dir/stream-searchd.txt" 200 total) \
    || die "searchd did not answer the stream with 200s"
  read -r body matches zero <<<"$sample"
  sd_body=$body
  log "searchd over the first 200 queries: $body bytes an answer, $matches matches on average, $zero without any"
  record "{\"kind\":\"scale\",\"name\":\"stream_body_bytes\",\"value\":$body}"
  record "{\"kind\":\"scale\",\"name\":\"stream_matches\",\"value\":$matches}"
  record "{\"kind\":\"scale\",\"name\":\"stream_zero_matches\",\"value\":$zero}"
  servers+=(scale-searchd); urls+=("http://$SD_ADDR"); pids+=("$sd_pid"); luas+=("$dir/stream-searchd.lua")

  if [ -n "$TANTIVY" ]; then
    local tport tpid ready="/api/?q=ready&nhits=1"
    tport=$("$PROBE" free-port)
    "$TANTIVY" serve -i "$tdir/index" --host 127.0.0.1 --port "$tport" >"$WORK/tantivy-serve.log" 2>&1 </dev/null &
    tpid=$!
    track "$tpid" tantivy
    if ! wait_ready "127.0.0.1:$tport" "$ready" "$tpid" 60000; then
      sed -n 1,20p "$WORK/tantivy-serve.log" >&2
      untrack_stop "$tpid"
      skip tantivy "tantivy serve did not answer (see above): searchd measured alone"
    elif ! sample=$(sample_paths "http://127.0.0.1:$tport" "$dir/stream-tantivy.txt" 200 num_hits); then
      untrack_stop "$tpid"
      skip tantivy "tantivy serve did not answer the stream with 200s: searchd measured alone"
    else
      read -r body matches zero <<<"$sample"
      log "tantivy over the same 200 queries: $body bytes an answer, $matches matches on average, $zero without any"
      record "{\"kind\":\"scale\",\"name\":\"tantivy_stream_body_bytes\",\"value\":$body}"
      record "{\"kind\":\"scale\",\"name\":\"tantivy_stream_matches\",\"value\":$matches}"
      record "{\"kind\":\"scale\",\"name\":\"tantivy_stream_zero_matches\",\"value\":$zero}"
      servers+=(scale-tantivy); urls+=("http://127.0.0.1:$tport"); pids+=("$tpid"); luas+=("$dir/stream-tantivy.lua")
    fi
  fi

  # The limit: the same requests answered with a body of searchd's size.
  local fport fpid
  fport=$("$PROBE" free-port)
  "$FIXED" --size "$sd_body" --listen "127.0.0.1:$fport" \
    >/dev/null 2>"$WORK/fixed-stream.log" </dev/null &
  fpid=$!
  track "$fpid" fixed-body
  wait_ready "127.0.0.1:$fport" /ready "$fpid" 20000 || die "fixed-body did not start"
  servers+=(scale-fixed); urls+=("http://127.0.0.1:$fport"); pids+=("$fpid"); luas+=("$dir/stream-searchd.lua")

  measure_rounds "$dir/stream-searchd.lua" servers urls pids luas
  local i
  for i in "${!pids[@]}"; do
    untrack_stop "${pids[$i]}"
  done
}

scale_key() {
  case "$1" in
    VmRSS) echo rss_kib ;; VmHWM) echo hwm_kib ;; RssAnon) echo rss_anon_kib ;; RssFile) echo rss_file_kib ;;
  esac
}

# jq_num JSON KEY: a numeric field of a flat JSON object (no jq needed).
jq_num() { grep -oE "\"$2\":-?[0-9.eE+-]+" <<<"$1" | head -1 | cut -d: -f2; }

# 4. Bake timing (issue 4) ---------------------------------------------------
bake_timing() {
  if [ ! -f bake/Cargo.toml ]; then
    skip bake "no bake crate yet"
    return 0
  fi
  log "bake: building bake (release)"
  if ! "$CARGO" build --release -q -p bake 2>"$WORK/bake-build.log"; then
    skip bake "bake does not build yet (cargo build -p bake failed)"
    return 0
  fi
  local bake_bin="$TARGET_DIR/release/bake" recipe=images/searchd.toml
  [ -f "$recipe" ] || { skip bake "no $recipe yet"; return 0; }
  "$bake_bin" --help >/dev/null 2>&1 || { skip bake "bake --help failed"; return 0; }
  local state="$WORK/kiln-state" bake_cmd
  bake_cmd=("$bake_bin" build "$recipe" --state-dir "$state")
  "${bake_cmd[@]}" --help >/dev/null 2>&1 || bake_cmd=("$bake_bin" "$recipe" --state-dir "$state")
  # One bake first: it must work at all (and the artifacts must exist).
  if ! timeout 300 "${bake_cmd[@]}" >"$WORK/bake.out" 2>"$WORK/bake.err"; then
    sed -n 1,20p "$WORK/bake.err" >&2
    skip bake "a local bake of $recipe failed (see above; make static builds its searchd)"
    return 0
  fi
  local q
  q=$(printf '%q ' "${bake_cmd[@]}")
  if command -v hyperfine >/dev/null; then
    log "bake: cold local bakes ($BAKE_RUNS runs, empty state dir each)"
    hyperfine -N --style none --runs "$BAKE_RUNS" --prepare "rm -rf $(printf %q "$state")" \
      --export-json "$WORK/bake-cold.json" "$q" >/dev/null 2>"$WORK/hyperfine.err" \
      || { cat "$WORK/hyperfine.err" >&2; die "hyperfine (cold bake) failed"; }
    log "bake: unchanged rebakes (20 runs)"
    hyperfine -N --style none --warmup 1 --runs 20 \
      --export-json "$WORK/bake-warm.json" "$q" >/dev/null 2>"$WORK/hyperfine.err" \
      || { cat "$WORK/hyperfine.err" >&2; die "hyperfine (unchanged bake) failed"; }
    record "{\"kind\":\"bake\",\"name\":\"cold_ms\",\"value\":$(hf_median_ms "$WORK/bake-cold.json")}"
    record "{\"kind\":\"bake\",\"name\":\"unchanged_ms\",\"value\":$(hf_median_ms "$WORK/bake-warm.json")}"
  else
    log "bake: hyperfine missing, timing repeated runs"
    local i t0 t1 cold=() warm=()
    for i in $(seq 1 "$BAKE_RUNS"); do
      rm -rf "$state"; t0=$(now_s); "${bake_cmd[@]}" >/dev/null 2>&1 || die "bake failed"; t1=$(now_s)
      cold+=("$(awk "BEGIN{print ($t1-$t0)*1000}")")
    done
    for i in $(seq 1 20); do
      t0=$(now_s); "${bake_cmd[@]}" >/dev/null 2>&1 || die "bake failed"; t1=$(now_s)
      warm+=("$(awk "BEGIN{print ($t1-$t0)*1000}")")
    done
    record "{\"kind\":\"bake\",\"name\":\"cold_ms\",\"value\":$(printf '%s\n' "${cold[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')}"
    record "{\"kind\":\"bake\",\"name\":\"unchanged_ms\",\"value\":$(printf '%s\n' "${warm[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')}"
  fi
}

# hf_median_ms FILE: hyperfine's median, in milliseconds.
hf_median_ms() {
  local s
  s=$(grep -oE '"median": *[0-9.eE+-]+' "$1" | head -1 | sed 's/.*: *//')
  awk "BEGIN{printf \"%.3f\", $s*1000}"
}

# 5. Balancer: kiln's balancer vs HAProxy, and rollouts under load -----------
# (balancer_bench, bench/balancer.sh).

want throughput && throughput
want scale && scale
want bake && bake_timing
want balancer && balancer_bench

# 6. Report --------------------------------------------------------------------
echo
echo "kiln bench ($(date -u +%FT%TZ), $(nproc) cores, wrk on the same machine; QUICK=$QUICK)"
"$PROBE" report --in "$RAW" --out "$OUT/results.json"
