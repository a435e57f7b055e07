//! The bench report: raw measurements (JSON Lines written by `bench/run.sh`)
//! in, a human table and `results.json` out.
//!
//! Record kinds (one JSON object per line, field `kind`):
//! - `meta`: any keys, copied into `results.json` (machine, durations, …).
//! - `wrk`: one wrk run: `server`, `load` (`c8`/`c1`), `round`, `rps`,
//!   `p50_us`, `p90_us`, `p99_us`, `max_us`, `requests`, `non2xx`,
//!   `socket_errors`.
//! - `scale` / `bake`: one named number: `name`, `value`.
//! - `query`: one query of a mix measured alone: `set`, `path`, `rps`
//!   (wrk -t1 -c1), `total` (its number of matches).
//! - `skip`: `section`, `why`: a part that did not run.
//!
//! Throughput per server and load is the median over rounds; ratios compare
//! those medians, measured in the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value, json};

pub const SEARCHD: &str = "searchd";
pub const NOCACHE: &str = "searchd-nocache";
pub const FIXED: &str = "fixed-body";
pub const PICKY: &str = "picky";

/// One wrk run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WrkRun {
    pub server: String,
    pub load: String,
    #[serde(default)]
    pub round: u32,
    pub rps: f64,
    pub p50_us: f64,
    #[serde(default)]
    pub p90_us: f64,
    pub p99_us: f64,
    #[serde(default)]
    pub max_us: f64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub non2xx: u64,
    #[serde(default)]
    pub socket_errors: u64,
    /// CPU time of the server (its process tree) per request, microseconds.
    #[serde(default)]
    pub server_cpu_us_per_req: Option<f64>,
    /// CPU time of wrk per request, microseconds.
    #[serde(default)]
    pub wrk_cpu_us_per_req: Option<f64>,
}

/// Medians of one server under one load.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rounds: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub rps_min: f64,
    pub rps_max: f64,
    pub non2xx: u64,
    pub socket_errors: u64,
    /// Median server CPU per request (µs), when measured.
    pub server_cpu_us: f64,
    /// Median wrk CPU per request (µs), when measured.
    pub wrk_cpu_us: f64,
}

/// A ratio against a target.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub value: f64,
    /// `>=` or `<=`; absent: informational.
    pub op: Option<&'static str>,
    pub target: Option<f64>,
    pub met: Option<bool>,
}

/// One query of a mix measured alone.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QueryCost {
    pub set: String,
    pub path: String,
    pub rps: f64,
    #[serde(default)]
    pub total: u64,
}

impl QueryCost {
    /// Microseconds per request at one connection.
    pub fn us(&self) -> f64 {
        if self.rps > 0.0 {
            1e6 / self.rps
        } else {
            f64::INFINITY
        }
    }
}

/// Everything parsed from the raw file.
#[derive(Debug, Default)]
pub struct Raw {
    pub meta: Map<String, Value>,
    pub wrk: Vec<WrkRun>,
    pub queries: Vec<QueryCost>,
    pub scale: Vec<(String, f64)>,
    pub bake: Vec<(String, f64)>,
    pub skips: Vec<(String, String)>,
}

impl Raw {
    pub fn parse(text: &str) -> Result<Raw, String> {
        let mut raw = Raw::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}: {line}", i + 1))?;
            let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
            let named = |v: &Value| -> Result<(String, f64), String> {
                let name = v.get("name").and_then(Value::as_str);
                let value = v.get("value").and_then(Value::as_f64);
                match (name, value) {
                    (Some(n), Some(x)) => Ok((n.to_owned(), x)),
                    _ => Err(format!("line {}: needs name and a numeric value", i + 1)),
                }
            };
            match kind {
                "meta" => {
                    if let Value::Object(m) = v {
                        for (k, x) in m {
                            if k != "kind" {
                                raw.meta.insert(k, x);
                            }
                        }
                    }
                }
                "wrk" => raw
                    .wrk
                    .push(serde_json::from_value(v).map_err(|e| format!("line {}: {e}", i + 1))?),
                "query" => raw
                    .queries
                    .push(serde_json::from_value(v).map_err(|e| format!("line {}: {e}", i + 1))?),
                "scale" => raw.scale.push(named(&v)?),
                "bake" => raw.bake.push(named(&v)?),
                "skip" => {
                    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    raw.skips.push((s("section"), s("why")));
                }
                other => return Err(format!("line {}: unknown kind {other:?}", i + 1)),
            }
        }
        Ok(raw)
    }
}

/// The median (mean of the two middle values for an even count).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if !n.is_multiple_of(2) {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per server, per load: medians over rounds.
pub fn summarise(runs: &[WrkRun]) -> BTreeMap<String, BTreeMap<String, Summary>> {
    let mut groups: BTreeMap<(String, String), Vec<&WrkRun>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.server.clone(), r.load.clone()))
            .or_default()
            .push(r);
    }
    let mut out: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
    for ((server, load), rs) in groups {
        let col = |f: fn(&WrkRun) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let rps = col(|r| r.rps);
        let s = Summary {
            rounds: rs.len(),
            rps: median(&rps),
            p50_us: median(&col(|r| r.p50_us)),
            p99_us: median(&col(|r| r.p99_us)),
            rps_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
            rps_max: rps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            non2xx: rs.iter().map(|r| r.non2xx).sum(),
            socket_errors: rs.iter().map(|r| r.socket_errors).sum(),
            server_cpu_us: median(
                &rs.iter()
                    .filter_map(|r| r.server_cpu_us_per_req)
                    .collect::<Vec<f64>>(),
            ),
            wrk_cpu_us: median(
                &rs.iter()
                    .filter_map(|r| r.wrk_cpu_us_per_req)
                    .collect::<Vec<f64>>(),
            ),
        };
        out.entry(server).or_default().insert(load, s);
    }
    out
}

/// The ratios the issues set targets for, plus informational ones.
pub fn ratios(s: &BTreeMap<String, BTreeMap<String, Summary>>) -> Vec<Ratio> {
    let get = |server: &str, load: &str| s.get(server).and_then(|m| m.get(load));
    let mut out = Vec::new();
    let mut push = |name: String, value: f64, target: Option<(&'static str, f64)>| {
        let met = target.map(|(op, t)| if op == ">=" { value >= t } else { value <= t });
        out.push(Ratio {
            name,
            value,
            op: target.map(|t| t.0),
            target: target.map(|t| t.1),
            met,
        });
    };
    // searchd as configured by default (answer cache on: the repeating mix
    // is served from it after the warm-up), then with the cache off (the
    // engine's own cost). Both against the same targets.
    for subject in [SEARCHD, NOCACHE] {
        if let (Some(a), Some(b)) = (get(subject, "c8"), get(FIXED, "c8")) {
            push(
                format!("{subject}/fixed-body req/s at c8"),
                a.rps / b.rps,
                Some((">=", 0.75)),
            );
        }
        if let (Some(a), Some(b)) = (get(subject, "c1"), get(FIXED, "c1")) {
            push(
                format!("{subject}/fixed-body p99 latency at c1"),
                a.p99_us / b.p99_us,
                Some(("<=", 1.5)),
            );
        }
        if let (Some(a), Some(b)) = (get(subject, "c8"), get(PICKY, "c8")) {
            push(
                format!("{subject}/picky req/s at c8"),
                a.rps / b.rps,
                Some((">=", 30.0)),
            );
        }
    }
    for subject in [SEARCHD, NOCACHE] {
        if let (Some(a), Some(b)) = (get(subject, "c1"), get(FIXED, "c1")) {
            push(
                format!("{subject}/fixed-body req/s at c1"),
                a.rps / b.rps,
                None,
            );
            push(
                format!("{subject}/fixed-body p50 latency at c1"),
                a.p50_us / b.p50_us,
                None,
            );
        }
        // What the c8 ratios become when CPU is the only limit: throughput
        // is inversely proportional to the CPU one request costs the server
        // and wrk together. Robust to other processes competing for the
        // cores.
        for peer in [FIXED, PICKY] {
            if let (Some(a), Some(b)) = (get(subject, "c8"), get(peer, "c8")) {
                let (ca, cb) = (
                    a.server_cpu_us + a.wrk_cpu_us,
                    b.server_cpu_us + b.wrk_cpu_us,
                );
                if ca.is_finite() && cb.is_finite() && ca > 0.0 {
                    push(
                        format!("{subject}/{peer} req/s at c8, from cpu/req"),
                        cb / ca,
                        None,
                    );
                }
            }
        }
        if let (Some(a), Some(b)) = (get(subject, "c1"), get(PICKY, "c1")) {
            push(format!("{subject}/picky req/s at c1"), a.rps / b.rps, None);
            push(
                format!("picky/{subject} p99 latency at c1"),
                b.p99_us / a.p99_us,
                None,
            );
        }
    }
    out
}

/// Labels and units of the named scale and bake numbers, in print order.
const LABELS: &[(&str, &str, &str)] = &[
    ("docs", "documents", ""),
    ("source_bytes", "source data size", "bytes"),
    ("corpus_seconds", "corpus generation", "s"),
    ("index_seconds", "index build time", "s"),
    ("snapshot_bytes", "snapshot size", "bytes"),
    ("snapshot_per_source", "snapshot size / source size", "x"),
    (
        "ready_ms_structure",
        "start -> /ready 200, --verify structure (median)",
        "ms",
    ),
    (
        "ready_ms_structure_max",
        "start -> /ready 200, --verify structure (max)",
        "ms",
    ),
    (
        "ready_ms_background",
        "start -> /ready 200, --verify background (default; median)",
        "ms",
    ),
    (
        "ready_ms_background_max",
        "start -> /ready 200, --verify background (max)",
        "ms",
    ),
    (
        "ready_ms_full",
        "start -> /ready 200, full verify (median)",
        "ms",
    ),
    (
        "ready_ms_full_max",
        "start -> /ready 200, full verify (max)",
        "ms",
    ),
    (
        "ready_ms_default",
        "start -> /ready 200, default flags (median)",
        "ms",
    ),
    ("rss_kib", "RSS after warm-up (VmRSS)", "KiB"),
    ("hwm_kib", "peak RSS (VmHWM)", "KiB"),
    ("rss_anon_kib", "anonymous RSS (RssAnon)", "KiB"),
    (
        "rss_file_kib",
        "file-backed RSS (RssFile: mmapped snapshot)",
        "KiB",
    ),
    ("rps", "req/s, corpus query mix, wrk -t2 -c8", "req/s"),
    ("p50_us", "p50 latency at c8", "us"),
    ("p99_us", "p99 latency at c8", "us"),
    ("cpu_us_per_req", "server CPU per request at c8", "us"),
    ("non2xx", "non-2xx responses", ""),
    (
        "rps_nocache",
        "req/s, answer cache off (--cache-mb 0)",
        "req/s",
    ),
    ("p50_us_nocache", "p50 latency at c8, cache off", "us"),
    ("p99_us_nocache", "p99 latency at c8, cache off", "us"),
    (
        "cpu_us_per_req_nocache",
        "server CPU per request at c8, cache off",
        "us",
    ),
    ("non2xx_nocache", "non-2xx responses, cache off", ""),
    ("cold_ms", "cold local bake (empty state dir)", "ms"),
    ("unchanged_ms", "unchanged rebake (digest hit)", "ms"),
];

/// Targets of named numbers (scale and bake).
fn named_target(name: &str) -> Option<(&'static str, f64)> {
    match name {
        "ready_ms_structure" | "ready_ms_background" | "ready_ms_default" => Some(("<=", 50.0)),
        "cold_ms" => Some(("<=", 2000.0)),
        "unchanged_ms" => Some(("<=", 100.0)),
        _ => None,
    }
}

fn label(name: &str) -> (&str, &str) {
    LABELS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, l, u)| (*l, *u))
        .unwrap_or((name, ""))
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_owned()
    } else if x.abs() >= 1000.0 || x.fract() == 0.0 {
        // Thousands separators for readability.
        let n = x.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut s = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                s.push(',');
            }
            s.push(c);
        }
        if n < 0 { format!("-{s}") } else { s }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

/// The report: the table to print and the JSON to write. `failed` is set
/// when a run saw non-2xx answers (the numbers are then not trustworthy).
pub struct Report {
    pub table: String,
    pub json: Value,
    pub failed: bool,
}

pub fn build(raw: &Raw) -> Report {
    let summaries = summarise(&raw.wrk);
    let ratios = ratios(&summaries);
    let mut t = String::new();
    let mut failed = false;

    if let Some(busy) = raw.meta.get("cpu_busy_before_pct").and_then(Value::as_f64)
        && busy >= 15.0
    {
        let _ = writeln!(
            t,
            "\nNOTE: the machine was {busy:.0}% busy (other processes) before the runs: \
             expect noisy numbers, compare ratios only."
        );
    }

    if !raw.wrk.is_empty() {
        let _ = writeln!(
            t,
            "\nThroughput: books index, 20-query mix (bench/wrk_queries.lua); median over rounds"
        );
        let _ = writeln!(
            t,
            "{:<15} {:<5} {:>6} {:>10} {:>17} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
            "server",
            "load",
            "rounds",
            "req/s",
            "req/s min..max",
            "p50 us",
            "p99 us",
            "cpu/req",
            "wrk/req",
            "non-2xx",
            "sock err"
        );
        for load in ["c8", "c1"] {
            for server in [SEARCHD, NOCACHE, FIXED, PICKY] {
                let Some(s) = summaries.get(server).and_then(|m| m.get(load)) else {
                    continue;
                };
                failed |= s.non2xx > 0;
                let _ = writeln!(
                    t,
                    "{:<15} {:<5} {:>6} {:>10} {:>17} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
                    server,
                    load,
                    s.rounds,
                    fmt_num(s.rps),
                    format!("{}..{}", fmt_num(s.rps_min), fmt_num(s.rps_max)),
                    fmt_num(s.p50_us),
                    fmt_num(s.p99_us),
                    fmt_num(s.server_cpu_us),
                    fmt_num(s.wrk_cpu_us),
                    s.non2xx,
                    s.socket_errors
                );
            }
        }
        // Servers other than the three known ones (never expected).
        for (server, m) in &summaries {
            if ![SEARCHD, NOCACHE, FIXED, PICKY].contains(&server.as_str()) {
                for s in m.values() {
                    failed |= s.non2xx > 0;
                }
            }
        }
        let _ = writeln!(
            t,
            "  (c8 = wrk -t2 -c8, c1 = wrk -t1 -c1 --latency; cpu/req, wrk/req = CPU microseconds \
             per request of the server's processes and of wrk)"
        );
    }

    if !ratios.is_empty() {
        let _ = writeln!(t, "\nRatios (same run, same machine, same query mix)");
        for r in &ratios {
            let target = match (r.op, r.target) {
                (Some(op), Some(x)) => format!("target {op} {}", fmt_num(x)),
                _ => "(info)".to_owned(),
            };
            let _ = writeln!(
                t,
                "  {:<54} {:>8}x   {:<15} {}",
                r.name,
                fmt_num(r.value),
                target,
                verdict(r.met)
            );
        }
    }

    let mut named_json = |title: &str, items: &[(String, f64)], t: &mut String| -> Value {
        let mut obj = Map::new();
        let mut checks = Vec::new();
        if !items.is_empty() {
            let _ = writeln!(t, "\n{title}");
        }
        for (name, value) in items {
            let (l, unit) = label(name);
            let target = named_target(name);
            let met = target.map(|(op, x)| if op == ">=" { *value >= x } else { *value <= x });
            if name.starts_with("non2xx") && *value > 0.0 {
                failed = true;
            }
            let target_s = target
                .map(|(op, x)| format!("target {op} {}", fmt_num(x)))
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "  {:<50} {:>14} {:<6} {:<14} {}",
                l,
                fmt_num(*value),
                unit,
                target_s,
                verdict(met)
            );
            obj.insert(name.clone(), json!(value));
            if let Some((op, x)) = target {
                checks
                    .push(json!({"name": name, "value": value, "op": op, "target": x, "met": met}));
            }
        }
        json!({"values": obj, "targets": checks})
    };
    let scale_title = format!(
        "Scale: synthetic corpus ({} documents)",
        raw.scale
            .iter()
            .find(|(n, _)| n == "docs")
            .map(|(_, v)| fmt_num(*v))
            .unwrap_or_else(|| "?".to_owned())
    );
    let scale = named_json(&scale_title, &raw.scale, &mut t);
    if !raw.queries.is_empty() {
        let mut qs: Vec<&QueryCost> = raw.queries.iter().collect();
        qs.sort_by(|a, b| b.us().total_cmp(&a.us()));
        let sum: f64 = qs.iter().map(|q| q.us()).sum();
        let _ = writeln!(
            t,
            "\n  Slowest queries of the mix, each alone (wrk -t1 -c1, 1 s): us per request, \
             share of the mix's time, matches"
        );
        for q in qs.iter().take(8) {
            let _ = writeln!(
                t,
                "    {:>10} us {:>5.1}% {:>9}  {}",
                fmt_num(q.us()),
                100.0 * q.us() / sum,
                q.total,
                q.path
            );
        }
    }
    let bake = named_json(
        "Bake timing: local backend, books image (issue 4)",
        &raw.bake,
        &mut t,
    );

    if !raw.skips.is_empty() {
        let _ = writeln!(t, "\nSkipped");
        for (section, why) in &raw.skips {
            let _ = writeln!(t, "  {section}: {why}");
        }
    }
    if failed {
        let _ = writeln!(
            t,
            "\nINVALID: some runs answered non-2xx (see the non-2xx columns); their numbers do not count."
        );
    }

    let json = json!({
        "meta": raw.meta,
        "throughput": summaries,
        "ratios": ratios,
        "scale": scale,
        "bake": bake,
        "skipped": raw.skips.iter().map(|(s, w)| json!({"section": s, "why": w})).collect::<Vec<_>>(),
        "runs": raw.wrk,
        "queries": raw.queries,
        "valid": !failed,
    });
    Report {
        table: t,
        json,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, load: &str, round: u32, rps: f64, p99: f64) -> String {
        // CPU per request: inversely proportional to req/s, wrk 5 us.
        json!({"kind":"wrk","server":server,"load":load,"round":round,"rps":rps,
               "p50_us":p99/2.0,"p90_us":p99*0.8,"p99_us":p99,"max_us":p99*2.0,
               "requests":1000,"non2xx":0,"socket_errors":0,
               "server_cpu_us_per_req": 1e6 / rps, "wrk_cpu_us_per_req": 5.0})
        .to_string()
    }

    #[test]
    fn medians_and_ratios() {
        let lines = [
            r#"{"kind":"meta","nproc":2,"cpu_busy_before_pct":40}"#.to_owned(),
            run("searchd", "c8", 1, 90_000.0, 300.0),
            run("searchd", "c8", 2, 110_000.0, 300.0),
            run("fixed-body", "c8", 1, 120_000.0, 200.0),
            run("fixed-body", "c8", 2, 130_000.0, 200.0),
            run("searchd", "c1", 1, 20_000.0, 120.0),
            run("fixed-body", "c1", 1, 25_000.0, 100.0),
            run("picky", "c8", 1, 4_000.0, 16_000.0),
            run("searchd-nocache", "c8", 1, 60_000.0, 400.0),
            r#"{"kind":"scale","name":"ready_ms_structure","value":12.5}"#.to_owned(),
            r#"{"kind":"bake","name":"unchanged_ms","value":250}"#.to_owned(),
            r#"{"kind":"skip","section":"bake","why":"no bake binary"}"#.to_owned(),
            r#"{"kind":"query","set":"corpus","path":"/c?query=a","rps":1000,"total":5}"#
                .to_owned(),
            r#"{"kind":"query","set":"corpus","path":"/c?query=b","rps":4000,"total":7}"#
                .to_owned(),
        ];
        let raw = Raw::parse(&lines.join("\n")).unwrap();
        let rep = build(&raw);
        assert!(!rep.failed);
        let r = &rep.json["ratios"];
        assert_eq!(r[0]["name"], "searchd/fixed-body req/s at c8");
        assert!((r[0]["value"].as_f64().unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(r[0]["met"], true);
        assert!((r[1]["value"].as_f64().unwrap() - 1.2).abs() < 1e-9);
        let picky = r
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "searchd/picky req/s at c8")
            .unwrap();
        assert!((picky["value"].as_f64().unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(picky["met"], false);
        let est = r
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "searchd/picky req/s at c8, from cpu/req")
            .unwrap();
        // Medians of cpu/req: searchd (1e6/90k + 1e6/110k) / 2, picky 250 us;
        // plus 5 us of wrk each.
        let searchd_cpu = (1e6 / 90_000.0 + 1e6 / 110_000.0) / 2.0;
        let want = (250.0 + 5.0) / (searchd_cpu + 5.0);
        assert!((est["value"].as_f64().unwrap() - want).abs() < 1e-9);
        assert!(est["met"].is_null());
        let nc = r
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "searchd-nocache/fixed-body req/s at c8")
            .unwrap();
        assert!((nc["value"].as_f64().unwrap() - 0.48).abs() < 1e-9);
        assert_eq!(nc["met"], false);
        assert!(rep.table.contains("searchd-nocache c8"), "{}", rep.table);
        assert_eq!(rep.json["bake"]["targets"][0]["met"], false);
        assert_eq!(rep.json["scale"]["targets"][0]["met"], true);
        assert_eq!(rep.json["meta"]["nproc"], 2);
        assert!(rep.table.contains("MISSED"));
        assert!(rep.table.contains("no bake binary"));
        assert!(rep.table.contains("100,000"));
        assert!(rep.table.contains("40% busy"));
        // The slowest query first, with its share of the mix's time.
        let a = rep.table.find("/c?query=a").unwrap();
        let b = rep.table.find("/c?query=b").unwrap();
        assert!(a < b);
        assert!(rep.table.contains("80.0%"), "{}", rep.table);
        assert_eq!(rep.json["queries"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn non2xx_marks_the_report_invalid() {
        let bad = json!({"kind":"wrk","server":"searchd","load":"c8","rps":1.0,
                         "p50_us":1.0,"p99_us":1.0,"non2xx":3})
        .to_string();
        let rep = build(&Raw::parse(&bad).unwrap());
        assert!(rep.failed);
        assert_eq!(rep.json["valid"], false);
        assert!(rep.table.contains("INVALID"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Raw::parse("{\"kind\":\"nope\"}").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(Raw::parse("not json").is_err());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(42.26), "42.3");
    }
}
