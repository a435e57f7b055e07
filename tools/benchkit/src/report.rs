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
//! - `rollout`: one roll command under wrk load (the balancer section):
//!   `phase`, `exit`, `command_ms`, the report's `duration_ms` and
//!   `switch_ms`, wrk's `wrk_requests`, `non2xx`, `socket_errors`, the
//!   balancer's `lb_requests`, `lb_failed`, `lb_retries`.
//! - `skip`: `section`, `why`: a part that did not run.
//!
//! Throughput per server and load is the median over rounds; ratios compare
//! those medians, measured in the same run. The servers `direct`,
//! `balancer` and `haproxy` are the balancer section's and get a table of
//! their own; so do `scale-searchd`, `scale-tantivy` and `scale-fixed`,
//! the scale section's uncached query stream, compared with the scale
//! numbers `tantivy_*` (tantivy-cli's index build, memory and size) in
//! [`tantivy_checks`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value, json};

pub const SEARCHD: &str = "searchd";
pub const NOCACHE: &str = "searchd-nocache";
pub const FIXED: &str = "fixed-body";
pub const PICKY: &str = "picky";
/// The balancer section: one searchd instance alone, kiln's balancer and
/// HAProxy in front of two.
pub const DIRECT: &str = "direct";
pub const BALANCER: &str = "balancer";
pub const HAPROXY: &str = "haproxy";

/// The scale section's uncached stream: searchd with `--cache-mb 0`,
/// tantivy-cli serve and the fixed-body peer, on the synthetic corpus.
pub const SCALE_SEARCHD: &str = "scale-searchd";
pub const SCALE_TANTIVY: &str = "scale-tantivy";
pub const SCALE_FIXED: &str = "scale-fixed";

const THROUGHPUT_SERVERS: [&str; 4] = [SEARCHD, NOCACHE, FIXED, PICKY];
const BALANCER_SERVERS: [&str; 3] = [DIRECT, BALANCER, HAPROXY];
const SCALE_SERVERS: [&str; 3] = [SCALE_SEARCHD, SCALE_TANTIVY, SCALE_FIXED];

/// Targets of the comparison with tantivy-cli (the scale issue): index
/// build time and size against tantivy's, uncached throughput against the
/// fixed-body limit and tantivy's, one connection's p99.
const INDEX_TIME_VS_TANTIVY: f64 = 2.0;
const INDEX_SIZE_VS_TANTIVY: f64 = 1.0;
const UNCACHED_VS_FIXED: f64 = 0.3;
const UNCACHED_VS_TANTIVY: f64 = 4.0;
const UNCACHED_P99_C1_US: f64 = 1000.0;

/// Targets of the balancer section.
const BALANCER_RPS_TARGET: f64 = 0.9;
const SWITCH_MS_TARGET: f64 = 1000.0;

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
    /// CPU that neither the server nor wrk used during the run (other
    /// processes), percent of all cores.
    #[serde(default)]
    pub others_cpu_pct: Option<f64>,
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
    /// Median CPU share other processes took during the runs (%), when
    /// measured.
    pub others_cpu_pct: f64,
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

/// A number against a target (or informational), with its unit.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// `>=`, `<=` or `<`; absent: informational.
    pub op: Option<&'static str>,
    pub target: Option<f64>,
    pub met: Option<bool>,
    /// What the target is, when it is not a constant (e.g. "haproxy's").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_is: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Check {
        Check {
            name: name.into(),
            value,
            unit,
            op: None,
            target: None,
            met: None,
            target_is: None,
        }
    }

    fn target(mut self, op: &'static str, target: f64) -> Check {
        self.op = Some(op);
        self.target = Some(target);
        self.met = Some(meets(op, self.value, target));
        self
    }

    fn target_is(mut self, what: impl Into<String>) -> Check {
        self.target_is = Some(what.into());
        self
    }
}

fn meets(op: &str, value: f64, target: f64) -> bool {
    match op {
        ">=" => value >= target,
        "<" => value < target,
        _ => value <= target,
    }
}

/// One roll command under wrk load.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Rollout {
    pub phase: String,
    #[serde(default)]
    pub exit: i32,
    pub command_ms: f64,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    #[serde(default)]
    pub switch_ms: Option<f64>,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub outcome: String,
    pub wrk_requests: u64,
    pub non2xx: u64,
    pub socket_errors: u64,
    #[serde(default)]
    pub lb_requests: Option<u64>,
    #[serde(default)]
    pub lb_failed: Option<u64>,
    #[serde(default)]
    pub lb_retries: Option<u64>,
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
    pub rollouts: Vec<Rollout>,
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
                "rollout" => raw
                    .rollouts
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
            others_cpu_pct: median(
                &rs.iter()
                    .filter_map(|r| r.others_cpu_pct)
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

/// The balancer section's comparisons: kiln's balancer against HAProxy in
/// front of the same instances, each against one instance directly.
pub fn balancer_checks(s: &BTreeMap<String, BTreeMap<String, Summary>>) -> Vec<Check> {
    let get = |server: &str, load: &str| s.get(server).and_then(|m| m.get(load));
    let mut out = Vec::new();
    if let (Some(b), Some(h)) = (get(BALANCER, "c8"), get(HAPROXY, "c8")) {
        out.push(
            Check::new("balancer/haproxy req/s at c8", b.rps / h.rps, "x")
                .target(">=", BALANCER_RPS_TARGET),
        );
        let (cb, ch) = (
            b.server_cpu_us + b.wrk_cpu_us,
            h.server_cpu_us + h.wrk_cpu_us,
        );
        if cb.is_finite() && ch.is_finite() && cb > 0.0 {
            out.push(Check::new(
                "balancer/haproxy req/s at c8, from cpu/req",
                ch / cb,
                "x",
            ));
        }
    }
    // Latency a proxy adds: its median minus that of the instance alone.
    if let (Some(b), Some(h), Some(d)) =
        (get(BALANCER, "c1"), get(HAPROXY, "c1"), get(DIRECT, "c1"))
    {
        for (q, f) in [
            ("p50", (|x: &Summary| x.p50_us) as fn(&Summary) -> f64),
            ("p99", |x: &Summary| x.p99_us),
        ] {
            let (added_b, added_h) = (f(b) - f(d), f(h) - f(d));
            out.push(
                Check::new(format!("latency added at c1, {q}: balancer"), added_b, "us")
                    .target("<=", added_h)
                    .target_is("haproxy's"),
            );
            out.push(Check::new(
                format!("latency added at c1, {q}: haproxy"),
                added_h,
                "us",
            ));
        }
    }
    // The proxy's own CPU per request: its stack (proxy + both instances)
    // minus what the instance alone spends per request.
    if let Some(d) = get(DIRECT, "c8") {
        for server in [BALANCER, HAPROXY] {
            if let Some(x) = get(server, "c8")
                && x.server_cpu_us.is_finite()
                && d.server_cpu_us.is_finite()
            {
                out.push(Check::new(
                    format!("{server}'s own CPU per request at c8 (stack - direct)"),
                    x.server_cpu_us - d.server_cpu_us,
                    "us",
                ));
            }
        }
    }
    out
}

/// The rollouts' verdicts: no failed request, fast switches.
pub fn rollout_checks(rs: &[Rollout]) -> Vec<Check> {
    if rs.is_empty() {
        return Vec::new();
    }
    let mut out = vec![
        Check::new(
            "failed requests (wrk: non-2xx + socket errors)",
            rs.iter().map(|r| r.non2xx + r.socket_errors).sum::<u64>() as f64,
            "",
        )
        .target("<=", 0.0),
        Check::new(
            "failed requests, the balancer's count (traffic.failed)",
            rs.iter().map(|r| r.lb_failed.unwrap_or(0)).sum::<u64>() as f64,
            "",
        )
        .target("<=", 0.0),
        Check::new(
            "roll commands that did not exit 0",
            rs.iter().filter(|r| r.exit != 0).count() as f64,
            "",
        )
        .target("<=", 0.0),
    ];
    for r in rs {
        let what = match r.phase.as_str() {
            "rolling" => "rolling roll",
            "blue-green" => "blue/green roll",
            "back" => "roll back",
            other => other,
        };
        if let Some(d) = r.duration_ms {
            out.push(Check::new(format!("{what}: duration (report)"), d, "ms"));
        }
        match r.phase.as_str() {
            "blue-green" => {
                if let Some(sw) = r.switch_ms {
                    out.push(
                        Check::new("blue/green switch time (switch_ms)", sw, "ms")
                            .target("<", SWITCH_MS_TARGET),
                    );
                }
            }
            "back" => {
                out.push(
                    Check::new(
                        "rollback time (the whole roll back command)",
                        r.command_ms,
                        "ms",
                    )
                    .target("<", SWITCH_MS_TARGET),
                );
                if let Some(sw) = r.switch_ms {
                    out.push(Check::new("rollback switch time (switch_ms)", sw, "ms"));
                }
            }
            _ => {}
        }
    }
    out
}

/// The scale section against tantivy-cli: index build time, peak memory
/// and size from the scale numbers, the uncached stream from the wrk runs
/// of `scale-*`. Rows whose inputs are missing (tantivy skipped) are left
/// out; searchd's own rows against the fixed-body limit stay.
pub fn tantivy_checks(
    scale: &[(String, f64)],
    s: &BTreeMap<String, BTreeMap<String, Summary>>,
) -> Vec<Check> {
    let num = |name: &str| {
        scale
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
    };
    let get = |server: &str, load: &str| s.get(server).and_then(|m| m.get(load));
    let mut out = Vec::new();

    let (sd_secs, tv_secs) = (num("index_seconds"), num("tantivy_index_seconds"));
    if let (Some(a), Some(b)) = (sd_secs, tv_secs) {
        out.push(Check::new("index build time: searchd index", a, "s"));
        out.push(Check::new("index build time: tantivy index", b, "s"));
        if b > 0.0 {
            out.push(
                Check::new("index build time, searchd/tantivy", a / b, "x")
                    .target("<=", INDEX_TIME_VS_TANTIVY),
            );
        }
    }
    for (name, key) in [
        ("peak memory while indexing: searchd", "index_peak_rss_kib"),
        (
            "peak memory while indexing: tantivy",
            "tantivy_index_peak_rss_kib",
        ),
    ] {
        if let (Some(kib), Some(_)) = (num(key), tv_secs) {
            out.push(Check::new(name, kib / 1024.0, "MiB"));
        }
    }
    if let (Some(a), Some(b)) = (num("snapshot_bytes"), num("tantivy_index_bytes")) {
        out.push(Check::new("index size: searchd snapshot", a / 1e6, "MB"));
        let segments = num("tantivy_segments").map_or(String::new(), |n| {
            format!(
                " ({} segment{})",
                fmt_num(n),
                if n == 1.0 { "" } else { "s" }
            )
        });
        out.push(Check::new(
            format!("index size: tantivy index directory{segments}"),
            b / 1e6,
            "MB",
        ));
        if b > 0.0 {
            out.push(
                Check::new("index size, searchd/tantivy", a / b, "x")
                    .target("<=", INDEX_SIZE_VS_TANTIVY),
            );
        }
    }

    let (sd8, tv8, fx8) = (
        get(SCALE_SEARCHD, "c8"),
        get(SCALE_TANTIVY, "c8"),
        get(SCALE_FIXED, "c8"),
    );
    for (label, x) in [
        ("searchd --cache-mb 0", sd8),
        ("tantivy serve", tv8),
        ("fixed-body", fx8),
    ] {
        if let Some(x) = x {
            out.push(Check::new(
                format!("uncached stream req/s at c8: {label}"),
                x.rps,
                "req/s",
            ));
        }
    }
    if let (Some(a), Some(f)) = (sd8, fx8) {
        out.push(
            Check::new(
                "uncached req/s at c8, searchd/fixed-body",
                a.rps / f.rps,
                "x",
            )
            .target(">=", UNCACHED_VS_FIXED),
        );
    }
    if let (Some(a), Some(t)) = (sd8, tv8) {
        out.push(
            Check::new("uncached req/s at c8, searchd/tantivy", a.rps / t.rps, "x")
                .target(">=", UNCACHED_VS_TANTIVY),
        );
    }
    // CPU is the only limit: robust to other processes, as in the
    // throughput section.
    for (peer, p) in [("fixed-body", fx8), ("tantivy", tv8)] {
        if let (Some(a), Some(p)) = (sd8, p) {
            let (ca, cp) = (
                a.server_cpu_us + a.wrk_cpu_us,
                p.server_cpu_us + p.wrk_cpu_us,
            );
            if ca.is_finite() && cp.is_finite() && ca > 0.0 {
                out.push(Check::new(
                    format!("uncached req/s at c8, searchd/{peer}, from cpu/req"),
                    cp / ca,
                    "x",
                ));
            }
        }
    }
    if let Some(a) = get(SCALE_SEARCHD, "c1") {
        out.push(
            Check::new("uncached p99 latency at c1: searchd", a.p99_us, "us")
                .target("<", UNCACHED_P99_C1_US),
        );
    }
    for (label, server) in [("tantivy", SCALE_TANTIVY), ("fixed-body", SCALE_FIXED)] {
        if let Some(x) = get(server, "c1") {
            out.push(Check::new(
                format!("uncached p99 latency at c1: {label}"),
                x.p99_us,
                "us",
            ));
        }
    }
    for (label, server) in [
        ("searchd", SCALE_SEARCHD),
        ("tantivy", SCALE_TANTIVY),
        ("fixed-body", SCALE_FIXED),
    ] {
        if let Some(x) = get(server, "c1") {
            out.push(Check::new(
                format!("uncached p50 latency at c1: {label}"),
                x.p50_us,
                "us",
            ));
        }
    }
    for (label, prefix) in [("searchd", "stream_"), ("tantivy", "tantivy_stream_")] {
        if let Some(m) = num(&format!("{prefix}matches")) {
            out.push(Check::new(
                format!("matches per query, first 200 of the stream: {label}"),
                m,
                "",
            ));
        }
        if let Some(b) = num(&format!("{prefix}body_bytes")) {
            out.push(Check::new(
                format!("answer size, first 200 of the stream: {label}"),
                b,
                "bytes",
            ));
        }
    }
    out
}

/// The most requests one `scale-*` run sent, when that is more than the
/// stream's distinct queries: then queries repeated within the run.
pub fn stream_repeats(raw: &Raw) -> Option<(u64, u64)> {
    let distinct = raw
        .scale
        .iter()
        .find(|(n, _)| n == "stream_queries")
        .map(|(_, v)| *v as u64)?;
    let most = raw
        .wrk
        .iter()
        .filter(|r| r.server == SCALE_SEARCHD || r.server == SCALE_TANTIVY)
        .map(|r| r.requests)
        .max()?;
    (most > distinct).then_some((most, distinct))
}

/// Scale numbers the comparison with tantivy-cli prints (not the generic
/// list).
fn in_tantivy_block(name: &str) -> bool {
    name.starts_with("tantivy_") || name.starts_with("stream_") || name == "index_peak_rss_kib"
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

fn label(name: &str) -> (&str, &'static str) {
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

/// Prints one row per check: name, value, unit, target, verdict.
fn print_checks(t: &mut String, checks: &[Check]) {
    for c in checks {
        let target = match (c.op, c.target, &c.target_is) {
            (Some(op), Some(x), Some(is)) => format!("target {op} {} ({is})", fmt_num(x)),
            (Some(op), Some(x), None) => format!("target {op} {}", fmt_num(x)),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "  {:<56} {:>10} {:<5} {:<28} {}",
            c.name,
            fmt_num(c.value),
            c.unit,
            target,
            verdict(c.met)
        );
    }
}

/// The wrk table of SERVERS (those measured), c8 then c1; true when a run
/// saw non-2xx answers.
fn wrk_table(
    t: &mut String,
    title: &str,
    servers: &[&str],
    summaries: &BTreeMap<String, BTreeMap<String, Summary>>,
) -> bool {
    let mut failed = false;
    if !servers.iter().any(|s| summaries.contains_key(*s)) {
        return false;
    }
    let _ = writeln!(t, "\n{title}");
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
        for server in servers {
            let Some(s) = summaries.get(*server).and_then(|m| m.get(load)) else {
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
    let _ = writeln!(
        t,
        "  (c8 = wrk -t2 -c8, c1 = wrk -t1 -c1 --latency; cpu/req, wrk/req = CPU microseconds \
         per request of the server's processes and of wrk)"
    );
    failed
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

    failed |= wrk_table(
        &mut t,
        "Throughput: books index, 20-query mix (bench/wrk_queries.lua); median over rounds",
        &THROUGHPUT_SERVERS,
        &summaries,
    );
    // Servers no table shows (never expected).
    for (server, m) in &summaries {
        if !THROUGHPUT_SERVERS.contains(&server.as_str())
            && !BALANCER_SERVERS.contains(&server.as_str())
            && !SCALE_SERVERS.contains(&server.as_str())
        {
            failed |= m.values().any(|s| s.non2xx > 0);
        }
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
        let mut targets = Vec::new();
        let mut rows = Vec::new();
        if !items.is_empty() {
            let _ = writeln!(t, "\n{title}");
        }
        for (name, value) in items {
            obj.insert(name.clone(), json!(value));
            if in_tantivy_block(name) {
                continue;
            }
            let (l, unit) = label(name);
            if name.starts_with("non2xx") && *value > 0.0 {
                failed = true;
            }
            let mut row = Check::new(l, *value, unit);
            if let Some((op, x)) = named_target(name) {
                row = row.target(op, x);
                targets.push(
                    json!({"name": name, "value": value, "op": op, "target": x, "met": row.met}),
                );
            }
            rows.push(row);
        }
        print_checks(t, &rows);
        json!({"values": obj, "targets": targets})
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

    // The scale section against tantivy-cli.
    let stream_title = {
        let distinct = raw
            .scale
            .iter()
            .find(|(n, _)| n == "stream_queries")
            .map_or("?".to_owned(), |(_, v)| fmt_num(*v));
        let tantivy = raw
            .meta
            .get("tantivy_cli")
            .and_then(Value::as_str)
            .unwrap_or("tantivy-cli");
        format!(
            "Scale against {tantivy} (same documents): index build, size, and a stream of \
             {distinct} distinct queries (single words, two-word ANDs, author names) with no \
             answer cache: searchd --cache-mb 0, tantivy serve, fixed-body; median over rounds"
        )
    };
    // `failed` is borrowed by named_json until the bake block below.
    let stream_failed = wrk_table(&mut t, &stream_title, &SCALE_SERVERS, &summaries);
    let vs_tantivy = tantivy_checks(&raw.scale, &summaries);
    let repeats = stream_repeats(raw);
    if !vs_tantivy.is_empty() {
        if !summaries.contains_key(SCALE_SEARCHD) {
            let _ = writeln!(t, "\n{stream_title}");
        }
        print_checks(&mut t, &vs_tantivy);
        if let Some(busy) = raw
            .meta
            .get("cpu_busy_before_stream_pct")
            .and_then(Value::as_f64)
            && busy >= 15.0
        {
            let _ = writeln!(
                t,
                "  NOTE: the machine was {busy:.0}% busy (other processes) just before these runs: \
                 expect noisy numbers (c1 p99 most of all), trust the cpu/req ratios."
            );
        }
        let others = median(
            &raw.wrk
                .iter()
                .filter(|r| SCALE_SERVERS.contains(&r.server.as_str()))
                .filter_map(|r| r.others_cpu_pct)
                .collect::<Vec<f64>>(),
        );
        if others.is_finite() {
            let _ = writeln!(
                t,
                "  (other processes took a median {others:.0}% of the machine's CPU during these \
                 runs{})",
                if others >= 15.0 {
                    ": a busy machine, compare the cpu/req ratios"
                } else {
                    ""
                }
            );
        }
        if let Some((most, distinct)) = repeats {
            let _ = writeln!(
                t,
                "  NOTE: a run sent up to {} requests over {} distinct queries: the stream \
                 repeated within it (no answer cache on either side; BENCH_STREAM makes it longer)",
                fmt_num(most as f64),
                fmt_num(distinct as f64)
            );
        }
    }

    let bake = named_json(
        "Bake timing: local backend, books image (issue 4)",
        &raw.bake,
        &mut t,
    );
    failed |= stream_failed;

    // The balancer section.
    failed |= wrk_table(
        &mut t,
        "Balancer: kiln's balancer (roll up, fleet daemon) and HAProxy (bench/haproxy.cfg.in) \
         in front of the same 2 searchd instances, and one of them directly; books mix, \
         median over rounds",
        &BALANCER_SERVERS,
        &summaries,
    );
    let balancer = balancer_checks(&summaries);
    if !balancer.is_empty() {
        let _ = writeln!(
            t,
            "  (cpu/req: balancer = the fleet daemon with its 2 instances; haproxy = haproxy and \
             the same 2; direct = the one instance)"
        );
        print_checks(&mut t, &balancer);
    }
    let rollouts = rollout_checks(&raw.rollouts);
    let rollout_failed = raw.rollouts.iter().any(|r| r.non2xx > 0);
    if !raw.rollouts.is_empty() {
        let _ = writeln!(
            t,
            "\nRollouts under load: 3 instances, wrk -t2 -c8 on the balancer from 1 s before each \
             command to 1 s after it"
        );
        let _ = writeln!(
            t,
            "{:<11} {:>4} {:>11} {:>9} {:>9} {:>12} {:>8} {:>8} {:>11} {:>9} {:>7}",
            "phase",
            "exit",
            "command ms",
            "roll ms",
            "switch ms",
            "wrk requests",
            "non-2xx",
            "sock err",
            "lb requests",
            "lb failed",
            "retried"
        );
        let opt = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".to_owned());
        let opt_u = |x: Option<u64>| opt(x.map(|n| n as f64));
        for r in &raw.rollouts {
            let _ = writeln!(
                t,
                "{:<11} {:>4} {:>11} {:>9} {:>9} {:>12} {:>8} {:>8} {:>11} {:>9} {:>7}",
                r.phase,
                r.exit,
                fmt_num(r.command_ms),
                opt(r.duration_ms),
                opt(r.switch_ms),
                fmt_num(r.wrk_requests as f64),
                r.non2xx,
                r.socket_errors,
                opt_u(r.lb_requests),
                opt_u(r.lb_failed),
                opt_u(r.lb_retries)
            );
        }
        print_checks(&mut t, &rollouts);
    }

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
    if rollout_failed {
        let _ = writeln!(
            t,
            "\nFAILED: requests answered non-2xx during a rollout (see the rollout table)."
        );
    }
    let failed = failed || rollout_failed;

    let json = json!({
        "meta": raw.meta,
        "throughput": summaries,
        "ratios": ratios,
        "scale": scale,
        "scale_vs_tantivy": {
            "checks": vs_tantivy,
            "stream_repeated": repeats.map(|(most, distinct)| json!({"most_requests": most, "distinct": distinct})),
        },
        "bake": bake,
        "balancer": {"checks": balancer, "rollout_checks": rollouts, "rollouts": raw.rollouts},
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
               "server_cpu_us_per_req": 1e6 / rps, "wrk_cpu_us_per_req": 5.0,
               "others_cpu_pct": 20.0})
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
    fn balancer_against_haproxy_and_rollouts() {
        let rollout = |phase: &str, command_ms: f64, switch: Option<f64>, non2xx: u64| {
            json!({"kind":"rollout","phase":phase,"exit":0,"command_ms":command_ms,
                   "duration_ms":command_ms - 10.0,"switch_ms":switch,"from":"img-a","to":"img-b",
                   "outcome":"rolled-out","wrk_requests":5000,"non2xx":non2xx,"socket_errors":0,
                   "lb_requests":4000,"lb_failed":non2xx,"lb_retries":0})
            .to_string()
        };
        let lines = [
            run("direct", "c8", 1, 100_000.0, 100.0),
            run("balancer", "c8", 1, 46_000.0, 400.0),
            run("haproxy", "c8", 1, 50_000.0, 500.0),
            // p50 = p99 / 2: direct 10, balancer 40, haproxy 30 us.
            run("direct", "c1", 1, 50_000.0, 20.0),
            run("balancer", "c1", 1, 15_000.0, 80.0),
            run("haproxy", "c1", 1, 20_000.0, 60.0),
            rollout("rolling", 9000.0, None, 0),
            rollout("blue-green", 3000.0, Some(20.0), 0),
            rollout("back", 1200.0, Some(15.0), 0),
        ];
        let rep = build(&Raw::parse(&lines.join("\n")).unwrap());
        assert!(!rep.failed, "{}", rep.table);
        // Only the balancer's table: no throughput section without its servers.
        assert!(!rep.table.contains("Throughput:"), "{}", rep.table);
        let checks = rep.json["balancer"]["checks"].as_array().unwrap();
        let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
        let rps = find("balancer/haproxy req/s at c8");
        assert!((rps["value"].as_f64().unwrap() - 0.92).abs() < 1e-9);
        assert_eq!(rps["met"], true);
        let p50 = find("latency added at c1, p50: balancer");
        assert_eq!(p50["value"], 30.0);
        assert_eq!(p50["target"], 20.0);
        assert_eq!(p50["met"], false);
        let p99 = find("latency added at c1, p99: balancer");
        assert_eq!(p99["value"], 60.0);
        assert_eq!(p99["target"], 40.0);
        assert_eq!(p99["met"], false);
        let rc = rep.json["balancer"]["rollout_checks"].as_array().unwrap();
        let find = |name: &str| rc.iter().find(|c| c["name"] == name).unwrap().clone();
        assert_eq!(
            find("failed requests (wrk: non-2xx + socket errors)")["met"],
            true
        );
        assert_eq!(find("blue/green switch time (switch_ms)")["met"], true);
        // The whole `roll back` command against 1 s.
        let back = find("rollback time (the whole roll back command)");
        assert_eq!(back["value"], 1200.0);
        assert_eq!(back["met"], false);
        assert!(rep.table.contains("Rollouts under load"), "{}", rep.table);
        assert!(rep.table.contains("(haproxy's)"), "{}", rep.table);

        // A failed request during a rollout fails the bench.
        let mut bad = lines.to_vec();
        bad[6] = rollout("rolling", 9000.0, None, 2);
        let rep = build(&Raw::parse(&bad.join("\n")).unwrap());
        assert!(rep.failed);
        assert!(rep.table.contains("FAILED"), "{}", rep.table);
        assert!(!rep.table.contains("INVALID"), "{}", rep.table);
    }

    #[test]
    fn scale_against_tantivy() {
        let named =
            |name: &str, value: f64| json!({"kind":"scale","name":name,"value":value}).to_string();
        let mut lines = vec![
            r#"{"kind":"meta","tantivy_cli":"Tantivy 0.24.0","cpu_busy_before_stream_pct":60}"#
                .to_owned(),
            named("docs", 1_000_000.0),
            named("stream_queries", 60_000.0),
            named("index_seconds", 35.0),
            named("index_peak_rss_kib", 2_048_000.0),
            named("snapshot_bytes", 222e6),
            named("tantivy_index_seconds", 5.0),
            named("tantivy_index_peak_rss_kib", 512_000.0),
            named("tantivy_index_bytes", 81e6),
            named("tantivy_segments", 1.0),
            named("stream_matches", 120.5),
            run("scale-searchd", "c8", 1, 14_000.0, 2_000.0),
            run("scale-tantivy", "c8", 1, 3_000.0, 9_000.0),
            run("scale-fixed", "c8", 1, 100_000.0, 300.0),
            run("scale-searchd", "c1", 1, 5_000.0, 800.0),
            run("scale-tantivy", "c1", 1, 1_000.0, 4_000.0),
        ];
        let rep = build(&Raw::parse(&lines.join("\n")).unwrap());
        assert!(!rep.failed, "{}", rep.table);
        let checks = rep.json["scale_vs_tantivy"]["checks"].as_array().unwrap();
        let find = |name: &str| {
            checks
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in {checks:?}"))
                .clone()
        };
        let time = find("index build time, searchd/tantivy");
        assert_eq!(time["value"], 7.0);
        assert_eq!(time["met"], false);
        assert_eq!(find("peak memory while indexing: searchd")["value"], 2000.0);
        assert_eq!(find("peak memory while indexing: tantivy")["value"], 500.0);
        let size = find("index size, searchd/tantivy");
        assert!((size["value"].as_f64().unwrap() - 222.0 / 81.0).abs() < 1e-9);
        assert_eq!(size["met"], false);
        assert_eq!(
            find("index size: tantivy index directory (1 segment)")["value"],
            81.0
        );
        let fixed = find("uncached req/s at c8, searchd/fixed-body");
        assert!((fixed["value"].as_f64().unwrap() - 0.14).abs() < 1e-9);
        assert_eq!(fixed["met"], false);
        assert_eq!(fixed["target"], 0.3);
        let vs = find("uncached req/s at c8, searchd/tantivy");
        assert!((vs["value"].as_f64().unwrap() - 14.0 / 3.0).abs() < 1e-9);
        assert_eq!(vs["met"], true);
        let p99 = find("uncached p99 latency at c1: searchd");
        assert_eq!(p99["value"], 800.0);
        assert_eq!(p99["met"], true);
        assert!(find("uncached p99 latency at c1: tantivy")["met"].is_null());
        assert_eq!(
            find("matches per query, first 200 of the stream: searchd")["value"],
            120.5
        );
        // The stream's numbers are in this block, not the generic list.
        assert!(
            rep.table.contains("Scale against Tantivy 0.24.0"),
            "{}",
            rep.table
        );
        assert!(
            rep.table.contains("60,000 distinct queries"),
            "{}",
            rep.table
        );
        assert!(
            !rep.table.contains("tantivy_index_seconds"),
            "{}",
            rep.table
        );
        assert!(rep.table.contains("scale-tantivy   c8"), "{}", rep.table);
        assert!(rep.table.contains("60% busy"), "{}", rep.table);
        assert!(
            rep.table.contains("a median 20% of the machine's CPU"),
            "{}",
            rep.table
        );
        assert_eq!(rep.json["scale"]["values"]["tantivy_index_bytes"], 81e6);
        // 1000 requests a run (run()): no repeat.
        assert!(rep.json["scale_vs_tantivy"]["stream_repeated"].is_null());
        assert!(!rep.table.contains("repeated within"), "{}", rep.table);

        // More requests in a run than distinct queries: noted.
        lines[2] = named("stream_queries", 500.0);
        let rep = build(&Raw::parse(&lines.join("\n")).unwrap());
        assert_eq!(
            rep.json["scale_vs_tantivy"]["stream_repeated"]["most_requests"],
            1000
        );
        assert!(rep.table.contains("repeated within"), "{}", rep.table);

        // tantivy skipped: searchd against the fixed-body limit only.
        let alone: Vec<String> = lines
            .iter()
            .filter(|l| !l.contains("tantivy"))
            .cloned()
            .collect();
        let rep = build(&Raw::parse(&alone.join("\n")).unwrap());
        let checks = rep.json["scale_vs_tantivy"]["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .all(|c| !c["name"].as_str().unwrap().contains("tantivy")),
            "{checks:?}"
        );
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "uncached req/s at c8, searchd/fixed-body")
        );
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "uncached p99 latency at c1: searchd")
        );
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
