//! Shadow comparison: a sample of live GETs is mirrored to another target
//! group and the two answers are compared (status and body without Picky's
//! `duration`).
//!
//! The client never waits for the mirror: the live answer streams to the
//! client as it comes and a copy of it (at most 1 MiB) is kept on the side
//! ([`Tee`]); once it is complete, a spawned task sends the same request to
//! the shadow group and compares. One of 16 slots is taken when a request
//! is sampled and held until its comparison is done, which bounds both the
//! mirrored requests in flight and the memory the copies take.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::http::uri::PathAndQuery;
use hyper::{HeaderMap, Method};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pool::Target;
use crate::pool::{Group, Pick, lock, read, write};
use crate::proxy;
use crate::types::{LatencySummary, ShadowExample, ShadowReport, without_duration};
use crate::upstream::{self, UpBody, UpstreamBody};

/// Live answers bigger than this are not mirrored.
pub(crate) const MAX_BODY: usize = 1 << 20;
const MAX_IN_FLIGHT: usize = 16;
const MAX_EXAMPLES: usize = 5;
const EXAMPLE_BYTES: usize = 1024;
/// Latency samples kept per side (the most recent ones).
const RESERVOIR: usize = 10_000;

/// Whether and where requests are mirrored; read on every GET.
pub(crate) struct ShadowSlot {
    /// Lets the request path skip the lock while shadowing is off.
    on: AtomicBool,
    current: RwLock<Option<Arc<Shadow>>>,
}

impl ShadowSlot {
    pub(crate) fn new() -> Self {
        ShadowSlot {
            on: AtomicBool::new(false),
            current: RwLock::new(None),
        }
    }

    /// Whether this GET is mirrored; `None` for most requests.
    pub(crate) fn sample(&self) -> Option<Sample> {
        if !self.on.load(Relaxed) {
            return None;
        }
        let shadow = read(&self.current).clone()?;
        if shadow.percent < 100 && fastrand::u32(0..100) >= shadow.percent {
            return None;
        }
        match Arc::clone(&shadow.permits).try_acquire_owned() {
            Ok(permit) => Some(Sample(Some((shadow, permit)))),
            Err(_) => {
                shadow.skipped.fetch_add(1, Relaxed);
                None
            }
        }
    }

    pub(crate) fn start(&self, group: Arc<Group>, percent: u32) {
        *write(&self.current) = Some(Arc::new(Shadow::new(group, percent)));
        self.on.store(true, Relaxed);
    }

    pub(crate) fn stop(&self) -> Option<Arc<Shadow>> {
        self.on.store(false, Relaxed);
        write(&self.current).take()
    }

    pub(crate) fn current(&self) -> Option<Arc<Shadow>> {
        read(&self.current).clone()
    }
}

pub(crate) struct Shadow {
    pub(crate) group: Arc<Group>,
    percent: u32,
    permits: Arc<Semaphore>,
    mirrored: AtomicU64,
    compared: AtomicU64,
    differing: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    examples: Mutex<Vec<ShadowExample>>,
    live_ms: Mutex<Reservoir>,
    shadow_ms: Mutex<Reservoir>,
}

impl Shadow {
    fn new(group: Arc<Group>, percent: u32) -> Shadow {
        Shadow {
            group,
            percent: percent.clamp(1, 100),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            mirrored: AtomicU64::new(0),
            compared: AtomicU64::new(0),
            differing: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            examples: Mutex::new(Vec::new()),
            live_ms: Mutex::new(Reservoir::default()),
            shadow_ms: Mutex::new(Reservoir::default()),
        }
    }

    /// The counters alone, for a scrape (no examples, no latency sort).
    pub(crate) fn counts(&self) -> ShadowCounts {
        ShadowCounts {
            target_group: self.group.name.to_string(),
            mirrored: self.mirrored.load(Relaxed),
            compared: self.compared.load(Relaxed),
            differing: self.differing.load(Relaxed),
            errors: self.errors.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
        }
    }

    pub(crate) fn report(&self) -> ShadowReport {
        ShadowReport {
            target_group: self.group.name.to_string(),
            mirrored: self.mirrored.load(Relaxed),
            compared: self.compared.load(Relaxed),
            differing: self.differing.load(Relaxed),
            errors: self.errors.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            examples: lock(&self.examples).clone(),
            live_latency: lock(&self.live_ms).summary(),
            shadow_latency: lock(&self.shadow_ms).summary(),
        }
    }

    fn example(&self, example: ShadowExample) {
        let mut examples = lock(&self.examples);
        if examples.len() < MAX_EXAMPLES {
            examples.push(example);
        }
    }
}

/// A running shadow comparison's counters (they start at 0 with each
/// comparison).
pub(crate) struct ShadowCounts {
    pub(crate) target_group: String,
    pub(crate) mirrored: u64,
    pub(crate) compared: u64,
    pub(crate) differing: u64,
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
}

/// A GET picked for mirroring, holding a mirror slot. Dropped unused, it
/// counts as skipped.
pub(crate) struct Sample(Option<(Arc<Shadow>, OwnedSemaphorePermit)>);

impl Drop for Sample {
    fn drop(&mut self) {
        if let Some((shadow, _)) = &self.0 {
            shadow.skipped.fetch_add(1, Relaxed);
        }
    }
}

/// What the mirrored request repeats.
pub(crate) struct Mirror {
    pub(crate) path: PathAndQuery,
    /// As the live target got them (hop-by-hop headers dropped,
    /// `X-Forwarded-*` added).
    pub(crate) headers: HeaderMap,
}

impl Sample {
    /// Starts copying the live answer, unless it is known to be too big.
    pub(crate) fn tee(
        self,
        mirror: Mirror,
        live_target: &str,
        live_status: u16,
        content_length: Option<u64>,
    ) -> Option<Box<Tee>> {
        let capacity = match content_length {
            Some(n) if n > MAX_BODY as u64 => return None,
            Some(n) => n as usize,
            None => 0,
        };
        Some(Box::new(Tee {
            sample: self,
            mirror,
            live_target: live_target.to_string(),
            live_status,
            body: Vec::with_capacity(capacity),
        }))
    }
}

/// A copy of a live answer in the making.
pub(crate) struct Tee {
    sample: Sample,
    mirror: Mirror,
    live_target: String,
    live_status: u16,
    body: Vec<u8>,
}

impl Tee {
    /// Copies a chunk; `false` once the answer is too big (drop the tee).
    pub(crate) fn push(&mut self, data: &[u8]) -> bool {
        if self.body.len() + data.len() > MAX_BODY {
            return false;
        }
        self.body.extend_from_slice(data);
        true
    }

    /// The live answer is complete: mirror and compare in the background.
    pub(crate) fn complete(mut self: Box<Self>, rt: &Handle, live: Duration) {
        let Some((shadow, permit)) = self.sample.0.take() else {
            return;
        };
        let job = Job {
            shadow,
            _permit: permit,
            mirror: self.mirror,
            live_target: self.live_target,
            live_status: self.live_status,
            live_body: self.body,
            live,
        };
        rt.spawn(job.run());
    }
}

struct Job {
    shadow: Arc<Shadow>,
    _permit: OwnedSemaphorePermit,
    mirror: Mirror,
    live_target: String,
    live_status: u16,
    live_body: Vec<u8>,
    live: Duration,
}

impl Job {
    async fn run(self) {
        let shadow = &self.shadow;
        let Some(claim) = shadow.group.pick(Pick::HealthyOnly, None) else {
            shadow.skipped.fetch_add(1, Relaxed);
            return;
        };
        shadow.mirrored.fetch_add(1, Relaxed);
        lock(&shadow.live_ms).record(self.live);
        let target = Arc::clone(claim.target());
        let started = Instant::now();
        let answer = tokio::time::timeout(
            proxy::UPSTREAM_TIMEOUT,
            fetch(&target, &self.mirror.path, self.mirror.headers.clone()),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        drop(claim);
        let request = self.mirror.path.as_str().to_string();
        match answer {
            Ok((status, body, complete)) => {
                lock(&shadow.shadow_ms).record(started.elapsed());
                shadow.compared.fetch_add(1, Relaxed);
                let same = complete
                    && status == self.live_status
                    && without_duration(&body) == without_duration(&self.live_body);
                if !same {
                    shadow.differing.fetch_add(1, Relaxed);
                    shadow.example(ShadowExample {
                        request,
                        live_target: self.live_target.clone(),
                        live_status: self.live_status,
                        live_body: excerpt(&self.live_body),
                        shadow_target: target.id.clone(),
                        shadow_status: status,
                        shadow_body: excerpt(&body),
                    });
                }
                if self.live_status == 200 && !(200..300).contains(&status) {
                    shadow.errors.fetch_add(1, Relaxed);
                }
            }
            Err(reason) => {
                shadow.errors.fetch_add(1, Relaxed);
                shadow.example(ShadowExample {
                    request,
                    live_target: self.live_target.clone(),
                    live_status: self.live_status,
                    live_body: excerpt(&self.live_body),
                    shadow_target: target.id.clone(),
                    shadow_status: 0,
                    shadow_body: reason,
                });
            }
        }
    }
}

/// The mirrored answer: status, body (at most [`MAX_BODY`] + 1 bytes) and
/// whether that is all of it.
async fn fetch(
    target: &Arc<Target>,
    path: &PathAndQuery,
    headers: HeaderMap,
) -> Result<(u16, Vec<u8>, bool), String> {
    let req = proxy::upstream_request(target, &Method::GET, path, headers, UpBody::Empty);
    let deadline = tokio::time::Instant::now() + proxy::UPSTREAM_TIMEOUT;
    let (resp, lease) = upstream::send(target, req, deadline)
        .await
        .map_err(|f| f.to_string())?;
    let status = resp.status().as_u16();
    let body = UpstreamBody::new(resp.into_body(), lease);
    let (body, complete) = read_capped(body, MAX_BODY)
        .await
        .map_err(|e| format!("body: {}", crate::health::hyper_reason(&e)))?;
    Ok((status, body, complete))
}

async fn read_capped(mut body: UpstreamBody, cap: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let data: Bytes = data;
            if out.len() + data.len() > cap {
                // One byte past the cap is enough to differ from any live
                // answer (those are at most `cap`).
                let room = (cap + 1).saturating_sub(out.len()).min(data.len());
                out.extend_from_slice(&data[..room]);
                return Ok((out, false));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, true))
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(EXAMPLE_BYTES)]).into_owned()
}

/// The most recent latencies, in ms.
#[derive(Default)]
struct Reservoir {
    /// Samples ever recorded.
    count: u64,
    ring: Vec<f64>,
    next: usize,
}

impl Reservoir {
    fn record(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        self.count += 1;
        if self.ring.len() < RESERVOIR {
            self.ring.push(ms);
        } else {
            self.ring[self.next] = ms;
            self.next = (self.next + 1) % RESERVOIR;
        }
    }

    fn summary(&self) -> LatencySummary {
        let mut sorted = self.ring.clone();
        sorted.sort_by(f64::total_cmp);
        LatencySummary {
            count: self.count,
            p50_ms: percentile(&sorted, 0.50),
            p99_ms: percentile(&sorted, 0.99),
        }
    }
}

/// Nearest-rank percentile of sorted samples; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut r = Reservoir::default();
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 1e-9, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 1e-9, "{s:?}");
        assert_eq!(Reservoir::default().summary(), LatencySummary::default());
    }

    #[test]
    fn reservoir_keeps_the_latest() {
        let mut r = Reservoir::default();
        for _ in 0..RESERVOIR {
            r.record(Duration::from_millis(1));
        }
        for _ in 0..RESERVOIR {
            r.record(Duration::from_millis(9));
        }
        let s = r.summary();
        assert_eq!(s.count, 2 * RESERVOIR as u64);
        assert!((s.p50_ms - 9.0).abs() < 1e-9);
    }

    #[test]
    fn excerpts_are_cut_at_one_kib() {
        assert_eq!(excerpt(&[b'a'; 5000]).len(), 1024);
        assert_eq!(excerpt(b"ok"), "ok");
    }
}
