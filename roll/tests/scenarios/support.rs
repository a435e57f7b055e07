//! The scenarios' fixture: `roll up`'s layout on the fake cloud (listener
//! `web` with target groups `web` and `web--b`, group `web` of three `v1`
//! instances behind `web`), goals built the way `roll out` builds them,
//! and a runner that drives the real executor while watching the fleet.
//!
//! The watch samples the whole fleet (groups, targets, the listener) at
//! every step the executor reports — synchronously, in the executor's own
//! call, so a sample sees the fleet between two actions — and every few
//! milliseconds of tokio's clock from a task of its own, so what changes
//! while the executor waits (health checks, drains) is seen too. A step
//! hook lets a scenario act at an exact step: kill an instance, resize
//! the group, interrupt the executor (the action still runs), or crash it
//! (`kill -9`: the executor is gone before the action's call).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cloud::fake::{FakeCloud, ImageScript};
use cloud::{
    Cloud, GoldenRecord, GroupInfo, GroupName, GroupSpec, Groups, HealthCheck, ImageId, InstanceId,
    Lifecycle, ListenerId, ListenerSpec, LoadBalancers, Tags, TargetGroupId, TargetHealth,
    TargetStatus, tags,
};
use roll::error::RollError;
use roll::exec::{ExecOptions, Executor, Progress, Service};
use roll::plan::{Action, Goal, Intent, Outcome, Surge};
use roll::record::{Record, Strategy};
use roll::report::Report;

pub const SIZE: u32 = 3;
pub const V1: &str = "img-v1";
pub const V2: &str = "img-v2";
pub const V3: &str = "img-v3";
pub const HEALTH_INTERVAL_MS: u64 = 100;
pub const DEREGISTRATION_DELAY_MS: u64 = 2_000;
/// How often the watch's own task samples the fleet.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);

pub fn web() -> GroupName {
    GroupName::from("web")
}

pub fn twin() -> GroupName {
    GroupName::from("web--b")
}

pub fn tg(name: &GroupName) -> TargetGroupId {
    TargetGroupId::new(name.as_str())
}

pub fn img(s: &str) -> ImageId {
    ImageId::from(s)
}

fn golden(total: u64) -> Vec<GoldenRecord> {
    vec![GoldenRecord {
        query: "alan".into(),
        ids: 20,
        offset: 0,
        min_total: 1,
        total,
        answer: format!(r#"{{"total":{total},"duration":0}}"#),
    }]
}

/// Runs a future of the fake cloud to its end in one poll: the fake
/// answers at once (it never sleeps), so hooks and the watch, which are
/// synchronous, can call it.
pub fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake cloud answered later (it never waits)"),
    }
}

/// The fleet at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_ms: u64,
    /// The step the executor was about to take, for a sample taken at one.
    pub step: Option<String>,
    pub forward: TargetGroupId,
    /// Percent of new requests per target group (blue/green canary).
    pub weights: Vec<(TargetGroupId, u32)>,
    pub groups: Vec<GroupInfo>,
    pub targets: BTreeMap<TargetGroupId, Vec<TargetStatus>>,
}

impl Sample {
    pub fn group(&self, name: &GroupName) -> Option<&GroupInfo> {
        self.groups.iter().find(|g| &g.name == name)
    }

    pub fn image_of(&self, id: &InstanceId) -> Option<&ImageId> {
        self.groups
            .iter()
            .find_map(|g| g.instance(id))
            .map(|i| &i.image)
    }

    /// Instances the group has, terminating ones included.
    pub fn count(&self, name: &GroupName) -> usize {
        self.group(name).map_or(0, |g| g.instances.len())
    }

    /// Healthy targets of the target group the listener forwards to.
    pub fn serving(&self) -> Vec<&TargetStatus> {
        self.targets
            .get(&self.forward)
            .map(|ts| {
                ts.iter()
                    .filter(|t| t.health == TargetHealth::Healthy)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any target group lists the instance (registered or
    /// draining).
    pub fn listed(&self, id: &InstanceId) -> bool {
        self.targets
            .values()
            .flatten()
            .any(|t| &t.target.instance == id)
    }

    /// Instances of `image` the target group lists.
    pub fn listed_of(&self, tg: &TargetGroupId, image: &ImageId) -> Vec<InstanceId> {
        self.targets
            .get(tg)
            .into_iter()
            .flatten()
            .filter(|t| self.image_of(&t.target.instance) == Some(image))
            .map(|t| t.target.instance.clone())
            .collect()
    }
}

/// Reads the whole fleet from the fake.
pub fn sample(fake: &FakeCloud, step: Option<&str>) -> Sample {
    let mut groups = Vec::new();
    for name in [web(), twin()] {
        if let Ok(g) = now(fake.describe_group(&name)) {
            groups.push(g);
        }
    }
    let listener = now(fake.listener(&ListenerId::from("web"))).expect("listener web");
    let mut targets = BTreeMap::new();
    for t in &listener.target_groups {
        targets.insert(t.clone(), now(fake.targets(t)).expect("targets"));
    }
    Sample {
        at_ms: fake.now_ms(),
        step: step.map(str::to_owned),
        forward: listener.forward.clone(),
        weights: listener.weights.clone(),
        groups,
        targets,
    }
}

/// Everything the watch saw.
#[derive(Debug, Default)]
pub struct Log {
    pub samples: Vec<Sample>,
    pub steps: Vec<String>,
    /// Broken invariants seen at a step (checked where only the step
    /// knows: right before the action's call).
    pub violations: Vec<String>,
}

/// What the executor does after a hooked step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Go,
    /// Sets the interrupted flag (SIGINT): the step's action still runs,
    /// the executor stops before the next observation.
    Interrupt,
    /// `kill -9`: the executor is gone before the step's action calls
    /// the cloud (after the record write that precedes it, if any).
    Crash,
}

/// Called with the 1-based step number, its text and the fake.
pub type Hook = Box<dyn FnMut(usize, &str, &FakeCloud) -> Then + Send>;

/// The payload of a crash (unwound without the panic hook: no noise).
struct Crashed;

struct Watch {
    fake: FakeCloud,
    log: Arc<Mutex<Log>>,
    hook: Option<Hook>,
    interrupted: cloud::run::Cancel,
    sampling: bool,
    n: usize,
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress for Watch {
    fn step(&mut self, text: &str) {
        self.n += 1;
        if self.sampling {
            let s = sample(&self.fake, Some(text));
            let mut log = lock(&self.log);
            // Drain before terminate: the executor says so right before
            // the call, so the fleet is as the terminate will find it.
            if let Some(id) = text.strip_suffix(": terminated")
                && s.listed(&InstanceId::from(id))
            {
                log.violations
                    .push(format!("{id} terminated while a target group lists it"));
            }
            log.samples.push(s);
        }
        lock(&self.log).steps.push(text.to_owned());
        let then = match &mut self.hook {
            Some(h) => h(self.n, text, &self.fake),
            None => Then::Go,
        };
        match then {
            Then::Go => {}
            Then::Interrupt => self.interrupted.trigger(),
            Then::Crash => resume_unwind(Box::new(Crashed)),
        }
    }
}

/// Polls a future, turning a crash (an unwind out of the hook) into
/// `None`: the future, and the executor's state in it, is dropped there.
struct Survive<F>(Pin<Box<F>>);

impl<F: Future> Future for Survive<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) if payload.is::<Crashed>() => Poll::Ready(None),
            Err(payload) => resume_unwind(payload),
        }
    }
}

/// One executor run.
pub struct Run {
    /// `None`: crashed (`kill -9`), or cut off by `deadline`.
    pub result: Option<Result<Outcome, RollError>>,
    pub report: Report,
    pub log: Arc<Mutex<Log>>,
}

impl Run {
    pub fn outcome(&self) -> Outcome {
        match &self.result {
            Some(Ok(o)) => *o,
            Some(Err(e)) => panic!("the roll failed: {e}\n{}", self.story()),
            None => panic!("the roll crashed\n{}", self.story()),
        }
    }

    /// The steps, for failure messages.
    pub fn story(&self) -> String {
        let log = lock(&self.log);
        format!(
            "steps:\n  {}\nreason: {:?}",
            log.steps.join("\n  "),
            self.report.reason
        )
    }

    pub fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.log)
    }

    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.report.timeline.iter().map(|e| &e.action)
    }

    /// Every instance the roll registered or made a canary passed its gate
    /// (in this run, before that) — and no broken invariant at a step.
    pub fn assert_gated_before_traffic(&self) {
        for e in &self.report.timeline {
            let id = match &e.action {
                Action::Register { instance, .. } | Action::Canary { instance, .. } => instance,
                _ => continue,
            };
            let passed = self
                .report
                .gates
                .iter()
                .any(|g| &g.instance == id && g.outcome.is_passed() && g.at_ms <= e.at_ms);
            assert!(
                passed,
                "{id} took traffic at {} without a passed gate before\n{}",
                e.at_ms,
                self.story()
            );
        }
        let violations = self.log().violations.clone();
        assert!(violations.is_empty(), "{violations:?}\n{}", self.story());
    }

    /// Never more than `max` instances in `group` (terminating ones
    /// count), never fewer than `min` healthy targets behind the listener.
    pub fn assert_bounds(&self, group: &GroupName, max: usize, min_serving: usize) {
        let broken = self.log().samples.iter().find_map(|s| {
            let (count, serving) = (s.count(group), s.serving().len());
            (count > max || serving < min_serving).then(|| {
                format!(
                    "at {} (step {:?}): {count} instances in {group} (at most {max}), \
                     {serving} healthy behind the listener (at least {min_serving})",
                    s.at_ms, s.step
                )
            })
        });
        if let Some(b) = broken {
            panic!("{b}\n{}", self.story());
        }
    }
}

/// The options `roll out` runs the executor with on a local-like backend.
pub fn exec_options() -> ExecOptions {
    ExecOptions {
        poll: Duration::from_millis(50),
        shadow_percent: 10,
    }
}

pub fn out(image: &str, strategy: Strategy) -> Intent {
    Intent::Out {
        image: img(image),
        strategy,
    }
}

fn next_roll_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("roll-test-{}", N.fetch_add(1, Ordering::SeqCst) + 1)
}

pub struct Fleet {
    pub fake: FakeCloud,
    pub cloud: Cloud,
    /// The service's `--alarm`s.
    pub alarms: Mutex<Vec<String>>,
}

impl Fleet {
    /// `roll up --group web --image v1 --size 3` on the fake, with v2 and
    /// v3 of other indexes, and every instance healthy behind the listener.
    pub async fn up() -> Fleet {
        let fake = FakeCloud::new();
        fake.add_image(V1, &"1".repeat(64), golden(1));
        fake.add_image(V2, &"2".repeat(64), golden(2));
        fake.add_image(V3, &"3".repeat(64), golden(3));
        let cloud = fake.cloud();
        cloud
            .lbs()
            .create_listener(&ListenerSpec {
                id: ListenerId::from("web"),
                address: ([127, 0, 0, 1], 0).into(),
                admin: None,
                tls: None,
                health_check: HealthCheck {
                    path: "/ready".into(),
                    interval_ms: HEALTH_INTERVAL_MS,
                    timeout_ms: HEALTH_INTERVAL_MS,
                    healthy_threshold: 2,
                    unhealthy_threshold: 2,
                },
                deregistration_delay_ms: DEREGISTRATION_DELAY_MS,
                target_groups: vec![tg(&web()), tg(&twin())],
                forward: tg(&web()),
            })
            .await
            .expect("create_listener");
        let mut t = Tags::new();
        t.insert(tags::ROLL_GROUP.into(), "web".into());
        cloud
            .groups()
            .create_group(&GroupSpec {
                name: web(),
                image: img(V1),
                desired: SIZE,
                min: 0,
                max: SIZE,
                target_group: Some(tg(&web())),
                tags: t,
                like: None,
            })
            .await
            .expect("create_group");
        let fleet = Fleet {
            fake,
            cloud,
            alarms: Mutex::new(Vec::new()),
        };
        fleet.wait_serving(SIZE as usize).await;
        fleet
    }

    /// Until `n` instances are in service and healthy behind the listener.
    pub async fn wait_serving(&self, n: usize) {
        for _ in 0..2_400 {
            if sample(&self.fake, None).serving().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} instances did not become healthy in 120 s");
    }

    pub fn script(&self, image: &str, script: ImageScript) {
        self.fake.script(image, script);
    }

    /// The goal `roll out`/`roll back` builds from default flags (surge 1,
    /// min-healthy 100%, no warmup or bake, gate timeout 60 s, keep 1 h),
    /// strict shadowing when the index did not change, a fresh roll id.
    pub async fn goal(&self, intent: Intent) -> Goal {
        let strict = match &intent {
            Intent::Out { image, .. } => {
                let g = self.cloud.groups().describe_group(&web()).await.unwrap();
                let images = self.cloud.images();
                let current = images.manifest(&g.current.image).await.unwrap();
                let new = images.manifest(image).await.unwrap();
                current.index.digest == new.index.digest
            }
            _ => false,
        };
        Goal {
            intent,
            roll_id: next_roll_id(),
            max_surge: Surge::Count(1),
            min_healthy_pct: 100,
            warmup_ms: 0,
            bake_ms: 0,
            gate_timeout_ms: 60_000,
            keep_ms: 3_600_000,
            probe_every_ms: 100,
            shadow_strict: strict,
            twin: twin(),
            gate_set: false,
            canary: Vec::new(),
        }
    }

    /// Runs the executor to its end (or its crash).
    pub async fn run(&self, goal: Goal, hook: Option<Hook>) -> Run {
        self.run_opts(goal, hook, true, None).await
    }

    /// `sampling: false` leaves the fake's call counts (and so the faults
    /// scripted by call number) to the executor alone. `deadline`: the
    /// run is dropped (`kill -9`) when it is not done by then.
    pub async fn run_opts(
        &self,
        goal: Goal,
        hook: Option<Hook>,
        sampling: bool,
        deadline: Option<Duration>,
    ) -> Run {
        let log = Arc::new(Mutex::new(Log::default()));
        let interrupted = cloud::run::Cancel::default();
        let watch = Watch {
            fake: self.fake.clone(),
            log: log.clone(),
            hook,
            interrupted: interrupted.clone(),
            sampling,
            n: 0,
        };
        let sampler = sampling.then(|| {
            let fake = self.fake.clone();
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let s = sample(&fake, None);
                    lock(&log).samples.push(s);
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        });
        let mut exec = Executor::new(
            &self.cloud,
            Service {
                alarms: self
                    .alarms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                // Used only by goals with `gate_set` (the fake scripts
                // what the gate through it finds).
                test_address: Some("test-listener.fake:8081".into()),
                ..Service::named(&web())
            },
            goal,
            exec_options(),
            Box::new(watch),
            interrupted,
        );
        let run = Survive(Box::pin(exec.run()));
        let result = match deadline {
            Some(d) => tokio::time::timeout(d, run).await.ok().flatten(),
            None => run.await,
        };
        if let Some(s) = sampler {
            s.abort();
        }
        if sampling {
            lock(&log).samples.push(sample(&self.fake, None));
        }
        Run {
            result,
            report: exec.report,
            log,
        }
    }

    /// The group runs `n` instances of `image`, all in service and
    /// healthy in its target group, nothing else listed there; the roll's
    /// hold and limits are undone and its record cleared.
    pub async fn assert_settled(&self, group: &GroupName, image: &str, n: usize) {
        let s = sample(&self.fake, None);
        let g = s.group(group).expect("the group exists");
        let images: Vec<(&str, Lifecycle)> = g
            .instances
            .iter()
            .map(|i| (i.image.as_str(), i.lifecycle))
            .collect();
        assert_eq!(g.desired as usize, n, "{group}: {images:?}");
        assert_eq!(
            images,
            vec![(image, Lifecycle::InService); n],
            "{group}'s instances"
        );
        assert_eq!(g.current.image.as_str(), image, "{group}'s template");
        let targets = &s.targets[g.target_group.as_ref().expect("a target group")];
        assert_eq!(targets.len(), n, "{group}'s targets: {targets:?}");
        assert!(
            targets
                .iter()
                .all(|t| t.health == TargetHealth::Healthy
                    && g.instance(&t.target.instance).is_some()),
            "{group}'s targets: {targets:?}"
        );
        assert!(!g.hold_launches, "{group} still holds launches");
        assert_eq!(
            (g.min, g.max),
            (0, n.max(SIZE as usize) as u32),
            "{group}'s limits"
        );
        let record = Record::from_tags(&s.group(&web()).expect("web").tags);
        assert_eq!(record.roll, None, "the roll record is cleared");
        let mirror = now(self.fake.shadow(&ListenerId::from("web"))).expect("shadow");
        assert_eq!(mirror, None, "nothing mirrors live traffic any more");
    }

    /// The group has no instances and desired 0 (or does not exist).
    pub fn assert_empty(&self, group: &GroupName) {
        let s = sample(&self.fake, None);
        let Some(g) = s.group(group) else {
            return;
        };
        assert_eq!(
            (g.desired, g.instances.len()),
            (0, 0),
            "{group}: {:?}",
            g.instances
        );
        assert!(
            s.targets[&tg(group)].is_empty(),
            "{:?}",
            s.targets[&tg(group)]
        );
    }

    pub fn forward(&self) -> TargetGroupId {
        sample(&self.fake, None).forward
    }

    /// Percent of new requests `tg` gets now.
    pub fn weight(&self, tg: &TargetGroupId) -> u32 {
        let s = sample(&self.fake, None);
        s.weights
            .iter()
            .find(|(t, _)| t == tg)
            .map_or(0, |(_, w)| *w)
    }

    /// Instances of `image` launched so far.
    pub fn launches(&self, image: &str) -> usize {
        self.fake
            .launched()
            .iter()
            .filter(|(_, i)| i.as_str() == image)
            .count()
    }

    pub fn record(&self) -> Record {
        Record::from_tags(&sample(&self.fake, None).group(&web()).expect("web").tags)
    }
}
