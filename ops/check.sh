#!/usr/bin/env bash
# `make test-ops`: the monitoring in ops/ is valid and does what it says.
#   1. promtool check config: prometheus.yml (and the rule files it loads)
#   2. promtool check rules, promtool test rules (every alert firing and not)
#   3. ops/check_names.py: the dashboard is JSON with a datasource
#      variable; every metric name the rules and the dashboard query is one
#      searchd's or the balancer's metrics code writes, or a recorded one;
#      every alert has for:, severity and a runbook heading in ops/README.md
#   4. ops/local-targets.sh turns `roll status --json` into file_sd targets
# Seconds, no network, no build. Needs promtool (Debian: prometheus), jq,
# python3 with yaml (Debian: python3-yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in promtool jq python3; do
  command -v "$tool" >/dev/null || { echo "ops/check.sh: $tool missing (make deps-apt)" >&2; exit 1; }
done

echo "== promtool check config" >&2
promtool check config --lint=all ops/prometheus/prometheus.yml 2>&1 | grep -v 'WARNING: file ".*targets/.*" .* does not exist' >&2
echo "== promtool check rules" >&2
promtool check rules --lint=all ops/prometheus/rules/*.yml >&2
echo "== promtool test rules" >&2
promtool test rules ops/prometheus/tests/kiln.rules.test.yml >&2

echo "== metric names, alerts' for/severity/runbook, dashboard" >&2
python3 ops/check_names.py ops/prometheus/rules/kiln.rules.yml ops/grafana/kiln.json \
  searchd/src/server/metrics.rs balancer/src/metrics.rs >&2

echo "== ops/local-targets.sh" >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bash ops/local-targets.sh --status-json ops/prometheus/tests/roll-status.json --out "$out" opsdemo
# Running instances with an address, of the group and its blue/green twin.
got=$(jq -c '[.[] | [.targets[0], .labels.group, .labels.asg, .labels.instance]] | sort' "$out/searchd-opsdemo.json")
want='[["127.118.12.230:8080","opsdemo","opsdemo","i-1691266b47e9725b"],["127.86.5.123:8080","opsdemo","opsdemo","i-b0c2157a9ac8b4bd"],["127.9.9.9:8080","opsdemo","opsdemo--b","i-standby"]]'
[ "$got" = "$want" ] || { echo "searchd targets: got $got, want $want" >&2; exit 1; }
got=$(jq -c '.' "$out/balancer-opsdemo.json")
want='[{"targets":["127.0.0.1:43795"],"labels":{"group":"opsdemo"}}]'
[ "$got" = "$want" ] || { echo "balancer targets: got $got, want $want" >&2; exit 1; }
# An unchanged file is not rewritten (Prometheus would reload it).
before=$(stat -c %Y.%i "$out/searchd-opsdemo.json")
bash ops/local-targets.sh --status-json ops/prometheus/tests/roll-status.json --out "$out" opsdemo
[ "$(stat -c %Y.%i "$out/searchd-opsdemo.json")" = "$before" ] || { echo "unchanged targets rewritten" >&2; exit 1; }
ls "$out"/*.json.* >/dev/null 2>&1 && { echo "temporary files left in $out" >&2; exit 1; }
promtool check config ops/prometheus/prometheus.yml >/dev/null 2>&1

echo "ops: all checks passed" >&2
