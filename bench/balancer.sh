# shellcheck shell=bash
# The `balancer` section of bench/run.sh (sourced, not run; it uses run.sh's
# globals: WORK, PROBE, CARGO, TARGET_DIR, HERE, QUICK and the lib.sh
# helpers). See bench/README.md, "5. Balancer".
#
# kiln's balancer, run the real way (`roll up`, the local fleet daemon),
# against HAProxy configured equivalently (bench/haproxy.cfg.in) in front of
# the same two searchd instances, and against one of them directly; then a
# rolling roll, a blue/green switch and a rollback of a 3-instance group
# under wrk load. The EXIT trap runs `roll down` and stops HAProxy and wrk,
# whatever happens.

# How long one roll command may take before the bench gives up on it.
ROLL_LIMIT=300

# The group the section brings up and rolls (in FLEET_STATE, via ROLL).
FLEET_GROUP=bench

# fleet_up IMAGE SIZE: `roll up` the group on a free loopback port; sets
# FLEET_URL (the balancer) and FLEET_PID (the fleet daemon: the balancer
# and, as its children, the instances).
fleet_up() {
  local port
  port=$("$PROBE" free-port)
  at_exit fleet "${ROLL[@]}" down --group "$FLEET_GROUP"
  FLEET_URL=$(timeout --kill-after=5 180 "${ROLL[@]}" up --group "$FLEET_GROUP" --image "$1" \
      --size "$2" --listen "127.0.0.1:$port" --health-interval 1s --timeout 120s \
      2>"$WORK/roll-up.log" </dev/null) \
    || { cat "$WORK/roll-up.log" >&2; die "roll up --size $2 failed"; }
  FLEET_PID=$(cat "$FLEET_STATE/fleet/daemon.pid") || die "no fleet daemon pid file"
  track "$FLEET_PID" fleetd
}

# fleet_down: `roll down` the group; the daemon exits after it.
fleet_down() {
  timeout --kill-after=5 120 "${ROLL[@]}" down --group "$FLEET_GROUP" >/dev/null 2>"$WORK/roll-down.log" </dev/null \
    || { cat "$WORK/roll-down.log" >&2; die "roll down failed"; }
  done_at_exit fleet
  untrack_stop "$FLEET_PID"
}

# instance_pid ADDR: the fleet's searchd serving on ADDR.
instance_pid() {
  local p
  for p in $(child_pids "$FLEET_PID"); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "--listen $1 "; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# stop_wrk PID: SIGINT (wrk then prints its summary and runs the lua
# `done`), bounded; then stopped for good.
stop_wrk() {
  kill -INT "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  untrack_stop "$1"
}

# rollout_phase PHASE URL CMD...: the roll command CMD (given --report) with
# wrk -t2 -c8 on the balancer URL from 1 s before it starts until 1 s after
# it ended; records a `rollout` record (wrk's failures, the command's wall
# time, the report's duration, switch time and the balancer's own counts).
rollout_phase() {
  local phase=$1 url=$2 lua="$HERE/wrk_queries.lua"
  shift 2
  local out="$WORK/wrk-rollout-$phase.txt" rep="$WORK/rollout-$phase.json" wpid rc=0 t0 t1
  log "balancer: $phase under wrk -t2 -c8: roll ${*:$((${#ROLL[@]} + 1))}"
  wrk -t2 -c8 -d"$((ROLL_LIMIT + 30))s" -s "$lua" "$url" >"$out" 2>&1 </dev/null &
  wpid=$!
  track "$wpid" wrk
  sleep 1
  t0=$(now_s)
  timeout --kill-after=10 "$ROLL_LIMIT" "$@" --report "$rep" >"$WORK/roll-$phase.out" 2>"$WORK/roll-$phase.err" </dev/null || rc=$?
  t1=$(now_s)
  sleep 1
  stop_wrk "$wpid"
  if [ "$rc" != 0 ]; then
    tail -n 20 "$WORK/roll-$phase.err" >&2
    log "balancer: $phase exited $rc"
  fi
  wrk_parse "$out" || die "cannot parse wrk output of the $phase phase"
  # From the report (absent values: null).
  local duration=null switch=null requests=null failed=null retries=null from=null to=null outcome=null
  if [ -s "$rep" ]; then
    { read -r duration; read -r switch; read -r requests; read -r failed; read -r retries
      read -r from; read -r to; read -r outcome; } < <("$PROBE" json "$rep" /duration_ms /switch_ms \
        /traffic/requests /traffic/failed /traffic/retries /from /to /outcome) || true
  fi
  [ "$from" != null ] || from=
  [ "$to" != null ] || to=
  [ "$outcome" != null ] || outcome=
  local command_ms
  command_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", (b - a) * 1000}')
  log "balancer: $phase (${from:-?} -> ${to:-?}, ${outcome:-?}): command ${command_ms} ms, roll $duration ms, switch $switch ms; wrk $WRK_REQUESTS requests, non-2xx $WRK_NON2XX, socket errors $WRK_SOCK; balancer $requests requests, $failed failed, $retries retried"
  record "{\"kind\":\"rollout\",\"phase\":$(json_str "$phase"),\"exit\":$rc,\"command_ms\":$command_ms,\"duration_ms\":$duration,\"switch_ms\":$switch,\"from\":$(json_str "$from"),\"to\":$(json_str "$to"),\"outcome\":$(json_str "$outcome"),\"wrk_requests\":$WRK_REQUESTS,\"non2xx\":$WRK_NON2XX,\"socket_errors\":$WRK_SOCK,\"socket_error_kinds\":$WRK_SOCK_JSON,\"lb_requests\":$requests,\"lb_failed\":$failed,\"lb_retries\":$retries}"
}

balancer_bench() {
  local lua="$HERE/wrk_queries.lua" haproxy
  haproxy=$(command -v haproxy || true)
  [ -n "$haproxy" ] || [ ! -x /usr/sbin/haproxy ] || haproxy=/usr/sbin/haproxy
  if [ -z "$haproxy" ]; then
    skip balancer "haproxy is missing (apt-get install haproxy, or run as root)"
    return 0
  fi
  log "balancer: building roll and bake (release, local backend only)"
  if ! "$CARGO" build --release -q -p roll -p bake --no-default-features 2>"$WORK/roll-build.log"; then
    sed -n 1,20p "$WORK/roll-build.log" >&2
    skip balancer "roll or bake does not build (cargo build -p roll -p bake failed)"
    return 0
  fi
  local static=${KILN_STATIC_SEARCHD:-$TARGET_DIR/x86_64-unknown-linux-gnu/release/searchd}
  if [ ! -x "$static" ]; then
    skip balancer "no static searchd at $static (make static builds it)"
    return 0
  fi
  FLEET_STATE="$WORK/fleet-state"
  ROLL=("$TARGET_DIR/release/roll" --state-dir "$FLEET_STATE")
  local bake=("$TARGET_DIR/release/bake" --state-dir "$FLEET_STATE")

  # Two images: the books (v1) and the books plus one (v2).
  local v1 v2 v2dir="$WORK/images-v2"
  log "balancer: baking v1 (images/searchd.toml) and v2 (one more book)"
  v1=$(KILN_STATIC_SEARCHD=$static timeout 300 "${bake[@]}" build images/searchd.toml 2>"$WORK/bake-v1.log") \
    || { cat "$WORK/bake-v1.log" >&2; die "baking v1 failed"; }
  cp -r images "$v2dir"
  [ -z "$(tail -c1 "$v2dir/books/books.csv")" ] || echo >>"$v2dir/books/books.csv"
  echo '541,"Alan Turing: The Enigma","Hodges, Andrew",1983,Simon & Schuster,Biography' >>"$v2dir/books/books.csv"
  v2=$(KILN_STATIC_SEARCHD=$static timeout 300 "${bake[@]}" build "$v2dir/searchd.toml" 2>"$WORK/bake-v2.log") \
    || { cat "$WORK/bake-v2.log" >&2; die "baking v2 failed"; }

  # The proxies in front of the same two instances, and one instance alone.
  log "balancer: roll up --size 2 ($v1)"
  fleet_up "$v1" 2
  local status="$WORK/status.json" a0 a1 p0 p1
  timeout 60 "${ROLL[@]}" status --group "$FLEET_GROUP" --json >"$status" 2>/dev/null </dev/null || die "roll status failed"
  a0=null a1=null
  { read -r a0; read -r a1; } < <("$PROBE" json "$status" /groups/0/instances/0/address /groups/0/instances/1/address) || true
  { [ "$a0" != null ] && [ "$a1" != null ]; } || die "roll status lists no two instances"
  p0=$(instance_pid "$a0") || die "no searchd process serves $a0"
  p1=$(instance_pid "$a1") || die "no searchd process serves $a1"
  log "balancer: $FLEET_URL in front of $a0 and $a1"

  local hport hcfg="$WORK/haproxy.cfg" hpid
  hport=$("$PROBE" free-port)
  sed -e "s/@LISTEN@/127.0.0.1:$hport/" -e "s/@SERVER1@/$a0/" -e "s/@SERVER2@/$a1/" \
    "$HERE/haproxy.cfg.in" >"$hcfg"
  "$haproxy" -c -q -f "$hcfg" || die "haproxy refused $hcfg"
  "$haproxy" -db -f "$hcfg" >/dev/null 2>"$WORK/haproxy.log" </dev/null &
  hpid=$!
  track "$hpid" haproxy
  wait_ready "127.0.0.1:$hport" /ready "$hpid" 20000 || { cat "$WORK/haproxy.log" >&2; die "haproxy did not start"; }
  # Two health-check intervals: both proxies have checked both instances.
  sleep 2
  record "{\"kind\":\"meta\",\"haproxy\":$(json_str "$("$haproxy" -v 2>&1 | head -1)"),\"balancer_instances\":[\"$a0\",\"$a1\"]}"

  # The balancer's CPU is the fleet daemon's process tree (it holds the
  # instances); HAProxy's is counted with the same two instances, so the
  # cpu/req columns compare whole stacks.
  # shellcheck disable=SC2034 # the three are passed by name to measure_rounds
  local servers=(direct balancer haproxy) \
    urls=("http://$a0" "$FLEET_URL" "http://127.0.0.1:$hport") \
    pids=("$p0" "$FLEET_PID" "$hpid,$p0,$p1")
  measure_rounds "$lua" servers urls pids
  untrack_stop "$hpid"
  fleet_down

  # Rollouts of a 3-instance group, each under wrk load.
  log "balancer: roll up --size 3 ($v1)"
  fleet_up "$v1" 3
  rollout_phase rolling "$FLEET_URL" "${ROLL[@]}" out --group "$FLEET_GROUP" --image "$v2"
  rollout_phase blue-green "$FLEET_URL" "${ROLL[@]}" out --group "$FLEET_GROUP" --image "$v1" --strategy blue-green
  rollout_phase back "$FLEET_URL" "${ROLL[@]}" back --group "$FLEET_GROUP"
  fleet_down
}
