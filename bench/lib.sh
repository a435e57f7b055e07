# shellcheck shell=bash
# Helpers for bench/run.sh (sourced, not run). Everything here is bounded in
# time, talks to 127.0.0.1 only, and registers each process it starts so the
# EXIT trap in run.sh stops it whatever happens.

# Processes to stop at exit: "pid name" lines.
BENCH_PIDS=()
# Commands to run at exit before those are stopped (e.g. `roll down`).
BENCH_AT_EXIT=()

# Messages go to fd 3, a copy of the script's stderr, so that they are seen
# even from inside a redirected block (a signal trap can run there).
exec 3>&2
log() { printf '[bench] %s\n' "$*" >&3; }
die() { printf '[bench] error: %s\n' "$*" >&3; exit 1; }

# track PID NAME: stop PID at exit.
track() { BENCH_PIDS+=("$1:$2"); }

# stop_pid PID: SIGTERM, then SIGKILL after 5 s; waits for it to go.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# at_exit NAME CMD...: run CMD (bounded: 60 s) at exit, before the tracked
# processes are stopped; `done_at_exit NAME` drops it once done by hand.
at_exit() {
  local name=$1
  shift
  BENCH_AT_EXIT+=("$name $(printf '%q ' "$@")")
}
done_at_exit() {
  local kept=() e
  for e in "${BENCH_AT_EXIT[@]}"; do
    [ "${e%% *}" = "$1" ] || kept+=("$e")
  done
  BENCH_AT_EXIT=("${kept[@]}")
}

# untrack_stop PID: stop one tracked process now.
untrack_stop() {
  local pid=$1 kept=() e
  stop_pid "$pid"
  for e in "${BENCH_PIDS[@]}"; do
    [ "${e%%:*}" = "$pid" ] || kept+=("$e")
  done
  BENCH_PIDS=("${kept[@]}")
}

cleanup_all() {
  local e
  for e in "${BENCH_AT_EXIT[@]}"; do
    log "at exit: ${e%% *}"
    eval "timeout --kill-after=5 60 ${e#* }" >/dev/null 2>&1 </dev/null || log "at exit: ${e%% *} failed"
  done
  BENCH_AT_EXIT=()
  for e in "${BENCH_PIDS[@]}"; do
    stop_pid "${e%%:*}"
  done
  BENCH_PIDS=()
  # Anything still running inside the bench's own work directory (puma's
  # workers run there; so would a puma whose start script was cut short
  # before it printed the PID).
  [ -n "${WORK:-}" ] || return 0
  local d pid cwd
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    cwd=$(readlink "$d/cwd" 2>/dev/null) || continue
    case "$cwd" in "$WORK"/*) stop_pid "$pid" ;; esac
  done
}

# record JSON: append one raw measurement line.
record() { printf '%s\n' "$1" >>"$RAW"; }

# json_str STRING: a JSON string literal (for the few free-text fields).
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

skip() {
  log "skipping $1: $2"
  record "{\"kind\":\"skip\",\"section\":$(json_str "$1"),\"why\":$(json_str "$2")}"
}

# ensure_tools: wrk (required), hyperfine and haproxy (optional), curl,
# GNU time (/usr/bin/time, for peak memory; without it run_peak polls
# /proc); installed with apt-get when root and missing, as the Makefile's
# deps-apt does.
ensure_tools() {
  local missing=() t
  for t in wrk hyperfine curl haproxy; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  # `time` is also a shell keyword: look for the program itself.
  [ -x /usr/bin/time ] || missing+=(time)
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      >/dev/null 2>&1 || log "apt-get install ${missing[*]} failed"
  fi
  command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk, or run make bench as root)"
  command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
}

# wait_ready ADDR PATH PID [TIMEOUT_MS]: until GET PATH answers 200.
wait_ready() {
  "$PROBE" wait --addr "$1" --path "$2" --pid "$3" --timeout-ms "${4:-20000}"
}

# run_peak LOG LIMIT_S CMD...: runs CMD (stdin inherited, stdout and
# stderr to LOG), killed after LIMIT_S seconds; sets RUN_SECS (wall time,
# seconds) and RUN_PEAK_KIB (peak resident memory in KiB: the largest of
# CMD and anything it waited for, by GNU time's %M; without /usr/bin/time,
# VmHWM polled from /proc every 20 ms over the process tree). Returns
# CMD's exit status.
run_peak() {
  local logf=$1 limit=$2 t0 t1 rc=0
  shift 2
  RUN_PEAK_KIB=0
  t0=$(now_s)
  if [ -x /usr/bin/time ]; then
    local peakf="$WORK/peak.txt"
    # timeout inside time: wait4's rusage counts timeout's waited-for child.
    /usr/bin/time -f %M -o "$peakf" timeout --kill-after=10 "$limit" "$@" >"$logf" 2>&1 || rc=$?
    # On failure time writes "Command exited with non-zero status N" first.
    RUN_PEAK_KIB=$(tail -n 1 "$peakf" 2>/dev/null | grep -E '^[0-9]+$' || echo 0)
  else
    # An explicit <&0: a background command would get /dev/null otherwise.
    timeout --kill-after=10 "$limit" "$@" >"$logf" 2>&1 <&0 &
    local pid=$! p v
    track "$pid" "$1"
    while kill -0 "$pid" 2>/dev/null; do
      for p in $pid $(child_pids "$pid"); do
        v=$(proc_kib "$p" VmHWM 2>/dev/null || true)
        [ -n "$v" ] && [ "$v" -gt "$RUN_PEAK_KIB" ] && RUN_PEAK_KIB=$v
      done
      sleep 0.02
    done
    wait "$pid" || rc=$?
    untrack_stop "$pid"
  fi
  t1=$(now_s)
  # shellcheck disable=SC2034 # read by run.sh
  RUN_SECS=$(secs "$t0" "$t1")
  return "$rc"
}

# lua_paths FILE: the request paths of a wrk query-mix script.
lua_paths() { grep -o '"/[^"]*"' "$1" | tr -d '"'; }

# avg_body_bytes BASE_URL LUA: average body size over the mix (each path
# once); fails when a path does not answer 200.
avg_body_bytes() {
  local base=$1 lua=$2 total=0 n=0 p out code size
  while read -r p; do
    out=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{size_download}' "$base$p") \
      || return 1
    code=${out% *}
    size=${out#* }
    [ "$code" = 200 ] || { log "$p answered $code"; return 1; }
    total=$((total + size))
    n=$((n + 1))
  done < <(lua_paths "$lua")
  [ "$n" -gt 0 ] || return 1
  echo $(((total + n / 2) / n))
}

# sample_paths BASE_URL FILE N KEY: GETs the first N request paths of FILE
# (one a line) and prints "BYTES MATCHES ZERO": the average body size, the
# average of the first number named KEY in the answers (the number of
# matches: searchd's `total`, tantivy's `num_hits`), and how many answers
# had none. Fails when a path does not answer 200.
sample_paths() {
  local base=$1 file=$2 n=$3 key=$4 body="$WORK/sample.body"
  local p out code size hits count=0 bytes=0 matches=0 zero=0
  while read -r p; do
    out=$(curl -sS --max-time 10 -o "$body" -w '%{http_code} %{size_download}' "$base$p") \
      || return 1
    code=${out% *}
    size=${out#* }
    [ "$code" = 200 ] || { log "$p answered $code"; return 1; }
    hits=$(grep -oE "\"$key\": *[0-9]+" "$body" | head -n 1 | grep -oE '[0-9]+$' || true)
    [ -n "$hits" ] || { log "$p: no \"$key\" in the answer"; return 1; }
    count=$((count + 1))
    bytes=$((bytes + size))
    matches=$((matches + hits))
    [ "$hits" -gt 0 ] || zero=$((zero + 1))
  done < <(head -n "$n" "$file")
  [ "$count" -gt 0 ] || return 1
  echo "$(((bytes + count / 2) / count)) $(awk -v m="$matches" -v c="$count" 'BEGIN{printf "%.1f", m / c}') $zero"
}

# run_wrk SERVER LOAD ROUND URL LUA DURATION PIDS: one measured wrk run
# against the server processes PIDS (comma-separated; their CPU time,
# children included, is measured too); prints a summary line and sets
# WRK_RECORD (a `wrk` record, JSON) and WRK_RPS, WRK_P50, WRK_P99,
# WRK_NON2XX. LOAD is c8 (-t2 -c8) or c1 (-t1 -c1 --latency).
run_wrk() {
  local server=$1 load=$2 round=$3 url=$4 lua=$5 dur=$6 pids=$7 args out
  case "$load" in
    c8) args=(-t2 -c8) ;;
    c1) args=(-t1 -c1 --latency) ;;
    *) die "unknown load $load" ;;
  esac
  out="$WORK/wrk-$server-$load-$round.txt"
  local cpu0 cpu1 wrk_cpu all0 all1 t0 t1 TIMEFORMAT='%3U %3S'
  cpu0=$(pids_cpu_ticks "$pids")
  all0=$(machine_cpu_ticks)
  t0=$(now_s)
  # bash's `time` reports wrk's own CPU (user, system) on stderr.
  { time timeout --kill-after=5 $(( ${dur%s} + 30 )) \
      wrk "${args[@]}" -d"$dur" -s "$lua" "$url" >"$out" 2>&1; } 2>"$out.time" \
    || { cat "$out" >&2; die "wrk against $server failed"; }
  t1=$(now_s)
  all1=$(machine_cpu_ticks)
  cpu1=$(pids_cpu_ticks "$pids")
  wrk_cpu=$(awk '{print $1 + $2}' "$out.time")
  wrk_parse "$out" || die "cannot parse wrk output for $server"
  # CPU microseconds per request: the server's (process trees) and wrk's.
  local hz srv_us wrk_us others
  hz=$(getconf CLK_TCK)
  srv_us=$(awk -v d=$((cpu1 - cpu0)) -v hz="$hz" -v n="$WRK_REQUESTS" 'BEGIN{printf "%.2f", (n > 0 ? d / hz * 1e6 / n : 0)}')
  wrk_us=$(awk -v c="$wrk_cpu" -v n="$WRK_REQUESTS" 'BEGIN{printf "%.2f", (n > 0 ? c * 1e6 / n : 0)}')
  # The machine's CPU that neither the server nor wrk used during the run
  # (other processes: someone's build), as a share of all cores.
  others=$(awk -v a=$((all1 - all0)) -v s=$((cpu1 - cpu0)) -v w="$wrk_cpu" -v hz="$hz" \
    -v el="$(secs "$t0" "$t1")" -v n="$(nproc)" \
    'BEGIN{o = (el > 0 ? 100 * (a - s - w * hz) / (el * hz * n) : 0); printf "%.0f", (o > 0 ? o : 0)}')
  printf '  round %s %-3s %-14s %10.0f req/s  p50 %6s us  p99 %6s us  cpu/req server %6s us wrk %5s us  non-2xx %s  socket errors %s  others %s%%\n' \
    "$round" "$load" "$server" "$WRK_RPS" "$WRK_P50" "$WRK_P99" "$srv_us" "$wrk_us" "$WRK_NON2XX" "$WRK_SOCK" "$others" >&2
  # shellcheck disable=SC2034 # read by run.sh
  WRK_SRV_US=$srv_us
  WRK_RECORD="{\"kind\":\"wrk\",\"server\":\"$server\",\"load\":\"$load\",\"round\":$round,\"rps\":$WRK_RPS,\"p50_us\":$WRK_P50,\"p90_us\":$WRK_P90,\"p99_us\":$WRK_P99,\"max_us\":$WRK_MAX,\"requests\":$WRK_REQUESTS,\"non2xx\":$WRK_NON2XX,\"socket_errors\":$WRK_SOCK,\"socket_error_kinds\":$WRK_SOCK_JSON,\"server_cpu_us_per_req\":$srv_us,\"wrk_cpu_us_per_req\":$wrk_us,\"others_cpu_pct\":$others}"
}

# machine_cpu_ticks: user + nice + system clock ticks of all CPUs (what
# processes' utime and stime add up to; interrupts are counted apart).
machine_cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4}' /proc/stat; }

# wrk_parse FILE: the output of a wrk run with a query-mix script (its lua
# `done` prints: requests=N errors_status=N connect=N read=N write=N
# timeout=N, then p50_us=N p90_us=N p99_us=N max_us=N mean_us=X); sets
# WRK_RPS, WRK_REQUESTS, WRK_P50, WRK_P90, WRK_P99, WRK_MAX, WRK_NON2XX,
# WRK_SOCK (socket errors) and WRK_SOCK_JSON (them by kind). Fails
# (printing FILE) when it cannot.
wrk_parse() {
  local rps non2xx_wrk kv
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
  non2xx_wrk=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$1")
  kv=$(grep -hE '^(requests|p50_us)=' "$1" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9.]+$' || true)
  { [ -n "$rps" ] && [ -n "$kv" ]; } || { cat "$1" >&2; return 1; }
  local requests=0 errors_status=0 connect=0 read=0 write=0 timeout=0
  # shellcheck disable=SC2034 # mean_us: set by the eval, not used
  local p50_us=0 p90_us=0 p99_us=0 max_us=0 mean_us=0
  eval "$kv"
  WRK_RPS=$rps WRK_REQUESTS=$requests
  WRK_P50=$p50_us WRK_P90=$p90_us WRK_P99=$p99_us WRK_MAX=$max_us
  WRK_NON2XX=$(( errors_status > ${non2xx_wrk:-0} ? errors_status : ${non2xx_wrk:-0} ))
  WRK_SOCK=$((connect + read + write + timeout))
  WRK_SOCK_JSON="{\"connect\":$connect,\"read\":$read,\"write\":$write,\"timeout\":$timeout}"
}

# measure_rounds LUA SERVERS URLS PIDS [LUAS]: the alternating runs of one
# comparison (arguments 2-4 name arrays: server names, base URLs, the
# comma-separated PIDs whose CPU counts as the server's; the optional 5th
# an array of per-server wrk scripts, for servers that take the same
# queries in another syntax: empty entries use LUA). A warm-up each, then
# ROUNDS rounds of c8 then c1, the servers alternating within a round
# (a, b, c, a, b, c, ...) so that drift hits all of them alike; every run
# is recorded.
measure_rounds() {
  # shellcheck disable=SC2034 # no_luas: the default of mr_luas (a nameref)
  local lua=$1 no_luas=()
  local -n mr_servers=$2 mr_urls=$3 mr_pids=$4 mr_luas=${5:-no_luas}
  local i round load
  for i in "${!mr_servers[@]}"; do
    log "warming up ${mr_servers[$i]} (${WARM}s)"
    warm "${mr_urls[$i]}" "${mr_luas[$i]:-$lua}" "${WARM}s"
  done
  for round in $(seq 1 "$ROUNDS"); do
    for load in c8 c1; do
      for i in "${!mr_servers[@]}"; do
        run_wrk "${mr_servers[$i]}" "$load" "$round" "${mr_urls[$i]}" "${mr_luas[$i]:-$lua}" "${DUR}s" "${mr_pids[$i]}"
        record "$WRK_RECORD"
      done
    done
  done
}

# warm URL LUA DURATION: an unmeasured wrk run.
warm() {
  timeout --kill-after=5 $(( ${3%s} + 30 )) \
    wrk -t2 -c8 -d"$3" -s "$2" "$1" >"$WORK/warm.txt" 2>&1 \
    || { cat "$WORK/warm.txt" >&2; die "warm-up against $1 failed"; }
}

# proc_kib PID FIELD: a /proc/PID/status field in KiB (VmRSS, VmHWM, ...).
proc_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# now_s: seconds since the epoch, with nanoseconds.
now_s() { date +%s.%N; }

# secs T0 T1: T1 - T0 in seconds, 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }

# cpu_busy_pct SECONDS: percentage of CPU time not idle over SECONDS.
cpu_busy_pct() {
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[1] - x[1]; i = y[2] - x[2]; printf "%d", (t > 0 ? 100 * (t - i) / t : 0) }'
}

# pids_cpu_ticks PIDS: tree_cpu_ticks summed over comma-separated PIDS.
pids_cpu_ticks() {
  local p total=0
  for p in ${1//,/ }; do
    total=$((total + $(tree_cpu_ticks "$p")))
  done
  echo "$total"
}

# tree_cpu_ticks PID: user + system clock ticks of PID and its children
# (puma workers), summed over the process tree.
tree_cpu_ticks() {
  local pids=("$1") all=() p kids
  while [ ${#pids[@]} -gt 0 ]; do
    p=${pids[0]}
    pids=("${pids[@]:1}")
    all+=("$p")
    kids=$(child_pids "$p")
    for k in $kids; do pids+=("$k"); done
  done
  local total=0 t
  for p in "${all[@]}"; do
    # Fields 14 and 15 after the ")" that ends the command name.
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# child_pids PID: direct children of PID (from /proc/*/stat's ppid field;
# the command name may hold spaces and parentheses, so split after the last ")").
child_pids() {
  awk -v p="$1" '{
    i = match($0, /\) [^)]*$/); split(substr($0, i + 2), a, " ")
    if (a[2] == p) { f = FILENAME; sub("/proc/", "", f); sub("/stat", "", f); print f }
  }' /proc/[0-9]*/stat 2>/dev/null || true
}
