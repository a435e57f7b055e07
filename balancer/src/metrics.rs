//! The balancer's counters and their two renderings: [`LbCounters`] (what
//! `counters()` returns) and Prometheus text for the admin address.
//!
//! Recording is lock-free and allocation-free: relaxed atomics in fixed
//! tables indexed by status code and latency bucket. Maps and strings are
//! built only when somebody reads the counters. Counts only go up; a read
//! racing with requests can be off by the requests in flight.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::shadow::ShadowCounts;
use crate::types::{LbCounters, TargetCounters};

/// Status codes hyper can carry: 100..=999.
const FIRST_STATUS: u16 = 100;
const STATUS_SLOTS: usize = 900;

/// One counter per status code.
pub(crate) struct StatusTable(Box<[AtomicU64]>);

impl StatusTable {
    fn new() -> Self {
        StatusTable((0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect())
    }

    fn add(&self, status: u16) {
        let slot = usize::from(status.saturating_sub(FIRST_STATUS));
        if let Some(counter) = self.0.get(slot) {
            counter.fetch_add(1, Relaxed);
        }
    }

    fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.iter().collect()
    }

    /// Non-zero counters, by status code.
    fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (FIRST_STATUS..).zip(self.0.iter()).filter_map(|(code, c)| {
            let n = c.load(Relaxed);
            (n > 0).then_some((code, n))
        })
    }
}

/// Upper bounds of the request duration buckets, in seconds (Prometheus'
/// `le` labels) and in microseconds (what is compared on the hot path).
const BUCKETS: [(&str, u64); 14] = [
    ("0.0005", 500),
    ("0.001", 1_000),
    ("0.0025", 2_500),
    ("0.005", 5_000),
    ("0.01", 10_000),
    ("0.025", 25_000),
    ("0.05", 50_000),
    ("0.1", 100_000),
    ("0.25", 250_000),
    ("0.5", 500_000),
    ("1", 1_000_000),
    ("2.5", 2_500_000),
    ("5", 5_000_000),
    ("10", 10_000_000),
];

/// Request durations (until the answer's last byte), non-cumulative
/// buckets plus `+Inf`; cumulated when rendered.
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = BUCKETS
            .iter()
            .position(|&(_, le)| us <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// The listener's own counters.
pub(crate) struct Stats {
    requests: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    by_status: StatusTable,
    duration: Histogram,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            by_status: StatusTable::new(),
            duration: Histogram::new(),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// An answer (its head) went to the client.
    pub(crate) fn answered(&self, status: u16) {
        self.by_status.add(status);
        if status >= 500 {
            self.failed.fetch_add(1, Relaxed);
        }
    }

    /// An answer broke off mid-body.
    pub(crate) fn broken(&self) {
        self.failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A request is over (answered in full, failed or abandoned).
    pub(crate) fn finished(&self, elapsed: Duration) {
        self.duration.record(elapsed);
    }
}

/// What one target answered in one target group.
pub(crate) struct TargetStats {
    requests: AtomicU64,
    by_status: StatusTable,
}

impl TargetStats {
    pub(crate) fn new() -> Self {
        TargetStats {
            requests: AtomicU64::new(0),
            by_status: StatusTable::new(),
        }
    }

    pub(crate) fn answered(&self, status: u16) {
        self.requests.fetch_add(1, Relaxed);
        self.by_status.add(status);
    }
}

/// Per target group and target id; kept after a target leaves so counters
/// stay monotonic.
pub(crate) type TargetStatsMap = BTreeMap<(String, String), std::sync::Arc<TargetStats>>;

/// The counters as [`LbCounters`]; a target registered in several target
/// groups is summed over them.
pub(crate) fn counters(stats: &Stats, targets: &TargetStatsMap) -> LbCounters {
    let mut per_target: BTreeMap<String, TargetCounters> = BTreeMap::new();
    for ((_, id), t) in targets {
        let requests = t.requests.load(Relaxed);
        if requests == 0 {
            continue;
        }
        let entry = per_target.entry(id.clone()).or_default();
        entry.requests += requests;
        for (code, n) in t.by_status.iter() {
            *entry.by_status.entry(code).or_default() += n;
        }
    }
    LbCounters {
        requests: stats.requests.load(Relaxed),
        by_status: stats.by_status.snapshot(),
        failed: stats.failed.load(Relaxed),
        retries: stats.retries.load(Relaxed),
        per_target,
    }
}

/// One target as the gauges see it.
pub(crate) struct TargetGauge<'a> {
    pub(crate) target_group: &'a str,
    pub(crate) target: &'a str,
    pub(crate) health: &'static str,
    pub(crate) in_flight: u64,
}

/// Health states the `kiln_lb_targets` gauge always reports (0 included),
/// so a state that empties shows as 0 rather than disappearing.
const HEALTH_STATES: [&str; 4] = ["initial", "healthy", "unhealthy", "draining"];

/// Prometheus text exposition format, version 0.0.4.
pub(crate) fn render(
    listener: &str,
    stats: &Stats,
    targets: &TargetStatsMap,
    groups: &[String],
    gauges: &[TargetGauge<'_>],
    shadow: Option<&ShadowCounts>,
) -> String {
    let mut out = String::with_capacity(4096);
    let l = escape(listener);

    family(
        &mut out,
        "kiln_lb_requests_total",
        "counter",
        "Requests received from clients.",
    );
    let _ = writeln!(
        out,
        "kiln_lb_requests_total{{listener=\"{l}\"}} {}",
        stats.requests.load(Relaxed)
    );

    family(
        &mut out,
        "kiln_lb_responses_total",
        "counter",
        "Answers sent to clients, by status code.",
    );
    for (code, n) in stats.by_status.iter() {
        let _ = writeln!(
            out,
            "kiln_lb_responses_total{{listener=\"{l}\",code=\"{code}\"}} {n}"
        );
    }

    family(
        &mut out,
        "kiln_lb_failed_total",
        "counter",
        "Answers with a 5xx status plus answers broken off mid-body.",
    );
    let _ = writeln!(
        out,
        "kiln_lb_failed_total{{listener=\"{l}\"}} {}",
        stats.failed.load(Relaxed)
    );

    family(
        &mut out,
        "kiln_lb_retries_total",
        "counter",
        "Idempotent requests retried on another target.",
    );
    let _ = writeln!(
        out,
        "kiln_lb_retries_total{{listener=\"{l}\"}} {}",
        stats.retries.load(Relaxed)
    );

    family(
        &mut out,
        "kiln_lb_target_requests_total",
        "counter",
        "Answers from targets, by target group, target and status code.",
    );
    for ((tg, id), t) in targets {
        let (tg, id) = (escape(tg), escape(id));
        for (code, n) in t.by_status.iter() {
            let _ = writeln!(
                out,
                "kiln_lb_target_requests_total{{listener=\"{l}\",target_group=\"{tg}\",target=\"{id}\",code=\"{code}\"}} {n}"
            );
        }
    }

    family(
        &mut out,
        "kiln_lb_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to the last byte of its answer.",
    );
    let mut cumulative = 0;
    for (i, counter) in stats.duration.buckets.iter().enumerate() {
        cumulative += counter.load(Relaxed);
        let le = BUCKETS.get(i).map_or("+Inf", |&(le, _)| le);
        let _ = writeln!(
            out,
            "kiln_lb_request_duration_seconds_bucket{{listener=\"{l}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let sum = stats.duration.sum_us.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "kiln_lb_request_duration_seconds_sum{{listener=\"{l}\"}} {sum}"
    );
    let _ = writeln!(
        out,
        "kiln_lb_request_duration_seconds_count{{listener=\"{l}\"}} {cumulative}"
    );

    family(
        &mut out,
        "kiln_lb_targets",
        "gauge",
        "Registered targets, by target group and health.",
    );
    for tg in groups {
        for health in HEALTH_STATES {
            let n = gauges
                .iter()
                .filter(|g| g.target_group == tg && g.health == health)
                .count();
            let _ = writeln!(
                out,
                "kiln_lb_targets{{listener=\"{l}\",target_group=\"{}\",health=\"{health}\"}} {n}",
                escape(tg)
            );
        }
    }

    family(
        &mut out,
        "kiln_lb_target_in_flight",
        "gauge",
        "Requests sent to a target and not yet answered in full.",
    );
    for g in gauges {
        let _ = writeln!(
            out,
            "kiln_lb_target_in_flight{{listener=\"{l}\",target_group=\"{}\",target=\"{}\"}} {}",
            escape(g.target_group),
            escape(g.target),
            g.in_flight
        );
    }

    // Only while a comparison runs; each comparison counts from 0 (a
    // counter reset to Prometheus' rate()).
    for (name, help, value) in [
        (
            "kiln_lb_shadow_mirrored_total",
            "Live GETs mirrored to the shadow target group by the running comparison.",
            shadow.map(|s| s.mirrored),
        ),
        (
            "kiln_lb_shadow_compared_total",
            "Pairs of answers compared by the running comparison.",
            shadow.map(|s| s.compared),
        ),
        (
            "kiln_lb_shadow_differing_total",
            "Compared pairs whose status or body differed.",
            shadow.map(|s| s.differing),
        ),
        (
            "kiln_lb_shadow_errors_total",
            "Mirrored requests that failed or answered an error where the live answer was 200.",
            shadow.map(|s| s.errors),
        ),
        (
            "kiln_lb_shadow_skipped_total",
            "Sampled GETs not mirrored (too many in flight, too large, no healthy shadow target).",
            shadow.map(|s| s.skipped),
        ),
    ] {
        family(&mut out, name, "counter", help);
        if let (Some(s), Some(n)) = (shadow, value) {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{l}\",target_group=\"{}\"}} {n}",
                escape(&s.target_group)
            );
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_keeps_every_code() {
        let t = StatusTable::new();
        for code in [100, 200, 200, 503, 999] {
            t.add(code);
        }
        let m = t.snapshot();
        assert_eq!(m, BTreeMap::from([(100, 1), (200, 2), (503, 1), (999, 1)]));
    }

    #[test]
    fn histogram_buckets_are_cumulative_when_rendered() {
        let stats = Stats::new();
        stats.finished(Duration::from_micros(300));
        stats.finished(Duration::from_millis(3));
        stats.finished(Duration::from_secs(60));
        let text = render("web", &stats, &BTreeMap::new(), &[], &[], None);
        assert!(text.contains("le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("kiln_lb_request_duration_seconds_count{listener=\"web\"} 3\n"));
    }

    #[test]
    fn shadow_counters_only_while_comparing() {
        let stats = Stats::new();
        let idle = render("web", &stats, &BTreeMap::new(), &[], &[], None);
        assert!(idle.contains("# TYPE kiln_lb_shadow_compared_total counter\n"));
        assert!(!idle.contains("kiln_lb_shadow_compared_total{"), "{idle}");
        let counts = ShadowCounts {
            target_group: "green".into(),
            mirrored: 5,
            compared: 4,
            differing: 1,
            errors: 2,
            skipped: 3,
        };
        let text = render("web", &stats, &BTreeMap::new(), &[], &[], Some(&counts));
        for (name, n) in [
            ("mirrored", 5),
            ("compared", 4),
            ("differing", 1),
            ("errors", 2),
            ("skipped", 3),
        ] {
            let line = format!(
                "kiln_lb_shadow_{name}_total{{listener=\"web\",target_group=\"green\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("plain"), "plain");
    }
}
