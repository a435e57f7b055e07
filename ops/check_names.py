#!/usr/bin/env python3
"""Every metric name the rules and the Grafana dashboard use exists.

Known names: those searchd and the balancer write (string literals in
searchd/src/server/metrics.rs and balancer/src/metrics.rs), Prometheus' own
(`up`, `ALERTS`), and the rules' recorded names. A typo in a query, or a
metric renamed in the code, fails `make test-ops` instead of leaving an
empty panel or an alert that never fires.

Also: every alert has a `for:`, a severity label and a runbook
annotation `FILE#anchor` whose anchor is a heading of FILE (GitHub's
slugs), relative to the current directory.

Usage: ops/check_names.py RULES.yml DASHBOARD.json SOURCE.rs...
"""
import json
import re
import sys

import yaml

BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "bool", "offset", "inf", "nan",
    # Aggregations: `sum by (x) (...)` puts a keyword between the name and
    # its parenthesis.
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk",
    "bottomk", "quantile", "count_values", "group",
}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def names_in(expr):
    """Metric names in a PromQL expression (or Grafana's label_values())."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\$\{?\w+\}?", "", e)  # Grafana variables
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    # Label lists of by/without/on/ignoring/group_left/group_right.
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    e = re.sub(r"\blabel_values\s*\(([^,)]*),[^)]*\)", r"(\1)", e)  # its label
    found = set()
    for m in IDENT.finditer(e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue  # a keyword or a function
        if e[: m.start()].rstrip().endswith(("offset", "@")):
            continue
        found.add(word)
    # label_replace's/label_join's string arguments are gone with the
    # strings; numbers never match IDENT's first character.
    return found


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def check_alert(rule):
    name = rule["alert"]
    problems = []
    if "for" not in rule:
        problems.append(f"{name}: no `for:`")
    if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
        problems.append(f"{name}: severity label missing or not critical/warning/info")
    runbook = rule.get("annotations", {}).get("runbook", "")
    path, _, anchor = runbook.partition("#")
    try:
        with open(path) as f:
            anchors = {slug(l.lstrip("#")) for l in f if l.startswith("#")}
    except OSError:
        anchors = None
    if not anchor or anchors is None or anchor not in anchors:
        problems.append(f"{name}: runbook {runbook!r} is not a heading of an existing file")
    return problems


def exprs_in_dashboard(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                yield v
            else:
                yield from exprs_in_dashboard(v)
    elif isinstance(node, list):
        for v in node:
            yield from exprs_in_dashboard(v)


def main(rules_path, dashboard_path, *sources):
    known = set(BUILTIN)
    for src in sources:
        with open(src) as f:
            known |= set(re.findall(r"\b(?:searchd|kiln_lb)_[a-z0-9_]+", f.read()))
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    uses = []  # (where, expr)
    bad = []
    for g in rules["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                bad += check_alert(r)
            if "record" in r:
                known.add(r["record"])
            uses.append((r.get("record") or r.get("alert"), r["expr"]))
    with open(dashboard_path) as f:
        dash = json.load(f)  # fails on invalid JSON
    variables = dash.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
        sys.exit(f"{dashboard_path}: no Prometheus datasource variable")
    for v in variables:
        if isinstance(v.get("query"), dict):
            uses.append((f"variable {v['name']}", v["query"]["query"]))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                sys.exit(f"{dashboard_path}: panel {p['title']!r} does not use $datasource")
    uses += [(f"{dashboard_path}", e) for e in exprs_in_dashboard(dash)]
    for where, expr in uses:
        for name in sorted(names_in(expr) - known):
            bad.append(f"{where}: unknown metric {name!r} in {expr.strip()!r}")
    if bad:
        sys.exit("\n".join(bad))
    print(f"metric names: {len(uses)} expressions, all names known")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
