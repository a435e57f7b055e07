//! The server's counters and their Prometheus text rendering.
//!
//! Recording is lock-free: fixed arrays of relaxed atomics indexed by route,
//! status and latency bucket, so the request path never allocates or takes a
//! lock for metrics. The arrays are sharded by thread (each shard on its own
//! cache lines), so worker threads do not bounce one cache line between
//! cores on every request; a scrape sums the shards. Counts only go up; a
//! scrape racing with requests can be off by the requests in flight, which
//! Prometheus tolerates.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a request asked for, as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Search,
    Facets,
    Live,
    Ready,
    Version,
    Metrics,
    /// Anything else (answered 404, or 503 before the index is loaded).
    Other,
}

impl Route {
    const ALL: [Route; 7] = [
        Route::Search,
        Route::Facets,
        Route::Live,
        Route::Ready,
        Route::Version,
        Route::Metrics,
        Route::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Search => "search",
            Route::Facets => "facets",
            Route::Live => "live",
            Route::Ready => "ready",
            Route::Version => "version",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// The statuses the service answers with; anything else counts as `other`.
const STATUSES: [u16; 7] = [200, 400, 401, 404, 405, 503, 0];

fn status_index(status: u16) -> usize {
    STATUSES[..STATUSES.len() - 1]
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len() - 1)
}

/// Upper bounds of the latency buckets, in microseconds. A books query
/// answers in tens of microseconds; the top buckets catch pathological
/// queries near the engine's work limit.
const BUCKETS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

const ROUTES: usize = Route::ALL.len();

/// One route's latency histogram: non-cumulative bucket counts (the last
/// one is +Inf) and the sum of all observations in nanoseconds.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// Request counters of one thread group; aligned so that two shards never
/// share a cache line (128 bytes covers adjacent-line prefetching).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES],
    latency: [Histogram; ROUTES],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

/// Shards per server (a power of two). Two threads landing on one shard
/// only share cache lines again; counts stay exact.
const SHARDS: usize = 16;

/// A small number that differs between threads: the address of a
/// thread-local, which lives in each thread's own TLS block.
fn shard_index() -> usize {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| {
        // Fibonacci hashing: the top bits of the product depend on every
        // bit of the address.
        let a = std::ptr::from_ref(m) as u64;
        (a.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
    })
}

/// All counters of one server.
pub struct Metrics {
    shards: Box<[Shard]>,
    connections_accepted: AtomicU64,
    connections_closed: AtomicU64,
    connection_errors: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
}

/// What the server knows about itself, for the gauges of a scrape.
pub struct Info<'a> {
    pub version: &'a str,
    /// `(index name, snapshot digest, documents)` once loaded.
    pub index: Option<(&'a str, &'a str, u64)>,
    pub image: Option<&'a str>,
    pub ready: bool,
    pub draining: bool,
    /// Bytes held by the answer cache; `None` when it is off.
    pub cache_bytes: Option<u64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            connections_accepted: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn request_count(&self, route: usize, status: usize) -> u64 {
        self.shards
            .iter()
            .map(|s| s.requests[route][status].load(Relaxed))
            .sum()
    }

    /// Counts one answered request.
    #[inline]
    pub fn record(&self, route: Route, status: u16, elapsed: Duration) {
        let r = route as usize;
        let shard = &self.shards[shard_index()];
        shard.requests[r][status_index(status)].fetch_add(1, Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let b = BUCKETS_US
            .iter()
            .position(|&le| ns <= le * 1_000)
            .unwrap_or(BUCKETS_US.len());
        let h = &shard.latency[r];
        h.buckets[b].fetch_add(1, Relaxed);
        h.sum_ns.fetch_add(ns, Relaxed);
    }

    /// A search answered from the answer cache.
    #[inline]
    pub fn cache_hit(&self) {
        self.shards[shard_index()].cache_hits.fetch_add(1, Relaxed);
    }

    /// A search the answer cache did not hold (the engine answered it).
    #[inline]
    pub fn cache_miss(&self) {
        self.shards[shard_index()]
            .cache_misses
            .fetch_add(1, Relaxed);
    }

    /// Searches answered from the answer cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.shards.iter().map(|s| s.cache_hits.load(Relaxed)).sum()
    }

    /// Searches the answer cache missed so far.
    pub fn cache_misses(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.cache_misses.load(Relaxed))
            .sum()
    }

    pub fn connection_accepted(&self) {
        self.connections_accepted.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self, error: bool) {
        self.connections_closed.fetch_add(1, Relaxed);
        if error {
            self.connection_errors.fetch_add(1, Relaxed);
        }
    }

    /// A connection closed for not sending a request head in time.
    pub fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Relaxed);
    }

    /// Connections closed by the header timeout so far.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Relaxed)
    }

    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// Requests answered on `route` with `status` so far.
    pub fn requests(&self, route: Route, status: u16) -> u64 {
        self.request_count(route as usize, status_index(status))
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> u64 {
        let accepted = self.connections_accepted.load(Relaxed);
        accepted.saturating_sub(self.connections_closed.load(Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, info: &Info<'_>) -> String {
        let mut o = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = self.render_into(info, &mut o);
        o
    }

    fn render_into(&self, info: &Info<'_>, o: &mut String) -> std::fmt::Result {
        writeln!(
            o,
            "# HELP searchd_requests_total HTTP requests answered, by route and status."
        )?;
        writeln!(o, "# TYPE searchd_requests_total counter")?;
        for route in Route::ALL {
            for (i, &status) in STATUSES.iter().enumerate() {
                let n = self.request_count(route as usize, i);
                // Every route shows its 200 line, so rates exist from the
                // first scrape; other statuses appear once they happen.
                if n > 0 || status == 200 {
                    let status = if status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    writeln!(
                        o,
                        "searchd_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        route.label()
                    )?;
                }
            }
        }

        writeln!(
            o,
            "# HELP searchd_request_duration_seconds Time from request parsed to response ready, by route."
        )?;
        writeln!(o, "# TYPE searchd_request_duration_seconds histogram")?;
        for route in Route::ALL {
            let r = route as usize;
            let mut counts = [0u64; BUCKETS_US.len() + 1];
            let mut sum_ns = 0u64;
            for shard in &self.shards {
                let h = &shard.latency[r];
                for (c, b) in counts.iter_mut().zip(&h.buckets) {
                    *c += b.load(Relaxed);
                }
                sum_ns = sum_ns.wrapping_add(h.sum_ns.load(Relaxed));
            }
            let total: u64 = counts.iter().sum();
            if total == 0 && route != Route::Search {
                continue;
            }
            let label = route.label();
            let mut cumulative = 0;
            for (i, le) in BUCKETS_US.iter().enumerate() {
                cumulative += counts[i];
                writeln!(
                    o,
                    "searchd_request_duration_seconds_bucket{{route=\"{label}\",le=\"{}\"}} {cumulative}",
                    *le as f64 / 1e6
                )?;
            }
            writeln!(
                o,
                "searchd_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {total}"
            )?;
            writeln!(
                o,
                "searchd_request_duration_seconds_sum{{route=\"{label}\"}} {}",
                sum_ns as f64 / 1e9
            )?;
            writeln!(
                o,
                "searchd_request_duration_seconds_count{{route=\"{label}\"}} {total}"
            )?;
        }

        let accepted = self.connections_accepted.load(Relaxed);
        let closed = self.connections_closed.load(Relaxed);
        for (name, kind, help, value) in [
            (
                "searchd_connections_accepted_total",
                "counter",
                "TCP connections accepted.",
                accepted,
            ),
            (
                "searchd_connections_open",
                "gauge",
                "TCP connections open now.",
                accepted.saturating_sub(closed),
            ),
            (
                "searchd_connection_errors_total",
                "counter",
                "Connections closed on an HTTP error (malformed request, header timeout, reset).",
                self.connection_errors.load(Relaxed),
            ),
            (
                "searchd_header_timeouts_total",
                "counter",
                "Connections closed for not sending a complete request head within --header-timeout.",
                self.header_timeouts.load(Relaxed),
            ),
            (
                "searchd_accept_errors_total",
                "counter",
                "Failed accept() calls (e.g. out of file descriptors).",
                self.accept_errors.load(Relaxed),
            ),
            (
                "searchd_cache_hits_total",
                "counter",
                "Searches answered from the answer cache (--cache-mb).",
                self.cache_hits(),
            ),
            (
                "searchd_cache_misses_total",
                "counter",
                "Searches with valid parameters that the answer cache did not hold (0 while it is off).",
                self.cache_misses(),
            ),
            (
                "searchd_cache_bytes",
                "gauge",
                "Bytes (keys + bodies) held by the answer cache.",
                info.cache_bytes.unwrap_or(0),
            ),
            (
                "searchd_ready",
                "gauge",
                "1 while /ready answers 200.",
                u64::from(info.ready),
            ),
            (
                "searchd_draining",
                "gauge",
                "1 once shutdown has begun.",
                u64::from(info.draining),
            ),
        ] {
            writeln!(o, "# HELP {name} {help}")?;
            writeln!(o, "# TYPE {name} {kind}")?;
            writeln!(o, "{name} {value}")?;
        }

        writeln!(
            o,
            "# HELP searchd_build_info The running searchd (value is always 1)."
        )?;
        writeln!(o, "# TYPE searchd_build_info gauge")?;
        write!(o, "searchd_build_info{{version=\"")?;
        escape_label(info.version, o);
        write!(o, "\",image=\"")?;
        escape_label(info.image.unwrap_or(""), o);
        writeln!(o, "\"}} 1")?;

        if let Some((name, digest, documents)) = info.index {
            writeln!(
                o,
                "# HELP searchd_index_documents Documents in the served snapshot."
            )?;
            writeln!(o, "# TYPE searchd_index_documents gauge")?;
            write!(o, "searchd_index_documents{{index=\"")?;
            escape_label(name, o);
            writeln!(o, "\"}} {documents}")?;
            writeln!(
                o,
                "# HELP searchd_snapshot_info The served snapshot and its sha256 (value is always 1)."
            )?;
            writeln!(o, "# TYPE searchd_snapshot_info gauge")?;
            write!(o, "searchd_snapshot_info{{index=\"")?;
            escape_label(name, o);
            write!(o, "\",digest=\"")?;
            escape_label(digest, o);
            writeln!(o, "\"}} 1")?;
        }
        Ok(())
    }
}

/// A label value as the exposition format wants it: `\`, `"` and newlines
/// escaped.
fn escape_label(s: &str, o: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Info<'static> {
        Info {
            version: "0.1.0",
            index: Some(("books", "ab\"c", 540)),
            image: None,
            ready: true,
            draining: false,
            cache_bytes: Some(7),
        }
    }

    #[test]
    fn buckets_are_upper_bounds() {
        let m = Metrics::new();
        m.record(Route::Search, 200, Duration::from_micros(25));
        m.record(Route::Search, 200, Duration::from_nanos(25_001));
        m.record(Route::Search, 200, Duration::from_secs(5));
        let text = m.render(&info());
        assert!(text.contains(
            "searchd_request_duration_seconds_bucket{route=\"search\",le=\"0.000025\"} 1\n"
        ));
        assert!(text.contains(
            "searchd_request_duration_seconds_bucket{route=\"search\",le=\"0.00005\"} 2\n"
        ));
        assert!(
            text.contains("searchd_request_duration_seconds_bucket{route=\"search\",le=\"1\"} 2\n")
        );
        assert!(
            text.contains(
                "searchd_request_duration_seconds_bucket{route=\"search\",le=\"+Inf\"} 3\n"
            )
        );
        assert!(text.contains("searchd_request_duration_seconds_count{route=\"search\"} 3\n"));
    }

    #[test]
    fn statuses_and_labels() {
        let m = Metrics::new();
        m.record(Route::Search, 400, Duration::ZERO);
        m.record(Route::Other, 404, Duration::ZERO);
        m.record(Route::Other, 418, Duration::ZERO);
        assert_eq!(m.requests(Route::Search, 400), 1);
        assert_eq!(m.requests(Route::Other, 418), 1);
        let text = m.render(&info());
        assert!(text.contains("searchd_requests_total{route=\"search\",status=\"200\"} 0\n"));
        assert!(text.contains("searchd_requests_total{route=\"search\",status=\"400\"} 1\n"));
        assert!(text.contains("searchd_requests_total{route=\"other\",status=\"other\"} 1\n"));
        assert!(text.contains("searchd_snapshot_info{index=\"books\",digest=\"ab\\\"c\"} 1\n"));
        assert!(text.contains("searchd_index_documents{index=\"books\"} 540\n"));
        assert!(text.contains("searchd_ready 1\n"));
        m.cache_hit();
        m.cache_miss();
        m.cache_miss();
        let text = m.render(&info());
        assert!(text.contains("searchd_cache_hits_total 1\n"));
        assert!(text.contains("searchd_cache_misses_total 2\n"));
        assert!(text.contains("searchd_cache_bytes 7\n"));
    }
}
