//! An in-memory, scripted fake cloud: the seam's groups, load balancers,
//! gates and leases with the local fleet daemon's Auto Scaling and ELB
//! semantics, and nothing real behind them — no processes, no sockets, no
//! files, no sleeping. It exists so roll's planner and executor can be
//! tested against every timing and every failure with paused time
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`), and it
//! is held to the daemon's behaviour by `cloud::conformance::fleet`.
//! Compiled with `cfg(test)` or the `fake` feature.
//!
//! ```ignore
//! let fake = FakeCloud::new();
//! fake.add_image("img-1", &"a".repeat(64), vec![]);
//! fake.script("img-1", ImageScript { ready_after: Duration::from_secs(2), ..ImageScript::default() });
//! fake.fail_nth("put_in_service", 1);
//! let cloud = fake.cloud();            // backend "fake"
//! // … drive roll against `cloud`, advance time, then:
//! assert!(fake.launched().len() <= 3);
//! ```
//!
//! **Time.** The fake's clock is [`crate::time::now_ms`] read when the
//! fake is made plus however far tokio's clock moved since: `now_ms()`
//! itself in a process with one paused runtime (nextest), and still exact
//! where several paused runtimes share a process (`cargo test`). State
//! evolves lazily: every call first computes every transition due up to
//! now, in time order ([`FakeCloud::settle`] does only that), so a test
//! that advances an hour pays for the transitions in it, not for the
//! milliseconds.
//!
//! **What happens when** (the daemon's rules, see
//! `local/fleet/daemon.rs`; differences are marked):
//! - A group launches from its current template version until it has
//!   `desired` live (not terminating) instances; the launch is at once
//!   (the daemon: within a tick). Each instance gets a fake address
//!   (`10.0.x.y:8080`) and is `Running` from its launch.
//! - Its image's [`ImageScript`] decides the rest: the instance answers
//!   `ready_after` after its launch. A `Pending` instance (launches not
//!   held) is gated by the group then: [`GateScript::Pass`] puts it in
//!   service (registered in the group's target group),
//!   [`GateScript::Fail`] sets its `launch_error` (it stays `Pending` until
//!   terminated), [`GateScript::NeverReady`] leaves it `Pending`. Held
//!   launches wait in `PendingWait` for `put_in_service`.
//! - Health checks run as the local balancer runs them: the first at
//!   registration, then every `interval_ms`; a target is `Healthy` after
//!   `healthy_threshold` passing checks in a row (so
//!   `(healthy_threshold - 1) * interval` after registration when it is
//!   ready by then) and `Unhealthy` after `unhealthy_threshold` failing
//!   ones. A check passes when the instance is alive, ready, and its
//!   [`HealthScript`] says healthy at that time.
//! - `deregister` makes a target `Draining`; it is gone at its next
//!   health-check beat once nothing is in flight ([`FakeCloud::set_in_flight`]),
//!   and at the latest after the deregistration delay (0: at once).
//!   (The local balancer removes a target with nothing in flight at once;
//!   the fake keeps it draining for up to one interval so callers' waits
//!   for draining are exercised.)
//! - A terminating instance is stopped, and gone from its group, once its
//!   group's target group no longer lists it (drained). `delete_group`
//!   stops at once.
//! - A killed instance ([`FakeCloud::kill`]) leaves its group and its
//!   group's target group at once and is replaced; launches after one
//!   that died before going in service back off 1 s, 2 s … 60 s. In other
//!   target groups (registered by hand) a dead instance stays, failing
//!   its checks, as in the daemon.
//! - Scale-in terminates (deregister, drain, stop) instances not in
//!   service first, then those of other images, then the oldest.
//! - A scheduled size change applies at its time (min lowered if needed,
//!   desired capped at max).
//!
//! **Faults and evidence.** [`FakeCloud::fail_nth`] fails the n-th next
//! call of an operation (named as the trait method: `set_desired`,
//! `register`, `describe_group`, `gate`, … — [`OPS`]) before it does
//! anything; [`FakeCloud::fail_nth_applied`] after it did its work (a
//! call that timed out). [`FakeCloud::calls`] counts every call by
//! operation (also [`Cloud::api_calls`]); [`FakeCloud::launched`] lists
//! every instance ever launched.
//!
//! Images: [`FakeCloud::add_image`] registers a complete image with a
//! manifest; `describe`, `manifest`, `list`, `find_by_tag`/`find_by_digest`
//! and `tag` work, everything else about images and builders is
//! `Unsupported`. The janitor finds nothing. Shadowing reports what
//! [`FakeCloud::script_shadow`] says; counters are what
//! [`FakeCloud::set_counters`] says (zero by default).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{CloudError, Result};
use crate::groups::{
    GroupInfo, GroupInstance, GroupSpec, Groups, Lease, LeaseHolder, Lifecycle, RefreshId,
    RefreshSpec, RefreshStatus, ScheduledDesired, TemplateVersion,
};
use crate::ids::{
    AccountId, GroupName, ImageId, InstanceId, ListenerId, Region, RunId, Tags, TargetGroupId, tags,
};
use crate::images::{
    BaseImage, BaseSelector, CopySpec, GoldenRecord, ImageInfo, ImageManifest, ImageSpec,
    ImageState, Images, IndexRecord, MANIFEST_FORMAT,
};
use crate::instances::{BuildReport, BuilderSpec, Builders, InstanceState};
use crate::lb::{
    LbCounters, ListenerInfo, ListenerSpec, LoadBalancers, ShadowReport, ShadowSpec, Target,
    TargetGroupInfo, TargetHealth, TargetStatus,
};
use crate::probe::{GateOutcome, GateSpec, Probes, golden_path, without_duration};
use crate::sweep::{Janitor, Leftover};
use crate::wait::WaitParams;
use crate::{Cloud, CloudParts};

pub const BACKEND: &str = "fake";
pub const REGION: &str = "fake";
/// The port every fake instance serves on.
pub const PORT: u16 = 8080;
/// Where fake listeners asked for port 0 are "bound": this port and up.
const FIRST_LISTENER_PORT: u16 = 40_000;
const PLACE: &str = "the fake cloud";

/// The operations [`FakeCloud::calls`] counts and [`FakeCloud::fail_nth`]
/// can fail: the seam's method names.
pub const OPS: &[&str] = &[
    // Groups
    "list_groups",
    "describe_group",
    "create_group",
    "set_image",
    "set_desired",
    "set_limits",
    "terminate_instance",
    "delete_group",
    "tag_group",
    "hold_launches",
    "put_in_service",
    "schedule_desired",
    "acquire_lease",
    "start_refresh",
    "describe_refresh",
    "cancel_refresh",
    "rollback_refresh",
    // LoadBalancers
    "targets",
    "register",
    "deregister",
    "target_group",
    "create_listener",
    "delete_listener",
    "listener",
    "switch",
    "set_weights",
    "start_shadow",
    "stop_shadow",
    "shadow",
    "counters",
    // Probes
    "gate",
    "gate_set",
    "set_standby",
    "alarms_firing",
    // Images
    "find_by_tag",
    "describe",
    "manifest",
    "list",
    "tag",
];

/// How instances of one image behave. Read when it matters (a script
/// changed mid-test applies from then on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScript {
    /// From launch until the instance answers at all (its gate can pass,
    /// its health checks can pass).
    pub ready_after: Duration,
    pub gate: GateScript,
    pub health: HealthScript,
}

impl Default for ImageScript {
    /// Ready 100 ms after launch, passes its gate, stays healthy.
    fn default() -> Self {
        ImageScript {
            ready_after: Duration::from_millis(100),
            gate: GateScript::Pass,
            health: HealthScript::Healthy,
        }
    }
}

/// What the gate (the group's own launch check, and [`Probes::gate`])
/// finds once the instance is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateScript {
    /// Answers as its image should: the gate passes for a [`GateSpec`] of
    /// its own image (another image's spec fails on `/version image`, a
    /// golden answer the image did not record fails on that query).
    Pass,
    /// Answers, wrongly.
    Fail {
        check: String,
        expected: String,
        actual: String,
    },
    /// `/ready` never answers 200 (health checks fail too).
    NeverReady,
}

/// What the balancer's health checks find once the instance is ready.
/// Offsets count from the target's registration in its target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthScript {
    Healthy,
    /// Healthy, except for `lasting` from `at` after registration.
    Flap {
        at: Duration,
        lasting: Duration,
    },
    /// Healthy until this long after registration, then failing for good.
    UnhealthyAfter(Duration),
}

/// The fake cloud. Cheap to clone: clones share one world.
#[derive(Clone)]
pub struct FakeCloud {
    world: Arc<Mutex<World>>,
    /// `now_ms()` and tokio's clock when the fake was made.
    origin: (u64, tokio::time::Instant),
}

impl Default for FakeCloud {
    fn default() -> Self {
        FakeCloud::new()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn not_found(kind: &'static str, id: impl ToString) -> CloudError {
    CloudError::not_found(kind, id, PLACE)
}

fn unsupported(op: &'static str) -> CloudError {
    CloudError::Unsupported {
        backend: BACKEND,
        op,
    }
}

/// Launch backoff after `n` launches in a row died before going in
/// service (the daemon's): 1 s, 2 s, 4 s … 60 s.
fn backoff_ms(n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        (1000u64 << (n - 1).min(6)).min(60_000)
    }
}

/// The daemon's rule for group, listener and target group names.
fn valid_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CloudError::invalid(
            what,
            format!("{name:?}: use 1 to 64 letters, digits, '-' and '_'"),
        ))
    }
}

impl FakeCloud {
    pub fn new() -> FakeCloud {
        FakeCloud {
            world: Arc::new(Mutex::new(World::default())),
            origin: (crate::time::now_ms(), tokio::time::Instant::now()),
        }
    }

    /// The fake as a [`Cloud`] (backend `"fake"`, region `"fake"`, local
    /// wait parameters), with [`FakeCloud::calls`] as its API call count.
    pub fn cloud(&self) -> Cloud {
        let me = Arc::new(self.clone());
        let counter = self.clone();
        Cloud::new(CloudParts {
            backend: BACKEND,
            region: Region::from(REGION),
            images: me.clone(),
            builders: me.clone(),
            groups: me.clone(),
            lbs: me.clone(),
            probes: me.clone(),
            janitor: me,
            wait: WaitParams::LOCAL,
        })
        .with_api_calls(Arc::new(move || counter.calls()))
    }

    /// The fake's now, Unix ms (see the module doc).
    pub fn now_ms(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin.1);
        self.origin.0 + ms(elapsed)
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panicking test thread must not hide the world from the others.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The world with every transition up to now applied.
    fn settled(&self) -> MutexGuard<'_, World> {
        let now = self.now_ms();
        let mut w = self.lock();
        w.advance(now);
        w
    }

    /// One seam call: transitions up to now, the call counted (and failed
    /// if scripted so), the change, then whatever it set off at once.
    fn op<T>(&self, name: &str, f: impl FnOnce(&mut World, u64) -> Result<T>) -> Result<T> {
        let mut w = self.settled();
        let now = w.clock;
        let fault = w.count(name);
        if fault == Some(Fault::Before) {
            return Err(injected(name, "refused before doing anything"));
        }
        let out = f(&mut w, now);
        w.reconcile(now);
        w.advance(now);
        if fault == Some(Fault::After) {
            return Err(injected(name, "timed out after doing its work"));
        }
        out
    }

    /// Applies every transition due up to now (every call does this
    /// first; useful before reading [`FakeCloud::launched`]).
    pub fn settle(&self) {
        drop(self.settled());
    }

    /// When the next scripted transition is due (Unix ms), if any: a
    /// launch check, a health check that can change something, the end of
    /// a drain, a scheduled size change, a launch after backoff.
    pub fn next_event_ms(&self) -> Option<u64> {
        self.settled().next_event()
    }

    /// Registers a complete, available image whose manifest records
    /// `index_digest` and `golden` (index `books`).
    pub fn add_image(&self, id: impl Into<String>, index_digest: &str, golden: Vec<GoldenRecord>) {
        let id = ImageId::new(id.into());
        let mut w = self.settled();
        let now = w.clock;
        let created_unix = now / 1000;
        let mut t = Tags::new();
        t.insert(tags::DIGEST.into(), format!("fake-{id}"));
        t.insert(tags::NAME.into(), "fake".into());
        t.insert(tags::STATE.into(), tags::STATE_COMPLETE.into());
        t.insert(tags::INDEX_DIGEST.into(), index_digest.into());
        t.insert(tags::SEARCHD_VERSION.into(), "fake".into());
        t.insert(tags::CREATED.into(), crate::time::rfc3339(created_unix));
        let manifest = ImageManifest {
            format: MANIFEST_FORMAT,
            id: id.clone(),
            name: "fake".into(),
            digest: format!("fake-{id}"),
            base: BaseImage {
                id: ImageId::from("scratch"),
                name: "scratch".into(),
                tarball: None,
            },
            parents: vec![],
            files: vec![],
            tags: t.clone(),
            searchd_version: "fake".into(),
            index: IndexRecord {
                name: "books".into(),
                digest: index_digest.into(),
                documents: 0,
                path: "/var/lib/kiln/books.idx".into(),
                golden,
            },
            created: crate::time::rfc3339(created_unix),
            created_unix,
            run: RunId::from("fake"),
            rootfs: None,
        };
        let info = ImageInfo {
            id: id.clone(),
            name: "fake".into(),
            region: Region::from(REGION),
            state: ImageState::Available,
            created_unix,
            tags: t,
            size_bytes: None,
        };
        w.image_seq += 1;
        let seq = w.image_seq;
        w.images.insert(
            id,
            FakeImage {
                info,
                manifest,
                seq,
            },
        );
    }

    /// An alarm named `name` that is quiet, or firing from `firing_at_ms`
    /// (Unix ms on the fake's clock) on.
    pub fn alarm(&self, name: &str, firing_at_ms: Option<u64>) {
        self.settled().alarms.insert(name.to_owned(), firing_at_ms);
    }

    /// What [`Probes::gate_set`] answers from now on, in turn (the last
    /// one repeats).
    pub fn script_set_gate(&self, outcomes: Vec<GateOutcome>) {
        self.settled().set_gates = outcomes;
    }

    /// Whether `group` is marked a standby ([`Groups::set_standby`]).
    pub fn is_standby(&self, group: &GroupName) -> bool {
        self.settled().groups.get(group).is_some_and(|g| g.standby)
    }

    /// How instances of `image` behave from now on.
    pub fn script(&self, image: impl Into<String>, script: ImageScript) {
        let mut w = self.settled();
        w.scripts.insert(ImageId::new(image.into()), script);
        let now = w.clock;
        w.recheck_all(now);
        w.advance(now);
    }

    /// The report the next `start_shadow` starts from (its target group is
    /// filled in) and `shadow`/`stop_shadow` return.
    pub fn script_shadow(&self, report: ShadowReport) {
        self.settled().shadow_script = report;
    }

    /// What `counters` answers for `listener` from now on.
    pub fn set_counters(&self, listener: &ListenerId, counters: LbCounters) {
        self.settled().counters.insert(listener.clone(), counters);
    }

    /// `instance` has `n` requests in flight for `lasting` from now: a
    /// draining target stays until then (at most the deregistration
    /// delay), and targets report them.
    pub fn set_in_flight(&self, instance: &InstanceId, n: u64, lasting: Duration) {
        let mut w = self.settled();
        let now = w.clock;
        w.in_flight
            .insert(instance.clone(), (n, now.saturating_add(ms(lasting))));
        w.redrain(instance);
        w.advance(now);
    }

    /// The instance dies (its processes are gone). Its group drops it and
    /// replaces it, as the daemon does. `false` if no group has it.
    pub fn kill(&self, id: &InstanceId) -> bool {
        let mut w = self.settled();
        let now = w.clock;
        let killed = w.kill(id, now);
        w.reconcile(now);
        w.advance(now);
        killed
    }

    /// The `n`-th call of `op` from now on (1 = the next one) fails with
    /// [`CloudError::Api`] before doing anything.
    pub fn fail_nth(&self, op: &str, n: u64) {
        self.add_fault(op, n, Fault::Before);
    }

    /// The `n`-th call of `op` from now on does its work and then fails
    /// with [`CloudError::Api`] (a call whose answer was lost).
    pub fn fail_nth_applied(&self, op: &str, n: u64) {
        self.add_fault(op, n, Fault::After);
    }

    fn add_fault(&self, op: &str, n: u64, kind: Fault) {
        assert!(
            OPS.contains(&op),
            "fake cloud: no operation {op:?} to fail (one of {OPS:?})"
        );
        assert!(n >= 1, "fake cloud: calls count from 1");
        let mut w = self.lock();
        let call = w.calls.get(op).copied().unwrap_or(0) + n;
        w.faults.push((op.to_owned(), call, kind));
    }

    /// Every call so far, by operation.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Every instance ever launched, in launch order, with its image.
    pub fn launched(&self) -> Vec<(InstanceId, ImageId)> {
        self.settled().launched.clone()
    }

    /// The lease's holder dies without releasing it (`kill -9`): the
    /// lease is free.
    pub fn break_lease(&self, group: &GroupName) {
        self.lock().leases.remove(group);
    }
}

fn injected(op: &str, how: &str) -> CloudError {
    CloudError::Api {
        op: op.to_owned(),
        message: format!("injected fault: {how}"),
        source: None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Before,
    After,
}

struct FakeImage {
    info: ImageInfo,
    manifest: ImageManifest,
    /// Registration order: `list` is newest first.
    seq: u64,
}

struct Group {
    name: GroupName,
    desired: u32,
    min: u32,
    max: u32,
    current: TemplateVersion,
    previous: Vec<TemplateVersion>,
    target_group: Option<TargetGroupId>,
    tags: Tags,
    hold_launches: bool,
    scheduled: Option<ScheduledDesired>,
    /// A blue/green standby ([`Groups::set_standby`]).
    standby: bool,
    /// Oldest launch first.
    instances: Vec<Instance>,
    failed_launches: u32,
    next_launch_ms: u64,
}

impl Group {
    fn live(&self) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .count() as u32
    }

    fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.name.clone(),
            desired: self.desired,
            min: self.min,
            max: self.max,
            current: self.current.clone(),
            previous: self.previous.clone(),
            instances: self.instances.iter().map(Instance::info).collect(),
            target_group: self.target_group.clone(),
            tags: self.tags.clone(),
            hold_launches: self.hold_launches,
            scheduled: self.scheduled,
        }
    }
}

struct Instance {
    id: InstanceId,
    image: ImageId,
    address: SocketAddr,
    launched_ms: u64,
    lifecycle: Lifecycle,
    launch_error: Option<String>,
}

impl Instance {
    fn info(&self) -> GroupInstance {
        GroupInstance {
            id: self.id.clone(),
            image: self.image.clone(),
            state: if self.lifecycle == Lifecycle::Terminating {
                InstanceState::ShuttingDown
            } else {
                InstanceState::Running
            },
            lifecycle: self.lifecycle,
            address: Some(self.address),
            launched_ms: self.launched_ms,
            launch_error: self.launch_error.clone(),
        }
    }
}

struct Listener {
    spec: ListenerSpec,
    bound: SocketAddr,
    admin_bound: Option<SocketAddr>,
    forward: TargetGroupId,
    /// A weighted forward: this target group gets this percent (1..=99)
    /// of new requests, `forward` the rest (the daemon's `split`).
    split: Option<(TargetGroupId, u32)>,
    /// Registered and draining targets by target group, sorted by id.
    targets: BTreeMap<TargetGroupId, Vec<Tgt>>,
    shadow: Option<ShadowReport>,
}

impl Listener {
    fn info(&self) -> ListenerInfo {
        ListenerInfo {
            id: self.spec.id.clone(),
            address: self.bound.to_string(),
            tls: self.spec.tls.is_some(),
            admin: self.admin_bound.map(|a| a.to_string()),
            target_groups: self.spec.target_groups.clone(),
            forward: match &self.split {
                Some((tg, p)) if *p > 50 => tg.clone(),
                _ => self.forward.clone(),
            },
            weights: self
                .spec
                .target_groups
                .iter()
                .map(|tg| (tg.clone(), self.weight_of(tg)))
                .collect(),
        }
    }

    fn weight_of(&self, tg: &TargetGroupId) -> u32 {
        match &self.split {
            Some((s, p)) if s == tg => *p,
            Some((_, p)) if *tg == self.forward => 100 - p,
            None if *tg == self.forward => 100,
            _ => 0,
        }
    }
}

/// One target in one target group, with the balancer's check state.
struct Tgt {
    instance: InstanceId,
    address: SocketAddr,
    /// Checks run at `registered_ms + k * interval`.
    registered_ms: u64,
    health: TargetHealth,
    since_ms: u64,
    successes: u32,
    failures: u32,
    /// The next check that can change something (`u64::MAX`: none).
    next_check_ms: u64,
    /// Draining: when it leaves.
    gone_ms: Option<u64>,
}

/// The first check beat at or after `t` of a target registered at `r`.
fn beat_at_or_after(r: u64, interval: u64, t: u64) -> u64 {
    if t <= r {
        r
    } else {
        r.saturating_add((t - r).div_ceil(interval).saturating_mul(interval))
    }
}

#[derive(Default)]
struct World {
    /// How far the world has been computed (Unix ms, never backwards).
    clock: u64,
    images: BTreeMap<ImageId, FakeImage>,
    image_seq: u64,
    scripts: BTreeMap<ImageId, ImageScript>,
    groups: BTreeMap<GroupName, Group>,
    listeners: BTreeMap<ListenerId, Listener>,
    launched: Vec<(InstanceId, ImageId)>,
    next_instance: u64,
    next_port: u16,
    leases: BTreeMap<GroupName, (u64, LeaseHolder)>,
    next_lease: u64,
    calls: BTreeMap<String, u64>,
    /// (operation, absolute call number, kind).
    faults: Vec<(String, u64, Fault)>,
    /// Requests in flight per instance: (count, until Unix ms).
    in_flight: BTreeMap<InstanceId, (u64, u64)>,
    shadow_script: ShadowReport,
    counters: BTreeMap<ListenerId, LbCounters>,
    /// Alarms that exist, and from when (Unix ms) each is firing.
    alarms: BTreeMap<String, Option<u64>>,
    /// What the gate through a test listener answers, in turn (the last
    /// one from then on; none: it passes).
    set_gates: Vec<GateOutcome>,
    /// Every instance refresh, oldest first (`refresh.rs`).
    refreshes: Vec<refresh::Refresh>,
    next_refresh: u64,
}

/// A due transition found by [`World::next_event`]'s scan.
enum Due {
    Scheduled(GroupName),
    /// A launch after backoff (reconcile, after every step, launches).
    Launch,
    Ready(GroupName, InstanceId),
    Check(ListenerId, TargetGroupId, InstanceId),
    Drained(ListenerId, TargetGroupId, InstanceId),
    /// An instance refresh's next look (reconcile, after every step,
    /// moves refreshes on).
    Refresh,
}

impl World {
    fn count(&mut self, op: &str) -> Option<Fault> {
        debug_assert!(OPS.contains(&op), "uncounted fake operation {op}");
        let n = self.calls.entry(op.to_owned()).or_insert(0);
        *n += 1;
        let n = *n;
        let pos = self
            .faults
            .iter()
            .position(|(o, call, _)| o == op && *call == n)?;
        Some(self.faults.remove(pos).2)
    }

    fn script(&self, image: &ImageId) -> ImageScript {
        self.scripts.get(image).cloned().unwrap_or_default()
    }

    fn instance(&self, id: &InstanceId) -> Option<(&Group, &Instance)> {
        self.groups
            .values()
            .find_map(|g| g.instances.iter().find(|i| &i.id == id).map(|i| (g, i)))
    }

    fn group(&self, name: &GroupName) -> Result<&Group> {
        self.groups
            .get(name)
            .ok_or_else(|| not_found("group", name))
    }

    fn group_mut(&mut self, name: &GroupName) -> Result<&mut Group> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| not_found("group", name))
    }

    fn listener_of(&self, tg: &TargetGroupId) -> Option<&Listener> {
        self.listeners
            .values()
            .find(|l| l.spec.target_groups.contains(tg))
    }

    fn listener_of_mut(&mut self, tg: &TargetGroupId) -> Option<&mut Listener> {
        self.listeners
            .values_mut()
            .find(|l| l.spec.target_groups.contains(tg))
    }

    fn listener_mut(&mut self, id: &ListenerId) -> Result<&mut Listener> {
        self.listeners
            .get_mut(id)
            .ok_or_else(|| not_found("listener", id))
    }

    /// Whether `tg` lists the instance (registered or draining).
    fn in_tg(&self, tg: &TargetGroupId, id: &InstanceId) -> bool {
        self.listener_of(tg)
            .and_then(|l| l.targets.get(tg))
            .is_some_and(|ts| ts.iter().any(|t| &t.instance == id))
    }

    fn in_flight_at(&self, id: &InstanceId, t: u64) -> (u64, u64) {
        match self.in_flight.get(id) {
            Some(&(n, until)) if n > 0 && until > t => (n, until),
            _ => (0, 0),
        }
    }

    // ---- time ------------------------------------------------------------

    /// Applies every transition due up to `now`, in time order.
    fn advance(&mut self, now: u64) {
        let now = now.max(self.clock);
        // Every step consumes what it found due (a check moves to a later
        // beat, a drain ends, a launch check settles…); the bound only
        // turns a bug in that into a loud failure instead of a hang.
        for _ in 0..10_000_000u32 {
            match self.next_due() {
                Some((t, due)) if t <= now => {
                    let t = t.max(self.clock);
                    self.clock = t;
                    self.step(t, due);
                    self.reconcile(t);
                }
                _ => {
                    self.clock = now;
                    return;
                }
            }
        }
        panic!("fake cloud: transitions up to {now} do not settle (a bug in the fake)");
    }

    fn next_event(&self) -> Option<u64> {
        self.next_due().map(|(t, _)| t)
    }

    /// The earliest due transition.
    fn next_due(&self) -> Option<(u64, Due)> {
        let mut best: Option<(u64, Due)> = None;
        let mut consider = |t: u64, due: Due| {
            if t != u64::MAX && best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, due));
            }
        };
        for g in self.groups.values() {
            if let Some(s) = g.scheduled {
                consider(s.at_ms, Due::Scheduled(g.name.clone()));
            }
            if g.live() < g.desired {
                consider(g.next_launch_ms, Due::Launch);
            }
            for i in &g.instances {
                if i.lifecycle == Lifecycle::Pending && i.launch_error.is_none() {
                    let s = self.script(&i.image);
                    if s.gate != GateScript::NeverReady {
                        consider(
                            i.launched_ms.saturating_add(ms(s.ready_after)),
                            Due::Ready(g.name.clone(), i.id.clone()),
                        );
                    }
                }
            }
        }
        for r in &self.refreshes {
            consider(r.due(self), Due::Refresh);
        }
        for l in self.listeners.values() {
            for (tg, ts) in &l.targets {
                for t in ts {
                    let (at, due) = match t.gone_ms {
                        Some(gone) => (
                            gone,
                            Due::Drained(l.spec.id.clone(), tg.clone(), t.instance.clone()),
                        ),
                        None => (
                            t.next_check_ms,
                            Due::Check(l.spec.id.clone(), tg.clone(), t.instance.clone()),
                        ),
                    };
                    consider(at, due);
                }
            }
        }
        best
    }

    fn step(&mut self, t: u64, due: Due) {
        match due {
            Due::Scheduled(name) => {
                if let Some(g) = self.groups.get_mut(&name)
                    && let Some(s) = g.scheduled.take()
                {
                    g.min = g.min.min(s.desired);
                    g.desired = s.desired.min(g.max);
                }
            }
            Due::Launch | Due::Refresh => {}
            Due::Ready(name, id) => self.launch_check(&name, &id, t),
            Due::Check(l, tg, id) => self.check(&l, &tg, &id),
            Due::Drained(l, tg, id) => {
                if let Some(ts) = self
                    .listeners
                    .get_mut(&l)
                    .and_then(|l| l.targets.get_mut(&tg))
                {
                    ts.retain(|x| x.instance != id);
                }
            }
        }
    }

    /// The group's own gate on a `Pending` instance that is ready.
    fn launch_check(&mut self, name: &GroupName, id: &InstanceId, t: u64) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let Some(i) = g.instances.iter().find(|i| &i.id == id) else {
            return;
        };
        let outcome = match self.script(&i.image).gate {
            GateScript::Pass => GateOutcome::Passed,
            GateScript::Fail {
                check,
                expected,
                actual,
            } => GateOutcome::Failed {
                check,
                expected,
                actual,
            },
            GateScript::NeverReady => return,
        };
        let address = i.address;
        let tg = g.target_group.clone();
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        let Some(i) = g.instances.iter_mut().find(|i| &i.id == id) else {
            return;
        };
        match outcome {
            GateOutcome::Passed => {
                i.lifecycle = Lifecycle::InService;
                g.failed_launches = 0;
                if let Some(tg) = tg {
                    // A target group deleted under the group: the daemon
                    // puts it in service all the same.
                    let _ = self.register_target(&tg, id, address, t);
                }
            }
            other => i.launch_error = Some(other.to_string()),
        }
    }

    /// Whether a check at `t` passes, and until when that answer holds.
    fn outcome(&self, id: &InstanceId, registered_ms: u64, t: u64) -> (Result<(), String>, u64) {
        let Some((_, i)) = self.instance(id) else {
            // Dead for good: the answer never changes.
            return (Err("connection refused".into()), u64::MAX);
        };
        let s = self.script(&i.image);
        let ready = i.launched_ms.saturating_add(ms(s.ready_after));
        if t < ready {
            return (Err("connection refused".into()), ready);
        }
        if s.gate == GateScript::NeverReady {
            return (Err("status 503".into()), u64::MAX);
        }
        let r = registered_ms;
        match s.health {
            HealthScript::Healthy => (Ok(()), u64::MAX),
            HealthScript::Flap { at, lasting } => {
                let from = r.saturating_add(ms(at));
                let to = from.saturating_add(ms(lasting));
                if t < from {
                    (Ok(()), from)
                } else if t < to {
                    (Err("status 503".into()), to)
                } else {
                    (Ok(()), u64::MAX)
                }
            }
            HealthScript::UnhealthyAfter(d) => {
                let from = r.saturating_add(ms(d));
                if t < from {
                    (Ok(()), from)
                } else {
                    (Err("status 503".into()), u64::MAX)
                }
            }
        }
    }

    /// One health check of one target, at its due beat (the balancer's
    /// state machine), and when the next one that can matter is.
    fn check(&mut self, l: &ListenerId, tg: &TargetGroupId, id: &InstanceId) {
        let Some(listener) = self.listeners.get(l) else {
            return;
        };
        let hc = listener.spec.health_check.clone();
        let interval = hc.interval_ms.max(1);
        let Some(target) = listener
            .targets
            .get(tg)
            .and_then(|ts| ts.iter().find(|t| &t.instance == id))
        else {
            return;
        };
        let (tc, r) = (target.next_check_ms, target.registered_ms);
        let (outcome, holds_until) = self.outcome(id, r, tc);
        let Some(t) = self
            .listeners
            .get_mut(l)
            .and_then(|l| l.targets.get_mut(tg))
            .and_then(|ts| ts.iter_mut().find(|t| &t.instance == id))
        else {
            return;
        };
        let set = |t: &mut Tgt, health: TargetHealth| {
            t.health = health;
            t.since_ms = tc;
            t.successes = 0;
            t.failures = 0;
        };
        let ok = outcome.is_ok();
        match outcome {
            Ok(()) => {
                t.failures = 0;
                t.successes = t.successes.saturating_add(1);
                if t.health != TargetHealth::Healthy && t.successes >= hc.healthy_threshold.max(1) {
                    set(t, TargetHealth::Healthy);
                }
            }
            Err(reason) => {
                t.successes = 0;
                t.failures = t.failures.saturating_add(1);
                if let TargetHealth::Unhealthy { reason: old } = &mut t.health {
                    *old = reason;
                } else if t.failures >= hc.unhealthy_threshold.max(1) {
                    set(t, TargetHealth::Unhealthy { reason });
                }
            }
        }
        let settled = match &t.health {
            TargetHealth::Healthy => ok,
            TargetHealth::Unhealthy { .. } => !ok,
            _ => false,
        };
        t.next_check_ms = if !settled {
            tc.saturating_add(interval)
        } else if holds_until == u64::MAX {
            u64::MAX
        } else {
            // Nothing changes before the answer does: skip to that beat.
            beat_at_or_after(r, interval, holds_until).max(tc.saturating_add(interval))
        };
    }

    /// Checks of targets that skipped ahead resume at their next beat
    /// (something their answer depends on changed).
    fn recheck(&mut self, only: Option<&InstanceId>, now: u64) {
        for l in self.listeners.values_mut() {
            let interval = l.spec.health_check.interval_ms.max(1);
            for ts in l.targets.values_mut() {
                for t in ts.iter_mut() {
                    if t.gone_ms.is_none() && only.is_none_or(|id| id == &t.instance) {
                        t.next_check_ms = beat_at_or_after(t.registered_ms, interval, now);
                    }
                }
            }
        }
    }

    fn recheck_all(&mut self, now: u64) {
        self.recheck(None, now);
    }

    // ---- groups ----------------------------------------------------------

    /// Moves instance refreshes on, sizes every group, and lets go of
    /// terminating instances that are drained (the daemon's tick, steps 4
    /// and 5).
    fn reconcile(&mut self, now: u64) {
        // Refreshes look at the groups as sized (drained instances gone),
        // and what they change is sized at once.
        self.size_groups(now);
        self.refresh_tick(now);
        self.size_groups(now);
    }

    fn size_groups(&mut self, now: u64) {
        let names: Vec<GroupName> = self.groups.keys().cloned().collect();
        for name in names {
            let Some(g) = self.groups.get(&name) else {
                continue;
            };
            let live = g.live();
            if live < g.desired && now >= g.next_launch_ms {
                for _ in live..g.desired {
                    self.launch(&name, now);
                }
            } else if live > g.desired {
                let victims = crate::groups::scale_in_victims(
                    g.instances.iter().map(|i| crate::groups::ScaleInCandidate {
                        id: &i.id,
                        lifecycle: i.lifecycle,
                        image: &i.image,
                        launched_ms: i.launched_ms,
                    }),
                    &g.current.image,
                    (live - g.desired) as usize,
                );
                for id in victims {
                    self.terminate(&name, &id, now);
                }
            }
            let Some(g) = self.groups.get(&name) else {
                continue;
            };
            let stopped: Vec<InstanceId> = g
                .instances
                .iter()
                .filter(|i| {
                    i.lifecycle == Lifecycle::Terminating
                        && !g
                            .target_group
                            .as_ref()
                            .is_some_and(|tg| self.in_tg(tg, &i.id))
                })
                .map(|i| i.id.clone())
                .collect();
            if stopped.is_empty() {
                continue;
            }
            if let Some(g) = self.groups.get_mut(&name) {
                g.instances.retain(|i| !stopped.contains(&i.id));
            }
            for id in &stopped {
                self.recheck(Some(id), now);
            }
        }
    }

    fn launch(&mut self, name: &GroupName, now: u64) {
        self.next_instance += 1;
        let n = self.next_instance;
        let id = InstanceId::new(format!("i-{n:016x}"));
        let address = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (n / 250 % 256) as u8,
                (n % 250 + 1) as u8,
            )),
            PORT,
        );
        let from = self.launch_version(name);
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        let image = from.unwrap_or_else(|| g.current.clone()).image;
        g.instances.push(Instance {
            id: id.clone(),
            image: image.clone(),
            address,
            launched_ms: now,
            lifecycle: if g.hold_launches {
                Lifecycle::PendingWait
            } else {
                Lifecycle::Pending
            },
            launch_error: None,
        });
        self.launched.push((id, image));
    }

    /// Marks a member terminating and starts draining it from its group's
    /// target group.
    fn terminate(&mut self, name: &GroupName, id: &InstanceId, now: u64) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        let Some(i) = g.instances.iter_mut().find(|i| &i.id == id) else {
            return;
        };
        i.lifecycle = Lifecycle::Terminating;
        if let Some(tg) = g.target_group.clone() {
            self.deregister_target(&tg, id, now);
        }
    }

    fn kill(&mut self, id: &InstanceId, now: u64) -> bool {
        let Some(g) = self
            .groups
            .values_mut()
            .find(|g| g.instances.iter().any(|i| &i.id == id))
        else {
            return false;
        };
        let Some(pos) = g.instances.iter().position(|i| &i.id == id) else {
            return false;
        };
        let i = g.instances.remove(pos);
        match i.lifecycle {
            Lifecycle::Terminating | Lifecycle::InService => {}
            Lifecycle::Pending | Lifecycle::PendingWait => {
                g.failed_launches += 1;
                g.next_launch_ms = now + backoff_ms(g.failed_launches);
            }
        }
        // A dead target has nothing in flight worth waiting for.
        if let Some(tg) = g.target_group.clone()
            && let Some(ts) = self
                .listener_of_mut(&tg)
                .and_then(|l| l.targets.get_mut(&tg))
        {
            ts.retain(|t| &t.instance != id);
        }
        self.recheck(Some(id), now);
        true
    }

    // ---- targets ---------------------------------------------------------

    fn register_target(
        &mut self,
        tg: &TargetGroupId,
        id: &InstanceId,
        address: SocketAddr,
        now: u64,
    ) -> Result<()> {
        let l = self
            .listener_of_mut(tg)
            .ok_or_else(|| not_found("target group", tg))?;
        let ts = l.targets.entry(tg.clone()).or_default();
        let fresh = Tgt {
            instance: id.clone(),
            address,
            registered_ms: now,
            health: TargetHealth::Initial,
            since_ms: now,
            successes: 0,
            failures: 0,
            next_check_ms: now,
            gone_ms: None,
        };
        match ts.iter_mut().find(|t| &t.instance == id) {
            // Registered again while draining: initial, checked at once.
            Some(t) if t.gone_ms.is_some() => *t = fresh,
            Some(_) => {}
            None => {
                ts.push(fresh);
                ts.sort_by(|a, b| a.instance.cmp(&b.instance));
            }
        }
        Ok(())
    }

    fn deregister_target(&mut self, tg: &TargetGroupId, id: &InstanceId, now: u64) {
        let flight = self.in_flight_at(id, now).1;
        let Some(l) = self.listener_of_mut(tg) else {
            return;
        };
        let delay = l.spec.deregistration_delay_ms;
        let interval = l.spec.health_check.interval_ms.max(1);
        let Some(t) = l
            .targets
            .get_mut(tg)
            .and_then(|ts| ts.iter_mut().find(|t| &t.instance == id))
        else {
            return;
        };
        if t.gone_ms.is_some() {
            return;
        }
        t.health = TargetHealth::Draining;
        t.since_ms = now;
        t.gone_ms = Some(drain_end(t.registered_ms, interval, delay, now, flight));
    }

    /// In-flight requests of `id` changed: draining targets of it end anew.
    fn redrain(&mut self, id: &InstanceId) {
        let in_flight = self.in_flight.get(id).copied();
        for l in self.listeners.values_mut() {
            let delay = l.spec.deregistration_delay_ms;
            let interval = l.spec.health_check.interval_ms.max(1);
            for ts in l.targets.values_mut() {
                for t in ts.iter_mut().filter(|t| &t.instance == id) {
                    if t.gone_ms.is_some() {
                        let since = t.since_ms;
                        let flight = match in_flight {
                            Some((n, until)) if n > 0 && until > since => until,
                            _ => 0,
                        };
                        t.gone_ms =
                            Some(drain_end(t.registered_ms, interval, delay, since, flight));
                    }
                }
            }
        }
    }

    fn target_statuses(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        let l = self
            .listener_of(tg)
            .ok_or_else(|| not_found("target group", tg))?;
        Ok(l.targets
            .get(tg)
            .map(|ts| {
                ts.iter()
                    .map(|t| TargetStatus {
                        target: Target {
                            instance: t.instance.clone(),
                            port: t.address.port(),
                        },
                        address: Some(t.address),
                        health: t.health.clone(),
                        since_ms: t.since_ms,
                        in_flight: self.in_flight_at(&t.instance, self.clock).0,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn gate(&self, id: &InstanceId, spec: &GateSpec, now: u64) -> GateOutcome {
        let Some((_, i)) = self.instance(id) else {
            return GateOutcome::NotReady {
                why: format!("{id}: connection refused"),
            };
        };
        let s = self.script(&i.image);
        if now < i.launched_ms.saturating_add(ms(s.ready_after)) {
            return GateOutcome::NotReady {
                why: format!("{}: connection refused", i.address),
            };
        }
        match s.gate {
            GateScript::NeverReady => {
                return GateOutcome::NotReady {
                    why: "/ready answered 503".into(),
                };
            }
            GateScript::Fail {
                check,
                expected,
                actual,
            } => return GateOutcome::failed(check, expected, actual),
            GateScript::Pass => {}
        }
        if spec.image != i.image {
            return GateOutcome::failed("/version image", spec.image.as_str(), i.image.as_str());
        }
        let Some(img) = self.images.get(&i.image) else {
            return GateOutcome::failed("/version", "an answer", "no image behind the instance");
        };
        let index = &img.manifest.index;
        if spec.index_digest != index.digest {
            return GateOutcome::failed("/version index_digest", &spec.index_digest, &index.digest);
        }
        for g in &spec.golden {
            let path = golden_path(&spec.index, g);
            let recorded = index
                .golden
                .iter()
                .find(|r| r.query == g.query && r.ids == g.ids && r.offset == g.offset);
            match recorded {
                Some(r)
                    if without_duration(r.answer.as_bytes())
                        == without_duration(g.answer.as_bytes()) => {}
                Some(r) => {
                    return GateOutcome::failed(format!("golden {path}"), &g.answer, &r.answer);
                }
                None => {
                    return GateOutcome::failed(
                        format!("golden {path}"),
                        &g.answer,
                        format!("an answer image {} did not record", i.image),
                    );
                }
            }
        }
        GateOutcome::Passed
    }
}

/// When a target deregistered at `now` leaves: at its next check beat once
/// nothing is in flight (`flight_until`), at the latest after `delay`.
fn drain_end(registered: u64, interval: u64, delay: u64, now: u64, flight_until: u64) -> u64 {
    if delay == 0 {
        return now;
    }
    let next_beat = beat_at_or_after(registered, interval, now.saturating_add(1));
    now.saturating_add(delay).min(next_beat.max(flight_until))
}

struct FakeLease {
    holder: LeaseHolder,
    group: GroupName,
    token: u64,
    world: Arc<Mutex<World>>,
}

#[async_trait]
impl Lease for FakeLease {
    fn holder(&self) -> &LeaseHolder {
        &self.holder
    }
    async fn renew(&self) -> Result<()> {
        Ok(())
    }
}

impl Drop for FakeLease {
    fn drop(&mut self) {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        if w.leases
            .get(&self.group)
            .is_some_and(|(t, _)| *t == self.token)
        {
            w.leases.remove(&self.group);
        }
    }
}

#[async_trait]
impl Groups for FakeCloud {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        self.op("list_groups", |w, _| {
            Ok(w.groups.values().map(Group::info).collect())
        })
    }

    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo> {
        self.op("describe_group", |w, _| Ok(w.group(name)?.info()))
    }

    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        self.op("create_group", |w, now| {
            valid_name("group name", spec.name.as_str())?;
            if let Some(g) = w.groups.get(&spec.name) {
                return Ok(g.info());
            }
            crate::groups::check_spec_size(spec)?;
            if !w.images.contains_key(&spec.image) {
                return Err(not_found("image", &spec.image));
            }
            if let Some(tg) = &spec.target_group
                && w.listener_of(tg).is_none()
            {
                return Err(not_found("target group", tg));
            }
            let g = Group {
                name: spec.name.clone(),
                desired: spec.desired,
                min: spec.min,
                max: spec.max,
                current: TemplateVersion {
                    version: 1,
                    image: spec.image.clone(),
                    created_unix: now / 1000,
                },
                previous: Vec::new(),
                target_group: spec.target_group.clone(),
                tags: spec.tags.clone(),
                hold_launches: false,
                standby: false,
                scheduled: None,
                instances: Vec::new(),
                failed_launches: 0,
                next_launch_ms: 0,
            };
            // Answered as created; it starts launching right after.
            let info = g.info();
            w.groups.insert(spec.name.clone(), g);
            Ok(info)
        })
    }

    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion> {
        self.op("set_image", |w, now| {
            if !w.images.contains_key(image) {
                return Err(not_found("image", image));
            }
            let g = w.group_mut(name)?;
            if &g.current.image == image {
                return Ok(g.current.clone());
            }
            let v = TemplateVersion {
                version: g.current.version + 1,
                image: image.clone(),
                created_unix: now / 1000,
            };
            let old = std::mem::replace(&mut g.current, v.clone());
            g.previous.insert(0, old);
            g.failed_launches = 0;
            g.next_launch_ms = 0;
            Ok(v)
        })
    }

    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()> {
        self.op("set_desired", |w, _| {
            let g = w.group_mut(name)?;
            crate::groups::check_desired(name, desired, g.min, g.max)?;
            g.desired = desired;
            Ok(())
        })
    }

    async fn set_limits(&self, name: &GroupName, min: u32, max: u32) -> Result<()> {
        self.op("set_limits", |w, _| {
            let g = w.group_mut(name)?;
            crate::groups::check_limits(min, max)?;
            g.min = min;
            g.max = max;
            g.desired = g.desired.clamp(min, max);
            Ok(())
        })
    }

    async fn terminate_instance(
        &self,
        name: &GroupName,
        id: &InstanceId,
        decrement: bool,
    ) -> Result<()> {
        self.op("terminate_instance", |w, now| {
            let g = w.group_mut(name)?;
            let Some(i) = g.instances.iter().find(|i| &i.id == id) else {
                return Ok(());
            };
            if i.lifecycle == Lifecycle::Terminating {
                return Ok(());
            }
            if decrement {
                g.desired = crate::groups::decremented(name, g.desired, g.min)?;
            }
            w.terminate(name, id, now);
            Ok(())
        })
    }

    async fn delete_group(&self, name: &GroupName) -> Result<()> {
        self.op("delete_group", |w, now| {
            let Some(g) = w.groups.remove(name) else {
                return Ok(());
            };
            // Deleting stops at once: nothing drains.
            if let Some(tg) = &g.target_group
                && let Some(ts) = w.listener_of_mut(tg).and_then(|l| l.targets.get_mut(tg))
            {
                ts.retain(|t| !g.instances.iter().any(|i| i.id == t.instance));
            }
            for i in &g.instances {
                w.recheck(Some(&i.id), now);
            }
            Ok(())
        })
    }

    async fn tag_group(&self, name: &GroupName, set: &Tags, remove: &[String]) -> Result<()> {
        self.op("tag_group", |w, _| {
            let g = w.group_mut(name)?;
            for k in remove {
                g.tags.remove(k);
            }
            g.tags.extend(set.clone());
            Ok(())
        })
    }

    async fn hold_launches(&self, name: &GroupName, hold: bool) -> Result<()> {
        self.op("hold_launches", |w, _| {
            let g = w.group_mut(name)?;
            g.hold_launches = hold;
            if !hold {
                // Released: waiting instances are gated by the group.
                for i in g.instances.iter_mut() {
                    if i.lifecycle == Lifecycle::PendingWait {
                        i.lifecycle = Lifecycle::Pending;
                    }
                }
            }
            Ok(())
        })
    }

    async fn put_in_service(&self, name: &GroupName, id: &InstanceId) -> Result<()> {
        self.op("put_in_service", |w, now| {
            let g = w.group_mut(name)?;
            let tg = g.target_group.clone();
            let i = g
                .instances
                .iter_mut()
                .find(|i| &i.id == id)
                .ok_or_else(|| CloudError::not_found("instance", id, format!("group {name}")))?;
            match i.lifecycle {
                Lifecycle::InService => return Ok(()),
                Lifecycle::Terminating => {
                    return Err(CloudError::invalid(
                        "instance",
                        format!("{id} is terminating; it cannot go in service"),
                    ));
                }
                Lifecycle::Pending | Lifecycle::PendingWait => {}
            }
            i.lifecycle = Lifecycle::InService;
            i.launch_error = None;
            let address = i.address;
            g.failed_launches = 0;
            if let Some(tg) = tg {
                w.register_target(&tg, id, address, now)?;
            }
            Ok(())
        })
    }

    async fn schedule_desired(
        &self,
        name: &GroupName,
        scheduled: Option<ScheduledDesired>,
    ) -> Result<()> {
        self.op("schedule_desired", |w, _| {
            w.group_mut(name)?.scheduled = scheduled;
            Ok(())
        })
    }

    async fn set_standby(&self, name: &GroupName, standby: bool) -> Result<()> {
        self.op("set_standby", |w, _| {
            w.group_mut(name)?.standby = standby;
            Ok(())
        })
    }

    fn has_instance_refresh(&self) -> bool {
        true
    }

    async fn start_refresh(&self, name: &GroupName, spec: &RefreshSpec) -> Result<RefreshId> {
        self.op("start_refresh", |w, now| w.start_refresh(name, spec, now))
    }

    async fn describe_refresh(&self, name: &GroupName, id: &RefreshId) -> Result<RefreshStatus> {
        self.op("describe_refresh", |w, _| w.describe_refresh(name, id))
    }

    async fn cancel_refresh(&self, name: &GroupName) -> Result<()> {
        self.op("cancel_refresh", |w, _| w.cancel_refresh(name))
    }

    async fn rollback_refresh(&self, name: &GroupName) -> Result<()> {
        self.op("rollback_refresh", |w, now| w.rollback_refresh(name, now))
    }

    async fn acquire_lease(
        &self,
        name: &GroupName,
        holder: &LeaseHolder,
    ) -> Result<Box<dyn Lease>> {
        let token = self.op("acquire_lease", |w, _| {
            if let Some((_, h)) = w.leases.get(name) {
                return Err(CloudError::Busy {
                    what: format!("group {name}"),
                    holder: h.to_string(),
                });
            }
            w.next_lease += 1;
            let token = w.next_lease;
            w.leases.insert(name.clone(), (token, holder.clone()));
            Ok(token)
        })?;
        Ok(Box::new(FakeLease {
            holder: holder.clone(),
            group: name.clone(),
            token,
            world: self.world.clone(),
        }))
    }
}

#[async_trait]
impl LoadBalancers for FakeCloud {
    async fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        self.op("targets", |w, _| w.target_statuses(tg))
    }

    async fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        self.op("register", |w, now| {
            for t in targets {
                let address = w
                    .instance(&t.instance)
                    .map(|(_, i)| i.address)
                    .ok_or_else(|| not_found("instance", &t.instance))?;
                w.register_target(tg, &t.instance, address, now)?;
            }
            Ok(())
        })
    }

    async fn deregister(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        self.op("deregister", |w, now| {
            if w.listener_of(tg).is_none() {
                return Err(not_found("target group", tg));
            }
            for t in targets {
                w.deregister_target(tg, &t.instance, now);
            }
            Ok(())
        })
    }

    async fn target_group(&self, tg: &TargetGroupId) -> Result<TargetGroupInfo> {
        self.op("target_group", |w, _| {
            let targets = w.target_statuses(tg)?;
            let l = w
                .listener_of(tg)
                .ok_or_else(|| not_found("target group", tg))?;
            Ok(TargetGroupInfo {
                id: tg.clone(),
                health_check: l.spec.health_check.clone(),
                deregistration_delay_ms: l.spec.deregistration_delay_ms,
                targets,
            })
        })
    }

    async fn create_listener(&self, spec: &ListenerSpec) -> Result<ListenerInfo> {
        self.op("create_listener", |w, _| {
            valid_name("listener id", spec.id.as_str())?;
            if let Some(l) = w.listeners.get(&spec.id) {
                return Ok(l.info());
            }
            if spec.target_groups.is_empty() || !spec.target_groups.contains(&spec.forward) {
                return Err(CloudError::invalid(
                    "listener",
                    "it forwards to one of its own target groups",
                ));
            }
            for tg in &spec.target_groups {
                valid_name("target group id", tg.as_str())?;
                if let Some(other) = w.listener_of(tg) {
                    return Err(CloudError::invalid(
                        "target group",
                        format!("{tg} already belongs to listener {}", other.spec.id),
                    ));
                }
            }
            let mut bind = |addr: SocketAddr| -> Result<SocketAddr> {
                if addr.port() == 0 {
                    let port = FIRST_LISTENER_PORT + w.next_port;
                    w.next_port += 1;
                    return Ok(SocketAddr::new(addr.ip(), port));
                }
                let taken = w
                    .listeners
                    .values()
                    .any(|l| l.bound == addr || l.admin_bound == Some(addr));
                if taken {
                    return Err(CloudError::Api {
                        op: format!("start listener {} on {addr}", spec.id),
                        message: "address in use".into(),
                        source: None,
                    });
                }
                Ok(addr)
            };
            let bound = bind(spec.address)?;
            let admin_bound = spec.admin.map(&mut bind).transpose()?;
            let l = Listener {
                spec: spec.clone(),
                bound,
                admin_bound,
                forward: spec.forward.clone(),
                split: None,
                targets: spec
                    .target_groups
                    .iter()
                    .map(|tg| (tg.clone(), Vec::new()))
                    .collect(),
                shadow: None,
            };
            let info = l.info();
            w.listeners.insert(spec.id.clone(), l);
            Ok(info)
        })
    }

    async fn delete_listener(&self, id: &ListenerId) -> Result<()> {
        self.op("delete_listener", |w, _| {
            w.listeners.remove(id);
            w.counters.remove(id);
            Ok(())
        })
    }

    async fn listener(&self, id: &ListenerId) -> Result<ListenerInfo> {
        self.op("listener", |w, _| {
            w.listeners
                .get(id)
                .map(Listener::info)
                .ok_or_else(|| not_found("listener", id))
        })
    }

    async fn switch(&self, id: &ListenerId, tg: &TargetGroupId) -> Result<()> {
        self.op("switch", |w, _| {
            let l = w.listener_mut(id)?;
            if !l.spec.target_groups.contains(tg) {
                return Err(not_found("target group", tg));
            }
            l.forward = tg.clone();
            l.split = None;
            Ok(())
        })
    }

    async fn set_weights(&self, id: &ListenerId, tg: &TargetGroupId, percent: u32) -> Result<()> {
        self.op("set_weights", |w, _| {
            let l = w.listener_mut(id)?;
            if !l.spec.target_groups.contains(tg) {
                return Err(not_found("target group", tg));
            }
            // The local balancer's rules (`Balancer::set_weight`).
            let percent = percent.min(100);
            if percent == 100 {
                l.forward = tg.clone();
                l.split = None;
            } else if *tg == l.forward {
                let Some((other, _)) = l.split.clone() else {
                    return Err(CloudError::invalid(
                        "weights",
                        format!("{tg} takes every request: a weight needs a second target group"),
                    ));
                };
                if percent == 0 {
                    l.forward = other;
                    l.split = None;
                } else {
                    l.split = Some((other, 100 - percent));
                }
            } else {
                l.split = (percent > 0).then(|| (tg.clone(), percent));
            }
            Ok(())
        })
    }

    async fn start_shadow(&self, id: &ListenerId, spec: &ShadowSpec) -> Result<()> {
        self.op("start_shadow", |w, _| {
            let mut report = w.shadow_script.clone();
            let l = w.listener_mut(id)?;
            if !l.spec.target_groups.contains(&spec.target_group) {
                return Err(not_found("target group", &spec.target_group));
            }
            report.target_group = spec.target_group.to_string();
            l.shadow = Some(report);
            Ok(())
        })
    }

    async fn stop_shadow(&self, id: &ListenerId) -> Result<ShadowReport> {
        self.op("stop_shadow", |w, _| {
            Ok(w.listener_mut(id)?.shadow.take().unwrap_or_default())
        })
    }

    async fn shadow(&self, id: &ListenerId) -> Result<Option<ShadowReport>> {
        self.op("shadow", |w, _| Ok(w.listener_mut(id)?.shadow.clone()))
    }

    async fn counters(&self, id: &ListenerId) -> Result<LbCounters> {
        self.op("counters", |w, _| {
            if !w.listeners.contains_key(id) {
                return Err(not_found("listener", id));
            }
            Ok(w.counters.get(id).cloned().unwrap_or_default())
        })
    }
}

#[async_trait]
impl Probes for FakeCloud {
    async fn gate(&self, instance: &GroupInstance, spec: &GateSpec) -> Result<GateOutcome> {
        self.op("gate", |w, now| Ok(w.gate(&instance.id, spec, now)))
    }

    async fn gate_set(
        &self,
        _address: &str,
        _spec: &GateSpec,
        _rounds: u32,
    ) -> Result<GateOutcome> {
        self.op("gate_set", |w, _| {
            Ok(match w.set_gates.len() {
                0 => GateOutcome::Passed,
                1 => w.set_gates[0].clone(),
                _ => w.set_gates.remove(0),
            })
        })
    }

    async fn alarms_firing(&self, names: &[String]) -> Result<Vec<String>> {
        self.op("alarms_firing", |w, now| {
            let mut firing = Vec::new();
            for n in names {
                match w.alarms.get(n) {
                    None => {
                        return Err(CloudError::invalid("alarm", format!("{n}: no such alarm")));
                    }
                    Some(Some(from)) if *from <= now => firing.push(n.clone()),
                    Some(_) => {}
                }
            }
            Ok(firing)
        })
    }
}

#[async_trait]
impl Images for FakeCloud {
    async fn resolve_base(&self, _base: &BaseSelector) -> Result<BaseImage> {
        Err(unsupported("base images"))
    }

    async fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<ImageInfo>> {
        self.op("find_by_tag", |w, _| {
            let mut found: Vec<&FakeImage> = w
                .images
                .values()
                .filter(|i| i.info.tags.get(key).map(String::as_str) == Some(value))
                .collect();
            found.sort_by_key(|i| std::cmp::Reverse(i.seq));
            Ok(found.into_iter().map(|i| i.info.clone()).collect())
        })
    }

    async fn describe(&self, id: &ImageId) -> Result<ImageInfo> {
        self.op("describe", |w, _| {
            w.images
                .get(id)
                .map(|i| i.info.clone())
                .ok_or_else(|| not_found("image", id))
        })
    }

    async fn manifest(&self, id: &ImageId) -> Result<ImageManifest> {
        self.op("manifest", |w, _| {
            w.images
                .get(id)
                .map(|i| i.manifest.clone())
                .ok_or_else(|| not_found("image", id))
        })
    }

    async fn list(&self) -> Result<Vec<ImageInfo>> {
        self.op("list", |w, _| {
            let mut all: Vec<&FakeImage> = w.images.values().collect();
            all.sort_by_key(|i| std::cmp::Reverse(i.seq));
            Ok(all.into_iter().map(|i| i.info.clone()).collect())
        })
    }

    async fn create_image(&self, _builder: &InstanceId, _spec: &ImageSpec) -> Result<ImageId> {
        Err(unsupported("creating images (add_image registers one)"))
    }

    async fn tag(&self, id: &ImageId, t: &Tags) -> Result<()> {
        self.op("tag", |w, _| {
            let img = w.images.get_mut(id).ok_or_else(|| not_found("image", id))?;
            img.info.tags.extend(t.clone());
            img.manifest.tags.extend(t.clone());
            Ok(())
        })
    }

    async fn deprecate(&self, id: &ImageId, at: Option<u64>) -> Result<Vec<(Region, ImageId)>> {
        self.op("deprecate", |w, _| {
            let img = w.images.get_mut(id).ok_or_else(|| not_found("image", id))?;
            for t in [&mut img.info.tags, &mut img.manifest.tags] {
                match at {
                    Some(at) => {
                        t.insert(tags::DEPRECATE_AT.into(), crate::time::rfc3339(at));
                    }
                    None => {
                        t.remove(tags::DEPRECATE_AT);
                    }
                }
            }
            Ok(Vec::new())
        })
    }

    async fn tag_copy(&self, _id: &ImageId, _region: &Region, _tags: &Tags) -> Result<()> {
        Err(unsupported("image copies"))
    }

    async fn copy_to_region(
        &self,
        _id: &ImageId,
        _region: &Region,
        _spec: &CopySpec,
    ) -> Result<ImageId> {
        Err(unsupported("image copies"))
    }

    async fn share(&self, _id: &ImageId, _accounts: &[AccountId]) -> Result<()> {
        Err(unsupported("sharing images"))
    }

    async fn deregister(&self, _id: &ImageId) -> Result<()> {
        Err(unsupported("deregistering images"))
    }

    async fn deregister_copy(&self, _id: &ImageId, _region: &Region) -> Result<()> {
        Err(unsupported("image copies"))
    }
}

#[async_trait]
impl Builders for FakeCloud {
    async fn launch_builder(&self, _spec: &BuilderSpec) -> Result<InstanceId> {
        Err(unsupported("builders"))
    }
    async fn state(&self, _id: &InstanceId) -> Result<InstanceState> {
        Err(unsupported("builders"))
    }
    async fn wait_stopped(&self, _id: &InstanceId, _params: WaitParams) -> Result<()> {
        Err(unsupported("builders"))
    }
    async fn result(&self, _id: &InstanceId) -> Result<Option<BuildReport>> {
        Err(unsupported("builders"))
    }
    async fn terminate(&self, _id: &InstanceId) -> Result<()> {
        Err(unsupported("builders"))
    }
}

#[async_trait]
impl Janitor for FakeCloud {
    /// Nothing a bake leaves exists here (and never a group's instance).
    async fn leftovers(&self, _older_than: Duration, regions: &[Region]) -> Result<Vec<Leftover>> {
        if regions.is_empty() {
            Ok(Vec::new())
        } else {
            Err(unsupported("other regions"))
        }
    }
    async fn remove(&self, _item: &Leftover) -> Result<()> {
        Ok(())
    }
}

mod refresh;
#[cfg(test)]
mod tests;
