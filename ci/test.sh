#!/usr/bin/env bash
# ci/test.sh (`make test-ci`): ci/release, ci/rebake and ci/rollback end to
# end on the local backend, then the bake half against moto. Everything in
# a temp dir (a copy of images/ on a local base rootfs tarball, its own
# state dir, so its own fleet daemon), loopback only, every step bounded;
# the fleets it starts are stopped (`roll down`) and moto killed by pid,
# whatever happens.
#
#   1. ci/release: bake v1, staging and production come up on it
#   2. ci/rebake, nothing changed: exit 0, "nothing to do", nothing rolled
#   3. a new base rootfs: ci/rebake bakes v2 and rolls staging, then
#      production (blue/green, reports); production runs v2
#   4. ci/rollback: production back on v1
#   5. another new base, with a gate staging cannot pass: ci/rebake stops
#      at staging (exit 1), production untouched on v1
#   6. moto: `bake check --backend aws` (SSM base parameter) says a rebake is
#      due (exit 10, why); ci/rebake on aws gets as far as the check and
#      stops there, before baking, because the groups do not exist
#   7. moto, with moto-builder playing the builders (moto runs no machines:
#      it runs the user-data kiln rendered, i.e. the real install script on
#      the real payload): a real `bake build --backend aws` (then `bake
#      check` exit 0), `roll up --backend aws` makes staging and production
#      on it; a changed file, then ci/release on aws bakes v2 and rolls
#      staging then production (blue/green on Auto Scaling + ELBv2);
#      ci/rollback on aws puts production back on v1
#
# Environment: KILN_BAKE, KILN_ROLL, KILN_STATIC_SEARCHD (default: target/,
# built by `make test-ci`), KILN_MOTO_SERVER (default build/moto-venv),
# KILN_MOTO_BUILDER (default target/debug/moto-builder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export KILN_BAKE="${KILN_BAKE:-$ROOT/target/release/bake}"
export KILN_ROLL="${KILN_ROLL:-$ROOT/target/release/roll}"
export KILN_STATIC_SEARCHD="${KILN_STATIC_SEARCHD:-$ROOT/target/x86_64-unknown-linux-gnu/release/searchd}"
MOTO_SERVER="${KILN_MOTO_SERVER:-$ROOT/build/moto-venv/bin/moto_server}"
MOTO_BUILDER="${KILN_MOTO_BUILDER:-$ROOT/target/debug/moto-builder}"
for b in "$KILN_BAKE" "$KILN_ROLL" "$KILN_STATIC_SEARCHD" "$MOTO_SERVER" "$MOTO_BUILDER"; do
    [ -x "$b" ] || { echo "ci/test: no $b (make test-ci builds and installs it)" >&2; exit 1; }
done

T="$(mktemp -d)"
export KILN_SKIP_BUILD=1 KILN_BACKEND=local KILN_STATE_DIR="$T/state" REPORT_DIR="$T/reports"
export IMAGE="$T/images/searchd.toml" STAGING_GROUP=staging PRODUCTION_GROUP=production
export STEP_TIMEOUT=120 STAGING_LISTEN=127.0.0.1:0 PRODUCTION_LISTEN=127.0.0.1:0
unset GITHUB_STEP_SUMMARY
MOTO_PID=""
BUILDER_PID=""
PASSED=0
FAILED=0
cleanup() {
    local rc=$?
    for g in "$STAGING_GROUP" "$PRODUCTION_GROUP"; do
        timeout 60 "$KILN_ROLL" down --group "$g" >/dev/null 2>&1 || true
    done
    for p in "$BUILDER_PID" "$MOTO_PID"; do
        if [ -n "$p" ]; then kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$T"
    echo "ci/test: $PASSED passed, $FAILED failed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START="$(date +%s)"
log() { echo "ci/test: [$(( $(date +%s) - START )) s] $*" >&2; }
pass() { PASSED=$((PASSED + 1)); log "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL: $*"; exit 1; }

# run NAME SCRIPT: runs a ci script (bounded), its stdout (the summary) in
# $T/NAME.out, its exit code in RC.
run() {
    RC=0
    log "running $2 ($1)"
    timeout --kill-after=10s 300 "$ROOT/$2" >"$T/$1.out" 2>"$T/$1.err" || RC=$?
    sed 's/^/    | /' "$T/$1.out" >&2
}
show_err() { sed 's/^/    ! /' "$T/$1.err" >&2; }
current() { "$KILN_ROLL" status --group "$1" --json | jq -r '.current // ""'; }
expect_rc() {  # NAME WANT
    [ "$RC" = "$2" ] || { show_err "$1"; fail "$1: exit $RC, wanted $2"; }
}
expect_out() {  # NAME TEXT
    grep -qF -- "$2" "$T/$1.out" || { show_err "$1"; fail "$1: the summary does not say '$2'"; }
}

# A local base rootfs: a tarball holding an os-release that names it.
base() {
    rm -rf "$T/rootfs"
    mkdir -p "$T/rootfs/etc"
    echo "NAME=\"kiln test base $1\"" >"$T/rootfs/etc/os-release"
    tar -C "$T/rootfs" -cf "$T/base.tar" .
}

cp -r images "$T/images"
base 1
sed -i "s|^local = \"scratch\"|local = \"$T/base.tar\"|" "$IMAGE"
grep -qF "local = \"$T/base.tar\"" "$IMAGE" || fail "could not point the recipe at the base tarball"

# 1. release
run release1 ci/release
expect_rc release1 0
expect_out release1 "release: released"
V1="$(current "$PRODUCTION_GROUP")"
{ [ -n "$V1" ] && [ "$(current "$STAGING_GROUP")" = "$V1" ]; } || fail "release: staging and production do not both run $V1"
{ [ -s "$REPORT_DIR/release-summary.md" ] && [ "$(jq -r .outcome "$REPORT_DIR/release-result.json")" = "released $V1" ]; } \
    || fail "release: no summary or result in REPORT_DIR"
pass "ci/release: staging and production run $V1"

# 2. rebake, nothing changed
run rebake-noop ci/rebake
expect_rc rebake-noop 0
expect_out rebake-noop "nothing to do"
expect_out rebake-noop "up to date"
[ "$(current "$PRODUCTION_GROUP")" = "$V1" ] || fail "rebake (no-op): production changed"
[ ! -e "$REPORT_DIR/rebake-staging.json" ] || fail "rebake (no-op): rolled staging"
pass "ci/rebake with nothing changed: nothing to do, production still on $V1"

# 3. a new base rootfs: the rebake is due
base 2
run rebake ci/rebake
expect_rc rebake 0
expect_out rebake "rebake due"
expect_out rebake "base"
expect_out rebake "rebaked and rolled out"
V2="$(current "$PRODUCTION_GROUP")"
{ [ -n "$V2" ] && [ "$V2" != "$V1" ]; } || fail "rebake: production still runs $V1"
[ "$(current "$STAGING_GROUP")" = "$V2" ] || fail "rebake: staging does not run $V2"
for g in "$STAGING_GROUP" "$PRODUCTION_GROUP"; do
    [ "$(jq -r .to "$REPORT_DIR/rebake-$g.json")" = "$V2" ] || fail "rebake: no report of $g's roll to $V2"
done
pass "ci/rebake with a new base: baked $V2, staging then production rolled (reports written)"

# 4. rollback
run rollback ci/rollback
expect_rc rollback 0
expect_out rollback "rolled back"
[ "$(current "$PRODUCTION_GROUP")" = "$V1" ] || fail "rollback: production is not back on $V1"
[ "$(current "$STAGING_GROUP")" = "$V2" ] || fail "rollback: staging moved"
[ -s "$REPORT_DIR/rollback-$PRODUCTION_GROUP.json" ] || fail "rollback: no report"
pass "ci/rollback: production back on $V1"

# 5. a rebake whose staging roll fails its gate: production untouched
base 3
rm -f "$REPORT_DIR/rebake-$PRODUCTION_GROUP.json"
ROLL_GATE_TIMEOUT=1ms run rebake-fail ci/rebake
expect_rc rebake-fail 1
expect_out rebake-fail "FAILED at 'roll out $STAGING_GROUP'"
expect_out rebake-fail "$PRODUCTION_GROUP untouched"
[ "$(current "$PRODUCTION_GROUP")" = "$V1" ] || fail "failed rebake: production moved"
[ "$(current "$STAGING_GROUP")" = "$V2" ] || fail "failed rebake: staging is not back on $V2"
[ ! -e "$REPORT_DIR/rebake-$PRODUCTION_GROUP.json" ] || fail "failed rebake: production was rolled"
[ "$(jq -r .stopped_at "$REPORT_DIR/rebake-result.json")" = "roll out $STAGING_GROUP" ] || fail "failed rebake: result.json"
pass "ci/rebake with a failing staging gate: stopped at staging (exit 1), production still on $V1"

for g in "$STAGING_GROUP" "$PRODUCTION_GROUP"; do timeout 60 "$KILN_ROLL" down --group "$g" >/dev/null; done
log "local fleets down"

# 6. the bake half against moto
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$T/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "$T/moto.log" >&2; fail "moto_server exited"; }
    sleep 0.2
done
curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null || fail "moto did not answer within 60 s"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null KILN_AWS_BUCKET=kiln-ci-test
curl -fs -X PUT "$AWS_ENDPOINT_URL/$KILN_AWS_BUCKET" >/dev/null || fail "could not make the bucket in moto"
grep -q '^ssm_parameter = "/aws/service/' "$IMAGE" || fail "the recipe's aws base is not an SSM parameter"

RC=0
timeout 120 "$KILN_BAKE" --backend aws check "$IMAGE" --json >"$T/check.json" 2>"$T/check.err" || RC=$?
[ "$RC" = 10 ] || { cat "$T/check.err" >&2; fail "bake check on moto: exit $RC, wanted 10"; }
jq -e '.due and (.base | startswith("ami-")) and (.reasons | length > 0)' "$T/check.json" >/dev/null \
    || fail "bake check on moto: $(cat "$T/check.json")"
pass "bake check --backend aws on moto: due (base $(jq -r .base "$T/check.json"): $(jq -r '.reasons | join("; ")' "$T/check.json"))"

KILN_BACKEND=aws STEP_TIMEOUT=120 run rebake-aws ci/rebake
expect_rc rebake-aws 2
expect_out rebake-aws "rebake due"
expect_out rebake-aws "FAILED at 'check'"
expect_out rebake-aws "group $STAGING_GROUP does not exist"
pass "ci/rebake on moto: due, stops before baking when the groups do not exist"

# 7. a real bake on moto, then the release pipeline and the rollback there
"$MOTO_BUILDER" "$AWS_ENDPOINT_URL" 2>"$T/moto-builder.log" &
BUILDER_PID=$!
RC=0
timeout 300 "$KILN_BAKE" --backend aws build "$IMAGE" --json >"$T/bake-aws.json" 2>"$T/bake-aws.err" || RC=$?
[ "$RC" = 0 ] || { cat "$T/bake-aws.err" "$T/moto-builder.log" >&2; fail "bake build on moto: exit $RC"; }
A1="$(jq -r .image "$T/bake-aws.json")"
{ [[ "$A1" == ami-* ]] && jq -e '.found == false and .launched == 1 and .copies == []' "$T/bake-aws.json" >/dev/null; } \
    || fail "bake build on moto: $(cat "$T/bake-aws.json")"
grep -q "exit 0" "$T/moto-builder.log" || fail "bake build on moto: no builder ran the install script"
RC=0
timeout 120 "$KILN_BAKE" --backend aws check "$IMAGE" --json >"$T/check.json" 2>"$T/check.err" || RC=$?
[ "$RC" = 0 ] || { cat "$T/check.err" >&2; fail "bake check on moto after the bake: exit $RC, wanted 0"; }
pass "bake build --backend aws on moto: $A1 (the install script ran in a builder), then bake check: up to date"

# The groups, made by roll up (as Terraform would), on A1.
# (moto picks the service by the credential scope of the Authorization header.)
curl -fsS -X POST -d "Action=DescribeSubnets&Version=2016-11-15" "$AWS_ENDPOINT_URL/" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/$AWS_REGION/ec2/aws4_request, SignedHeaders=host, Signature=0" \
    >"$T/subnets.xml" || fail "DescribeSubnets on moto failed"
subnets="$(grep -o 'subnet-[0-9a-f]*' "$T/subnets.xml" | sort -u | sed -n 1,2p | paste -sd, -)"
[ -n "$subnets" ] || fail "no subnets in moto's default VPC: $(head -c 300 "$T/subnets.xml")"
export KILN_ROLL_CONFIG="$T/roll.toml" KILN_ROLL_POLL=200ms
for g in "$STAGING_GROUP" "$PRODUCTION_GROUP"; do
    RC=0
    timeout 180 "$KILN_ROLL" --backend aws up --group "$g" --image "$A1" --size 1 --subnets "$subnets" \
        --health-interval 6s --health-timeout 5s --deregistration-delay 5s --write-config --timeout 120s >/dev/null 2>"$T/up-$g.err" || RC=$?
    [ "$RC" = 0 ] || { cat "$T/up-$g.err" >&2; fail "roll up --backend aws $g: exit $RC"; }
done
awsc() { KILN_BACKEND=aws current "$1"; }
[ "$(awsc "$PRODUCTION_GROUP")" = "$A1" ] \
    || fail "roll up on moto: production does not run $A1: $(KILN_BACKEND=aws "$KILN_ROLL" status --group "$PRODUCTION_GROUP" --json 2>&1)"
pass "roll up --backend aws on moto: $STAGING_GROUP and $PRODUCTION_GROUP run $A1"

echo "# ci/test: release 2" >>"$(dirname "$IMAGE")/searchd.env"
KILN_BACKEND=aws run release-aws ci/release
expect_rc release-aws 0
expect_out release-aws "release: released"
A2="$(awsc "$PRODUCTION_GROUP")"
{ [[ "$A2" == ami-* ]] && [ "$A2" != "$A1" ] && [ "$(awsc "$STAGING_GROUP")" = "$A2" ]; } \
    || { show_err release-aws; fail "ci/release on moto: production runs '$A2', staging '$(awsc "$STAGING_GROUP")'"; }
[ "$(jq -r .strategy "$REPORT_DIR/release-$PRODUCTION_GROUP.json")" = blue-green ] || fail "ci/release on moto: no blue/green report"
pass "ci/release on moto: baked $A2, staging then production rolled blue/green"

KILN_BACKEND=aws run rollback-aws ci/rollback
expect_rc rollback-aws 0
expect_out rollback-aws "rolled back"
[ "$(awsc "$PRODUCTION_GROUP")" = "$A1" ] || { show_err rollback-aws; fail "ci/rollback on moto: production is not back on $A1"; }
[ "$(awsc "$STAGING_GROUP")" = "$A2" ] || fail "ci/rollback on moto: staging moved"
pass "ci/rollback on moto: production back on $A1"
log "done in $(( $(date +%s) - START )) s"
