# shellcheck shell=bash
# ci/lib.sh: what ci/release, ci/rebake and ci/rollback share (sourced, not
# run). Vendor-neutral: nothing here knows which CI runs it.
#
# Environment (each script's header lists the ones it reads):
#   KILN_BACKEND       local (default) or aws
#   KILN_STATE_DIR     bake's and roll's state dir (default: .kiln in the repo)
#   STAGING_GROUP      default staging
#   PRODUCTION_GROUP   default production
#   IMAGE              the recipe (default: images/searchd.toml)
#   REPORT_DIR         evidence reports and the summary (default: build/reports)
#   STEP_TIMEOUT       seconds one step may take (default: 600 local, 3600 aws)
#   KILN_SKIP_BUILD=1  use the binaries as they are, build nothing
#   KILN_BAKE, KILN_ROLL, KILN_STATIC_SEARCHD   the binaries (default: target/)
#   GITHUB_STEP_SUMMARY  when set, the summary is appended to it too
#   aws: AWS_REGION, KILN_AWS_BUCKET, KILN_ROLL_CONFIG (roll.toml) and
#        credentials the usual way (the CI assumes a role through OIDC).

CI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CI_NAME="${CI_NAME:-ci}"

# Paths given relative to where the script was started, made absolute
# before the script moves to the repo root.
ci_abs() { realpath -m -- "$1"; }

KILN_BACKEND="${KILN_BACKEND:-local}"
KILN_STATE_DIR="$(ci_abs "${KILN_STATE_DIR:-$CI_ROOT/.kiln}")"
STAGING_GROUP="${STAGING_GROUP:-staging}"
PRODUCTION_GROUP="${PRODUCTION_GROUP:-production}"
IMAGE="$(ci_abs "${IMAGE:-$CI_ROOT/images/searchd.toml}")"
REPORT_DIR="$(ci_abs "${REPORT_DIR:-$CI_ROOT/build/reports}")"
if [ "$KILN_BACKEND" = local ]; then STEP_TIMEOUT="${STEP_TIMEOUT:-600}"; else STEP_TIMEOUT="${STEP_TIMEOUT:-3600}"; fi
KILN_BAKE="$(ci_abs "${KILN_BAKE:-$CI_ROOT/target/release/bake}")"
KILN_ROLL="$(ci_abs "${KILN_ROLL:-$CI_ROOT/target/release/roll}")"
KILN_STATIC_SEARCHD="$(ci_abs "${KILN_STATIC_SEARCHD:-$CI_ROOT/target/x86_64-unknown-linux-gnu/release/searchd}")"
export KILN_BACKEND KILN_STATE_DIR KILN_STATIC_SEARCHD
cd "$CI_ROOT" || exit 2
mkdir -p "$REPORT_DIR"

case "$KILN_BACKEND" in
    local | aws) ;;
    *) echo "$CI_NAME: KILN_BACKEND must be local or aws, not '$KILN_BACKEND'" >&2; exit 2 ;;
esac

CI_START="$(date +%s)"
CI_STEP="start"          # where the script is; the summary names it on failure
CI_OUTCOME=""            # set by the script on success
CI_ROWS=()               # summary table rows: "step|result"
CI_NOTES=()              # lines under the table

log() { echo "$CI_NAME: $*" >&2; }
step() { CI_STEP="$1"; log "== $1"; }
row() { CI_ROWS+=("$1|$2"); }
note() { CI_NOTES+=("$1"); }
die() { log "error: $*"; exit 2; }

# bounded CMD...: runs CMD with the step timeout (SIGTERM, then SIGKILL 30 s
# later; bake and roll clean up or record their state on SIGTERM).
bounded() {
    local rc=0
    timeout --kill-after=30s "$STEP_TIMEOUT" "$@" || rc=$?
    if [ "$rc" = 124 ]; then log "$CI_STEP: timed out after ${STEP_TIMEOUT}s"; fi
    return "$rc"
}

# build_tools [static]: bake and roll (release, default features: both
# backends), and the static searchd with `static`. Cargo is a no-op when
# they are up to date.
build_tools() {
    if [ "${KILN_SKIP_BUILD:-0}" = 1 ]; then
        for b in "$KILN_BAKE" "$KILN_ROLL"; do [ -x "$b" ] || die "no $b (KILN_SKIP_BUILD=1)"; done
    else
        if [ "${1:-}" = static ]; then
            make --no-print-directory -s static >&2
            KILN_STATIC_SEARCHD="$CI_ROOT/target/x86_64-unknown-linux-gnu/release/searchd"
        fi
        cargo build --release -q -p bake -p roll >&2
        KILN_BAKE="$CI_ROOT/target/release/bake"
        KILN_ROLL="$CI_ROOT/target/release/roll"
    fi
    if [ "${1:-}" = static ]; then
        [ -x "$KILN_STATIC_SEARCHD" ] || die "no static searchd at $KILN_STATIC_SEARCHD (make static)"
    fi
    return 0
}

# current_image GROUP: the image behind the group's listener ("" if none).
# Fails when the group cannot be described.
current_image() {
    local json
    json="$(bounded "$KILN_ROLL" status --group "$1" --json)" || return
    jq -r '.current // ""' <<<"$json"
}

# group_exists GROUP: 0 yes, 1 no (roll status: exit 2), else fails (3);
# roll's error line in GROUP_ERR.
group_exists() {
    local rc=0
    GROUP_ERR="$(bounded "$KILN_ROLL" status --group "$1" --json 2>&1 >/dev/null)" || rc=$?
    GROUP_ERR="$(tail -n 1 <<<"$GROUP_ERR")"   # roll's error line, for the summary
    case "$rc" in
        0) return 0 ;;
        2) return 1 ;;
        *) log "roll status --group $1 failed (exit $rc): $GROUP_ERR"; return 3 ;;
    esac
}

# roll_out GROUP IMAGE STRATEGY: gated roll with the evidence report in
# REPORT_DIR/<script>-<group>.json; adds a summary row. Exit as roll's.
roll_out() {
    local group="$1" image="$2" strategy="$3" report="$REPORT_DIR/$CI_NAME-$1.json" json rc=0
    json="$(bounded "$KILN_ROLL" out --group "$group" --image "$image" --strategy "$strategy" \
        --bake-time "${ROLL_BAKE_TIME:-0s}" --gate-timeout "${ROLL_GATE_TIMEOUT:-60s}" \
        --report "$report" --json)" || rc=$?
    if [ "$rc" = 0 ]; then
        row "roll out $group" "$(jq -r 'if .outcome == "nothing-to-do" then "already on \(.image) (nothing to do)" else
            "\(.from // "-") -> \(.to) \(.strategy), \(.instances // 0) instances, \(((.duration_ms // 0) / 100 | floor) / 10) s; \(.requests // 0) requests, \(.failed // 0) failed (\(.outcome))" end' <<<"$json") — report \`$(basename "$report")\`"
    else
        local why="exit $rc"
        [ "$rc" = 1 ] && why="gate failed, $group rolled back to its previous image (exit 1)"
        [ "$rc" = 3 ] && why="cloud failure or another roll holds $group (exit 3; rerun converges)"
        [ "$rc" = 124 ] && why="timed out after ${STEP_TIMEOUT}s"
        [ -s "$report" ] && why="$why — report \`$(basename "$report")\`"
        row "roll out $group" "FAILED: $why"
    fi
    return "$rc"
}

# The summary: markdown on stdout, in REPORT_DIR/<script>-summary.md, and
# appended to $GITHUB_STEP_SUMMARY when set; a JSON twin for scripts.
summary() {
    local rc="$1" title secs r
    secs=$(( $(date +%s) - CI_START ))
    if [ "$rc" = 0 ]; then
        title="$CI_NAME: ${CI_OUTCOME:-ok} (${secs} s, backend $KILN_BACKEND)"
    else
        title="$CI_NAME: FAILED at '$CI_STEP' (exit $rc, ${secs} s, backend $KILN_BACKEND)"
    fi
    {
        echo "### $title"
        echo
        if [ "${#CI_ROWS[@]}" -gt 0 ]; then
            echo "| step | result |"
            echo "|---|---|"
            for r in "${CI_ROWS[@]}"; do echo "| ${r%%|*} | ${r#*|} |"; done
            echo
        fi
        for r in "${CI_NOTES[@]}"; do echo "- $r"; done
    } >"$REPORT_DIR/$CI_NAME-summary.md"
    jq -n --arg script "$CI_NAME" --argjson exit "$rc" --arg step "$CI_STEP" \
        --arg outcome "${CI_OUTCOME:-}" --arg backend "$KILN_BACKEND" --argjson seconds "$secs" \
        '{script: $script, exit: $exit, outcome: (if $exit == 0 then $outcome else "failed" end),
          stopped_at: (if $exit == 0 then null else $step end), backend: $backend, seconds: $seconds}' \
        >"$REPORT_DIR/$CI_NAME-result.json" || true
    cat "$REPORT_DIR/$CI_NAME-summary.md"
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$REPORT_DIR/$CI_NAME-summary.md" >>"$GITHUB_STEP_SUMMARY"; fi
    echo "$title" >&2
}

ci_exit() {
    local rc=$?
    trap - EXIT
    summary "$rc" || true
    exit "$rc"
}
trap ci_exit EXIT
trap 'exit 130' INT TERM
