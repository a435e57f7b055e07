#!/usr/bin/env bash
# Prometheus file_sd targets for local kiln groups, from `roll status --json`:
#   ops/prometheus/targets/searchd-<group>.json   every running instance with
#                                                 an address (labels group,
#                                                 asg, instance)
#   ops/prometheus/targets/balancer-<group>.json  the balancer's admin address
#
# Usage: ops/local-targets.sh [--every 10s] [--out DIR] [--roll-arg ARG]... GROUP...
#        ops/local-targets.sh --status-json FILE [--out DIR] GROUP   (no roll: tests)
# Instances change with every roll, so keep it running with --every while
# Prometheus runs; it rewrites a file only when its content changes.
# ROLL (default target/release/roll) is the roll binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/prometheus/targets"
every=""
status_json=""
roll_args=()
groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --every) every=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --status-json) status_json=$2; shift 2 ;;
    --roll-arg) roll_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) groups+=("$1"); shift ;;
  esac
done
[ ${#groups[@]} -gt 0 ] || { echo "usage: $0 [--every 10s] [--out DIR] GROUP..." >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 2; }
mkdir -p "$out"

# Writes stdin to $1 if it differs (rename: Prometheus never reads half a file).
write_if_changed() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

status() {
  if [ -n "$status_json" ]; then cat "$status_json"
  else "${ROLL:-target/release/roll}" "${roll_args[@]}" status --group "$1" --json
  fi
}

once() {
  local g s
  for g in "${groups[@]}"; do
    if ! s=$(status "$g"); then
      echo "roll status --group $g failed; its targets are left as they were" >&2
      continue
    fi
    jq --arg group "$g" '[.groups[] | .name as $asg | .instances[]
        | select(.address != null and .state == "running")
        | {targets: [.address], labels: {group: $group, asg: $asg, instance: .id}}]' \
      <<<"$s" | write_if_changed "$out/searchd-$g.json"
    jq --arg group "$g" '[.listener // empty | select(.admin != null)
        | {targets: [.admin], labels: {group: $group}}]' \
      <<<"$s" | write_if_changed "$out/balancer-$g.json"
  done
}

if [ -z "$every" ]; then once; exit 0; fi
while true; do once; sleep "$every"; done
