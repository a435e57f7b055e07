//! Target groups and their targets: membership, health state, in-flight
//! counts, least-outstanding-requests picking and draining.
//!
//! The request path only reads atomics here ([`Group::pick`] takes a read
//! lock on the member list for the scan, never across an await). Health
//! changes, registration and draining take the locks, always in the order
//! member list, then target state.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::config::TargetSpec;
use crate::health;
use crate::metrics::TargetStats;
use crate::types::{HealthCheck, TargetHealth, TargetView};
use crate::upstream;

/// What every target group of one listener shares.
pub(crate) struct Settings {
    /// The listener's name, for logs and metric labels.
    pub(crate) listener: String,
    pub(crate) health: HealthCheck,
    pub(crate) deregistration_delay: Duration,
    /// The runtime the balancer was started on: `register` and friends
    /// are plain functions that may be called from outside it.
    pub(crate) rt: Handle,
}

/// [`TargetHealth`] as one byte, for the request path.
const INITIAL: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;
const DRAINING: u8 = 3;
const REMOVED: u8 = 4;

fn status_of(health: &TargetHealth) -> u8 {
    match health {
        TargetHealth::Initial => INITIAL,
        TargetHealth::Healthy => HEALTHY,
        TargetHealth::Unhealthy { .. } => UNHEALTHY,
        TargetHealth::Draining => DRAINING,
        TargetHealth::Unused => REMOVED,
    }
}

/// Which targets a pick may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Healthy ones; if there are none, registered ones that are not
    /// draining (ALB's fail-open: better a doubtful target than none).
    FailOpen,
    /// Healthy ones only (shadow traffic is optional).
    HealthyOnly,
}

pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    /// `addr` as a `Host` header, for requests that came without one.
    pub(crate) host: HeaderValue,
    /// Idle keep-alive connections to this target (and only this one).
    pub(crate) pool: upstream::Pool,
    group: Arc<str>,
    settings: Arc<Settings>,
    /// Mirrors `state.health` for lock-free reads.
    status: AtomicU8,
    in_flight: AtomicU64,
    state: Mutex<State>,
    /// Woken when `in_flight` drops to 0 while draining.
    drained: Notify,
    /// Wakes the health checker for a check at once (registered again).
    recheck: Notify,
    pub(crate) stats: Arc<TargetStats>,
}

struct State {
    health: TargetHealth,
    since_ms: u64,
    successes: u32,
    failures: u32,
    checker: Option<AbortHandle>,
    drainer: Option<AbortHandle>,
}

impl Target {
    fn new(
        spec: TargetSpec,
        group: Arc<str>,
        settings: Arc<Settings>,
        stats: Arc<TargetStats>,
    ) -> Target {
        let host = HeaderValue::try_from(spec.addr.to_string())
            // A socket address always renders as a valid header value.
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let health = match spec.initial {
            // Only a target that is registered can be new; anything else
            // asked for starts from scratch.
            h @ (TargetHealth::Healthy | TargetHealth::Initial) => h,
            _ => TargetHealth::Initial,
        };
        Target {
            id: spec.id,
            addr: spec.addr,
            host,
            pool: upstream::Pool::new(),
            group,
            settings,
            status: AtomicU8::new(status_of(&health)),
            in_flight: AtomicU64::new(0),
            state: Mutex::new(State {
                health,
                since_ms: now_ms(),
                successes: 0,
                failures: 0,
                checker: None,
                drainer: None,
            }),
            drained: Notify::new(),
            recheck: Notify::new(),
            stats,
        }
    }

    /// Whether connections to it are worth keeping (it has not left its
    /// group).
    pub(crate) fn takes_connections(&self) -> bool {
        self.status.load(Ordering::Relaxed) != REMOVED
    }

    pub(crate) fn health_str(&self) -> &'static str {
        match self.status.load(Ordering::Relaxed) {
            INITIAL => "initial",
            HEALTHY => "healthy",
            UNHEALTHY => "unhealthy",
            DRAINING => "draining",
            _ => "unused",
        }
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn view(&self) -> TargetView {
        let st = lock(&self.state);
        TargetView {
            id: self.id.clone(),
            addr: self.addr,
            health: st.health.clone(),
            since_ms: st.since_ms,
            in_flight: self.in_flight(),
        }
    }

    /// Whether active health checks apply (not while draining).
    pub(crate) fn checked(&self) -> bool {
        matches!(
            self.status.load(Ordering::Relaxed),
            INITIAL | HEALTHY | UNHEALTHY
        )
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) async fn recheck_requested(&self) {
        self.recheck.notified().await;
    }

    /// Counts a request as sent to this target, unless it stopped taking
    /// requests since it was chosen.
    fn claim(self: Arc<Self>) -> Option<InFlight> {
        // SeqCst on both sides (here: add, then read the status; in
        // `deregister`: write the status, then read the count) so a
        // deregistration either sees this request or this request sees
        // the deregistration.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let claim = InFlight(self);
        match claim.0.status.load(Ordering::SeqCst) {
            DRAINING | REMOVED => None,
            _ => Some(claim),
        }
    }

    fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.status.load(Ordering::SeqCst) == DRAINING
        {
            self.drained.notify_one();
        }
    }

    /// One health check's outcome (active, or a failed connect on the
    /// request path).
    pub(crate) fn record_check(&self, outcome: Result<(), String>) {
        let hc = &self.settings.health;
        let mut st = lock(&self.state);
        let status = status_of(&st.health);
        if !matches!(status, INITIAL | HEALTHY | UNHEALTHY) {
            return;
        }
        match outcome {
            Ok(()) => {
                st.failures = 0;
                st.successes = st.successes.saturating_add(1);
                if status != HEALTHY && st.successes >= hc.healthy_threshold.max(1) {
                    self.set_health(&mut st, TargetHealth::Healthy, None);
                }
            }
            Err(reason) => {
                st.successes = 0;
                st.failures = st.failures.saturating_add(1);
                if status == UNHEALTHY {
                    // Still unhealthy; keep the latest reason, not `since`.
                    if let TargetHealth::Unhealthy { reason: old } = &mut st.health
                        && *old != reason
                    {
                        *old = reason;
                    }
                } else if st.failures >= hc.unhealthy_threshold.max(1) {
                    // An initial target that keeps failing is unhealthy too
                    // (as on ELBv2), so its reason shows.
                    self.set_health(&mut st, TargetHealth::Unhealthy { reason }, None);
                }
            }
        }
    }

    fn set_health(&self, st: &mut State, health: TargetHealth, why: Option<&str>) {
        let reason = match &health {
            TargetHealth::Unhealthy { reason } => Some(reason.as_str()),
            _ => why,
        };
        tracing::info!(
            listener = %self.settings.listener,
            target_group = %self.group,
            target = %self.id,
            addr = %self.addr,
            from = st.health.as_str(),
            to = health.as_str(),
            reason,
            "target health changed"
        );
        self.status.store(status_of(&health), Ordering::SeqCst);
        st.health = health;
        st.since_ms = now_ms();
        st.successes = 0;
        st.failures = 0;
    }

    /// Out of its group for good: no checks, no requests.
    fn retire(&self, why: &str) {
        let mut st = lock(&self.state);
        self.set_health(&mut st, TargetHealth::Unused, Some(why));
        for task in [st.checker.take(), st.drainer.take()].into_iter().flatten() {
            task.abort();
        }
        drop(st);
        self.pool.clear();
    }

    /// The balancer stopped: no more checks, no idle connections.
    fn stop(&self) {
        if let Some(task) = lock(&self.state).checker.take() {
            task.abort();
        }
        self.pool.clear();
    }
}

/// A request counted against a target until dropped.
pub(crate) struct InFlight(Arc<Target>);

impl InFlight {
    pub(crate) fn target(&self) -> &Arc<Target> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.release();
    }
}

pub(crate) struct Group {
    pub(crate) name: Arc<str>,
    settings: Arc<Settings>,
    /// Registered and draining targets, sorted by id.
    members: RwLock<Vec<Arc<Target>>>,
    /// Where the next scan starts, so ties rotate.
    next: AtomicUsize,
}

impl Group {
    pub(crate) fn new(name: &str, settings: Arc<Settings>) -> Group {
        Group {
            name: name.into(),
            settings,
            members: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// The target with the fewest requests in flight (least outstanding
    /// requests), its request counted; ties go round robin. `exclude` is a
    /// target that just failed this request.
    pub(crate) fn pick(&self, mode: Pick, exclude: Option<&Arc<Target>>) -> Option<InFlight> {
        // A chosen target may start draining before it is claimed; then
        // choose again (a few times: draining is rare).
        for _ in 0..3 {
            if let Some(claim) = self.choose(mode, exclude)?.claim() {
                return Some(claim);
            }
        }
        None
    }

    fn choose(&self, mode: Pick, exclude: Option<&Arc<Target>>) -> Option<Arc<Target>> {
        let members = read(&self.members);
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let (head, tail) = members.split_at(start);
        let mut healthy: Option<(&Arc<Target>, u64)> = None;
        let mut fallback: Option<(&Arc<Target>, u64)> = None;
        for t in tail.iter().chain(head) {
            if exclude.is_some_and(|x| Arc::ptr_eq(x, t)) {
                continue;
            }
            let best = match (t.status.load(Ordering::Relaxed), mode) {
                (HEALTHY, _) => &mut healthy,
                (INITIAL | UNHEALTHY, Pick::FailOpen) => &mut fallback,
                _ => continue,
            };
            let load = t.in_flight.load(Ordering::Relaxed);
            if best.is_none_or(|(_, least)| load < least) {
                *best = Some((t, load));
            }
        }
        healthy.or(fallback).map(|(t, _)| Arc::clone(t))
    }

    /// Adds a target, or leaves a registered one as it is; a draining one
    /// becomes initial again and takes requests once healthy.
    pub(crate) fn register(&self, spec: TargetSpec, stats: Arc<TargetStats>) {
        let mut members = write(&self.members);
        if let Some(pos) = members.iter().position(|t| t.id == spec.id) {
            let existing = Arc::clone(&members[pos]);
            if existing.addr == spec.addr {
                let mut st = lock(&existing.state);
                if st.health == TargetHealth::Draining {
                    if let Some(drainer) = st.drainer.take() {
                        drainer.abort();
                    }
                    existing.set_health(&mut st, TargetHealth::Initial, Some("registered again"));
                    existing.recheck.notify_one();
                }
                return;
            }
            // The same instance at a new address is a new target; requests
            // in flight to the old address finish on their own.
            members.remove(pos);
            existing.retire("registered again at another address");
        }
        let target = Arc::new(Target::new(
            spec,
            Arc::clone(&self.name),
            Arc::clone(&self.settings),
            stats,
        ));
        tracing::info!(
            listener = %self.settings.listener,
            target_group = %self.name,
            target = %target.id,
            addr = %target.addr,
            health = target.health_str(),
            "target registered"
        );
        let checker = health::spawn(Arc::clone(&target));
        lock(&target.state).checker = Some(checker);
        let pos = members.partition_point(|t| t.id < target.id);
        members.insert(pos, target);
    }

    /// Starts draining a target: no new requests; it leaves once its
    /// requests finished or the deregistration delay passed.
    pub(crate) fn deregister(self: &Arc<Self>, id: &str) {
        let mut members = write(&self.members);
        let Some(pos) = members.iter().position(|t| t.id == id) else {
            return;
        };
        let target = Arc::clone(&members[pos]);
        let mut st = lock(&target.state);
        if st.health == TargetHealth::Draining {
            return;
        }
        target.set_health(&mut st, TargetHealth::Draining, Some("deregistered"));
        if target.in_flight.load(Ordering::SeqCst) == 0 {
            drop(st);
            members.remove(pos);
            target.retire("drained");
            return;
        }
        let group = Arc::clone(self);
        let draining = Arc::clone(&target);
        let delay = self.settings.deregistration_delay;
        let drainer = self.settings.rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + delay;
            let timed_out = loop {
                if draining.in_flight.load(Ordering::SeqCst) == 0 {
                    break false;
                }
                tokio::select! {
                    () = draining.drained.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break true,
                }
            };
            group.finish_draining(&draining, timed_out);
        });
        st.drainer = Some(drainer.abort_handle());
    }

    fn finish_draining(&self, target: &Arc<Target>, timed_out: bool) {
        let mut members = write(&self.members);
        if lock(&target.state).health != TargetHealth::Draining {
            // Registered again meanwhile.
            return;
        }
        members.retain(|t| !Arc::ptr_eq(t, target));
        if timed_out {
            tracing::info!(
                listener = %self.settings.listener,
                target_group = %self.name,
                target = %target.id,
                in_flight = target.in_flight(),
                "deregistration delay passed with requests in flight"
            );
            target.retire("deregistration delay passed");
        } else {
            target.retire("drained");
        }
    }

    /// Registered and draining targets, by id.
    pub(crate) fn members(&self) -> Vec<Arc<Target>> {
        read(&self.members).clone()
    }

    pub(crate) fn views(&self) -> Vec<TargetView> {
        read(&self.members).iter().map(|t| t.view()).collect()
    }

    /// The group is gone: every target leaves (requests in flight finish).
    pub(crate) fn close(&self) {
        let members = std::mem::take(&mut *write(&self.members));
        for t in members {
            t.retire("target group removed");
        }
    }

    /// The balancer stopped: no more checks, no idle connections.
    pub(crate) fn stop(&self) {
        for t in read(&self.members).iter() {
            t.stop();
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// A panic while a lock is held cannot leave these structures half-updated
// in a way later readers would trip over, so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
