//! A deterministic backend for the planner's property tests: Auto Scaling
//! groups and one ELB listener with the semantics the local fleet daemon
//! gives them (`cloud/src/local/fleet/daemon.rs`), on a simulated clock,
//! plus a copy of the executor's loop (`roll/src/exec.rs`) that applies
//! each action with the meaning the executor gives it and checks the
//! planner's invariants before it does.
//!
//! What is modelled:
//! - groups: desired/min/max, a template image with its earlier versions,
//!   tags (the roll record), held launches, a scheduled size change, and a
//!   reconcile tick every [`TICK_MS`] that launches up to desired (backing
//!   off after launches that died before serving), scales in (not in
//!   service first, then other images, then the oldest), gates `Pending`
//!   instances itself and stops `Terminating` ones once no longer listed;
//! - instances: `Pending`/`PendingWait`/`InService`/`Terminating`, an
//!   address after a scripted boot time, a gate that is not ready until a
//!   scripted time and then passes, fails, or never answers;
//! - target groups: `Initial` -> `Healthy` after a scripted delay,
//!   `Draining` until the scripted in-flight work or the deregistration
//!   delay ends, whichever is first, then gone;
//! - the listener: `forward` and `idle` target groups, shadowing;
//! - faults at fixed times: an instance dies, a target flaps unhealthy,
//!   someone sets the rolled group's desired size (drift).
//!
//! Nothing here reads a clock or a random source: the same case gives the
//! same run.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use cloud::{
    GateOutcome, GroupInfo, GroupInstance, GroupName, ImageId, InstanceId, InstanceState,
    Lifecycle, ScheduledDesired, ShadowReport, Tags, Target, TargetGroupId, TargetHealth,
    TargetStatus, TemplateVersion, tags,
};
use roll::plan::{Action, Goal, GroupView, Observed, Outcome, Probe, Surge, plan};
use roll::record::{Phase, Record, Roll, Strategy, keys};

pub const SERVICE: &str = "web";
pub const TWIN: &str = "web--b";
/// The daemon reconciles groups about ten times a second.
pub const TICK_MS: u64 = 100;
/// What one call to the backend costs.
pub const CALL_MS: u64 = 5;
/// The simulation starts here; the first fleet launched at 0 is warm.
pub const T0: u64 = 1_000_000;
/// The executor's poll (`roll out` polls a local backend every 50 ms).
pub const POLL_MS: u64 = 50;
/// A run still going after this long (simulated) is stuck.
pub const MAX_RUN_MS: u64 = 600_000;
/// Margin under the gate timeout for an instance that surely passes.
const SLACK_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateScript {
    Pass,
    Fail,
    /// Never answers `/ready`.
    Never,
}

/// How one launched instance behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// Launch to an address.
    pub boot_ms: u64,
    /// Address to a gate that answers.
    pub ready_ms: u64,
    pub gate: GateScript,
    /// Registration to healthy.
    pub health_ms: u64,
    /// Deregistration to no requests in flight.
    pub drain_ms: u64,
    /// Drained to stopped.
    pub stop_ms: u64,
    /// Answers mirrored requests with errors.
    pub shadow_bad: bool,
}

impl Script {
    pub const GOOD: Script = Script {
        boot_ms: 50,
        ready_ms: 150,
        gate: GateScript::Pass,
        health_ms: 100,
        drain_ms: 100,
        stop_ms: 20,
        shadow_bad: false,
    };

    /// Passes its gate, health checks and shadow comparison well within
    /// `timeout_ms`: no reason to roll back.
    pub fn surely_good(&self, timeout_ms: u64) -> bool {
        self.gate == GateScript::Pass
            && !self.shadow_bad
            && self.boot_ms + self.ready_ms + SLACK_MS < timeout_ms
            && self.health_ms + SLACK_MS < timeout_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The n-th (modulo their number) instance not terminating, over all
    /// groups, dies: gone at once, out of every target group.
    Death(usize),
    /// The n-th healthy instance that may flap (one of the fleet before
    /// the roll, or of the image rolled to) fails its health checks for
    /// this long.
    Flap(usize, u64),
    /// Someone sets the rolled group's desired size (clamped into its
    /// limits, at least 1).
    Drift(u32),
}

#[derive(Debug, Clone)]
pub struct Inst {
    pub id: InstanceId,
    pub image: ImageId,
    pub lifecycle: Lifecycle,
    pub launched_ms: u64,
    pub script: Script,
    pub address: Option<SocketAddr>,
    pub launch_error: Option<String>,
    /// Terminating and no longer listed: stopped at this time.
    pub stop_at: Option<u64>,
    port: u16,
}

impl Inst {
    fn ready_at(&self) -> u64 {
        self.launched_ms + self.script.boot_ms + self.script.ready_ms
    }

    fn info(&self) -> GroupInstance {
        GroupInstance {
            id: self.id.clone(),
            image: self.image.clone(),
            state: match (self.lifecycle, self.address) {
                (Lifecycle::Terminating, _) => InstanceState::ShuttingDown,
                (_, None) => InstanceState::Pending,
                _ => InstanceState::Running,
            },
            lifecycle: self.lifecycle,
            address: self.address,
            launched_ms: self.launched_ms,
            launch_error: self.launch_error.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: GroupName,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub current: TemplateVersion,
    pub previous: Vec<TemplateVersion>,
    /// Oldest launch first.
    pub instances: Vec<Inst>,
    pub target_group: Option<TargetGroupId>,
    pub tags: Tags,
    pub hold: bool,
    pub scheduled: Option<ScheduledDesired>,
    failed_launches: u32,
    next_launch_ms: u64,
}

impl Group {
    pub fn live(&self) -> impl Iterator<Item = &Inst> {
        self.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
    }

    fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.name.clone(),
            desired: self.desired,
            min: self.min,
            max: self.max,
            current: self.current.clone(),
            previous: self.previous.clone(),
            instances: self.instances.iter().map(Inst::info).collect(),
            target_group: self.target_group.clone(),
            tags: self.tags.clone(),
            hold_launches: self.hold,
            scheduled: self.scheduled,
        }
    }
}

/// One registration in a target group.
#[derive(Debug, Clone)]
pub struct Tgt {
    pub instance: InstanceId,
    pub port: u16,
    pub health: TargetHealth,
    pub since_ms: u64,
    /// When the current state ends: `Initial` and `Unhealthy` turn
    /// `Healthy`, `Draining` leaves.
    until: Option<u64>,
}

/// The daemon's launch backoff (`backoff_ms` in daemon.rs).
fn backoff_ms(n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        (1000u64 << (n - 1).min(6)).min(60_000)
    }
}

pub fn img(s: &str) -> ImageId {
    ImageId::from(s)
}

pub fn tg(s: &str) -> TargetGroupId {
    TargetGroupId::from(s)
}

pub fn group(s: &str) -> GroupName {
    GroupName::from(s)
}

/// ASG rounds a percentage surge up, and at least one (as the planner).
pub fn surge_of(size: u32, s: Surge) -> u32 {
    match s {
        Surge::Count(n) => n,
        Surge::Percent(p) => (size * p).div_ceil(100).max(1),
    }
}

pub fn min_in_service(size: u32, pct: u32) -> u32 {
    (size * pct.min(100)).div_ceil(100)
}

#[derive(Debug, Clone)]
pub struct Sim {
    pub now: u64,
    pub groups: Vec<Group>,
    pub tgs: BTreeMap<TargetGroupId, Vec<Tgt>>,
    pub forward: TargetGroupId,
    /// A canary step: percent of new requests to the other target group.
    pub canary: u32,
    pub listener_tgs: Vec<TargetGroupId>,
    pub dereg_delay_ms: u64,
    /// The live target group's health-check interval (`Observed`).
    pub health_interval_ms: u64,
    /// The shadowed target group while mirroring runs.
    pub shadow: Option<TargetGroupId>,
    /// Scripts of each image's launches, in launch order.
    pub scripts: BTreeMap<ImageId, Vec<Script>>,
    /// Launches so far, per image.
    pub launched: BTreeMap<ImageId, u32>,
    /// The latest gate probe of each instance, whoever asked.
    pub probes: BTreeMap<InstanceId, GateOutcome>,
    /// Pending faults, by time.
    pub faults: Vec<(u64, Fault)>,
    /// Instances that went away without the planner asking: died, or
    /// scaled in by their group.
    pub lost: u32,
    /// Instances someone else asked for (drift upwards).
    pub drifted: u32,
    /// When someone else changed a desired size.
    pub drifts: Vec<u64>,
    /// Why a roll back would be legitimate (a launch of the image rolled
    /// to that may fail, a flap of one, shadow errors).
    pub evidence: Vec<String>,
    /// The gate timeout the evidence is judged against.
    pub gate_timeout_ms: u64,
    next_id: u32,
    next_tick: u64,
}

impl Sim {
    /// The layout `roll up` creates: listener with target groups `web`
    /// (forwarded to) and `web--b`, group `web` of `size` healthy
    /// instances of `image`, launched long ago.
    pub fn new(size: u32, min: u32, max: u32, image: &str, dereg_delay_ms: u64) -> Sim {
        let mut t = Tags::new();
        t.insert(tags::ROLL_GROUP.into(), SERVICE.into());
        let mut sim = Sim {
            now: T0,
            groups: vec![Group {
                name: group(SERVICE),
                desired: size,
                min,
                max,
                current: TemplateVersion {
                    version: 1,
                    image: img(image),
                    created_unix: 0,
                },
                previous: Vec::new(),
                instances: Vec::new(),
                target_group: Some(tg(SERVICE)),
                tags: t,
                hold: false,
                scheduled: None,
                failed_launches: 0,
                next_launch_ms: 0,
            }],
            tgs: [(tg(SERVICE), Vec::new()), (tg(TWIN), Vec::new())].into(),
            forward: tg(SERVICE),
            canary: 0,
            listener_tgs: vec![tg(SERVICE), tg(TWIN)],
            dereg_delay_ms,
            health_interval_ms: 0,
            shadow: None,
            scripts: BTreeMap::new(),
            launched: BTreeMap::new(),
            probes: BTreeMap::new(),
            faults: Vec::new(),
            lost: 0,
            drifted: 0,
            drifts: Vec::new(),
            evidence: Vec::new(),
            gate_timeout_ms: u64::MAX,
            next_id: 0,
            next_tick: T0 + TICK_MS,
        };
        for _ in 0..size {
            let mut i = sim.new_instance(&img(image), 0, Lifecycle::InService);
            i.address = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, i.port)));
            sim.tgs.get_mut(&tg(SERVICE)).unwrap().push(Tgt {
                instance: i.id.clone(),
                port: i.port,
                health: TargetHealth::Healthy,
                since_ms: 0,
                until: None,
            });
            sim.groups[0].instances.push(i);
        }
        sim
    }

    fn new_instance(&mut self, image: &ImageId, at: u64, lifecycle: Lifecycle) -> Inst {
        self.next_id += 1;
        let n = self.launched.entry(image.clone()).or_default();
        let script = self
            .scripts
            .get(image)
            .and_then(|s| s.get(*n as usize))
            .copied()
            .unwrap_or(Script::GOOD);
        *n += 1;
        Inst {
            id: InstanceId::new(format!("i-{:04}", self.next_id)),
            image: image.clone(),
            lifecycle,
            launched_ms: at,
            script,
            address: None,
            launch_error: None,
            stop_at: None,
            port: 20_000 + self.next_id as u16,
        }
    }

    pub fn group(&self, name: &GroupName) -> Option<&Group> {
        self.groups.iter().find(|g| &g.name == name)
    }

    fn group_mut(&mut self, name: &GroupName) -> Result<&mut Group, String> {
        self.groups
            .iter_mut()
            .find(|g| &g.name == name)
            .ok_or_else(|| format!("no group {name}"))
    }

    pub fn instance(&self, id: &InstanceId) -> Option<&Inst> {
        self.groups
            .iter()
            .flat_map(|g| g.instances.iter())
            .find(|i| &i.id == id)
    }

    pub fn record(&self) -> Record {
        Record::from_tags(&self.group(&group(SERVICE)).unwrap().tags)
    }

    /// The group behind the listener.
    pub fn live(&self) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.target_group.as_ref() == Some(&self.forward))
    }

    pub fn targets(&self, t: &TargetGroupId) -> &[Tgt] {
        self.tgs.get(t).map_or(&[], Vec::as_slice)
    }

    /// Listed (registered or draining) in any target group.
    pub fn listed(&self, id: &InstanceId) -> bool {
        self.tgs.values().flatten().any(|t| &t.instance == id)
    }

    /// Registered in the forwarded target group, healthy and warmed up.
    pub fn in_service(&self, warmup_ms: u64) -> u32 {
        self.targets(&self.forward)
            .iter()
            .filter(|t| t.health == TargetHealth::Healthy && self.now >= t.since_ms + warmup_ms)
            .filter(|t| {
                self.instance(&t.instance)
                    .is_some_and(|i| i.lifecycle != Lifecycle::Terminating)
            })
            .count() as u32
    }

    // ---- the seam's calls ----

    fn register(&mut self, t: &TargetGroupId, id: &InstanceId) -> Result<(), String> {
        let i = self
            .instance(id)
            .ok_or_else(|| format!("register: no instance {id}"))?;
        let port = i.port;
        if i.address.is_none() {
            return Err(format!("register: {id} has no address"));
        }
        // Health checks pass once it answers /ready.
        let until = match i.script.gate {
            GateScript::Never => None,
            _ => Some(self.now.max(i.ready_at()) + i.script.health_ms),
        };
        let now = self.now;
        let ts = self
            .tgs
            .get_mut(t)
            .ok_or_else(|| format!("register: no target group {t}"))?;
        match ts.iter_mut().find(|x| &x.instance == id) {
            // A draining target becomes initial again; a registered one
            // keeps its state.
            Some(x) if x.health == TargetHealth::Draining => {
                x.health = TargetHealth::Initial;
                x.since_ms = now;
                x.until = until;
            }
            Some(_) => {}
            None => {
                ts.push(Tgt {
                    instance: id.clone(),
                    port,
                    health: TargetHealth::Initial,
                    since_ms: now,
                    until,
                });
                ts.sort_by(|a, b| a.instance.cmp(&b.instance));
            }
        }
        Ok(())
    }

    fn deregister(&mut self, t: &TargetGroupId, id: &InstanceId) {
        let drain = self
            .instance(id)
            .map_or(0, |i| i.script.drain_ms)
            .min(self.dereg_delay_ms);
        let now = self.now;
        if let Some(x) = self
            .tgs
            .get_mut(t)
            .and_then(|ts| ts.iter_mut().find(|x| &x.instance == id))
            && x.health != TargetHealth::Draining
        {
            x.health = TargetHealth::Draining;
            x.since_ms = now;
            x.until = Some(now + drain);
        }
    }

    fn set_desired(&mut self, name: &GroupName, desired: u32) -> Result<(), String> {
        let g = self.group_mut(name)?;
        if desired < g.min || desired > g.max {
            return Err(format!(
                "set_desired {desired} for {name} outside its limits {}..={}",
                g.min, g.max
            ));
        }
        g.desired = desired;
        Ok(())
    }

    fn set_limits(&mut self, name: &GroupName, min: u32, max: u32) -> Result<(), String> {
        if min > max {
            return Err(format!("set_limits: min {min} above max {max}"));
        }
        let g = self.group_mut(name)?;
        g.min = min;
        g.max = max;
        g.desired = g.desired.clamp(min, max);
        Ok(())
    }

    fn set_image(&mut self, name: &GroupName, image: &ImageId) -> Result<(), String> {
        let g = self.group_mut(name)?;
        if &g.current.image == image {
            return Ok(());
        }
        let v = TemplateVersion {
            version: g.current.version + 1,
            image: image.clone(),
            created_unix: 0,
        };
        let old = std::mem::replace(&mut g.current, v);
        g.previous.insert(0, old);
        g.failed_launches = 0;
        g.next_launch_ms = 0;
        Ok(())
    }

    fn hold(&mut self, name: &GroupName, hold: bool) -> Result<(), String> {
        let g = self.group_mut(name)?;
        g.hold = hold;
        if !hold {
            for i in &mut g.instances {
                if i.lifecycle == Lifecycle::PendingWait {
                    i.lifecycle = Lifecycle::Pending;
                }
            }
        }
        Ok(())
    }

    fn put_in_service(&mut self, name: &GroupName, id: &InstanceId) -> Result<(), String> {
        let g = self.group_mut(name)?;
        let t = g.target_group.clone();
        let i = g
            .instances
            .iter_mut()
            .find(|i| &i.id == id)
            .ok_or_else(|| format!("put_in_service: no instance {id} in {name}"))?;
        match i.lifecycle {
            Lifecycle::InService => return Ok(()),
            Lifecycle::Terminating => {
                return Err(format!("put_in_service: {id} is terminating"));
            }
            Lifecycle::Pending | Lifecycle::PendingWait => {}
        }
        if i.address.is_none() {
            return Err(format!("put_in_service: {id} has not started yet"));
        }
        i.lifecycle = Lifecycle::InService;
        i.launch_error = None;
        g.failed_launches = 0;
        if let Some(t) = t {
            self.register(&t, id)?;
        }
        Ok(())
    }

    fn terminate(&mut self, name: &GroupName, id: &InstanceId) -> Result<(), String> {
        let g = self.group_mut(name)?;
        let t = g.target_group.clone();
        let (desired, min) = (g.desired, g.min);
        let Some(i) = g.instances.iter_mut().find(|i| &i.id == id) else {
            return Ok(());
        };
        if i.lifecycle == Lifecycle::Terminating {
            return Ok(());
        }
        if desired == 0 || desired - 1 < min {
            return Err(format!(
                "terminate {id}: decrementing {name} to {} would go below its min {min}",
                desired.saturating_sub(1)
            ));
        }
        i.lifecycle = Lifecycle::Terminating;
        g.desired -= 1;
        if let Some(t) = t {
            self.deregister(&t, id);
        }
        Ok(())
    }

    fn create_group(&mut self, name: &GroupName, image: &ImageId, t: &TargetGroupId, max: u32) {
        if self.group(name).is_some() {
            return;
        }
        let mut tags = Tags::new();
        tags.insert(tags::ROLL_GROUP.into(), SERVICE.into());
        self.groups.push(Group {
            name: name.clone(),
            desired: 0,
            min: 0,
            max,
            current: TemplateVersion {
                version: 1,
                image: image.clone(),
                created_unix: 0,
            },
            previous: Vec::new(),
            instances: Vec::new(),
            target_group: Some(t.clone()),
            tags,
            hold: false,
            scheduled: None,
            failed_launches: 0,
            next_launch_ms: 0,
        });
    }

    fn tag_service(&mut self, set: &Tags, remove: &[&str]) {
        let g = self.group_mut(&group(SERVICE)).unwrap();
        for k in remove {
            g.tags.remove(*k);
        }
        g.tags.extend(set.clone());
    }

    fn write_roll(&mut self, r: &Roll) {
        self.tag_service(&r.to_tags(), &[]);
    }

    /// A gate probe, as the executor's `Probes::gate`.
    pub fn probe(&mut self, id: &InstanceId) -> GateOutcome {
        let out = match self.instance(id) {
            None => GateOutcome::NotReady {
                why: "no such instance".into(),
            },
            Some(i) if i.address.is_none() => GateOutcome::NotReady {
                why: "no address yet".into(),
            },
            Some(i) if self.now < i.ready_at() => GateOutcome::NotReady {
                why: "connection refused".into(),
            },
            Some(i) => match i.script.gate {
                GateScript::Pass => GateOutcome::Passed,
                GateScript::Fail => {
                    GateOutcome::failed("golden query `alan`", "3 documents", "0 documents")
                }
                GateScript::Never => GateOutcome::NotReady {
                    why: "/ready answers 503".into(),
                },
            },
        };
        self.probes.insert(id.clone(), out.clone());
        out
    }

    /// What mirroring saw so far (errors from instances scripted to
    /// answer mirrored requests badly).
    pub fn shadow_report(&mut self) -> Option<ShadowReport> {
        let t = self.shadow.clone()?;
        let bad = self
            .targets(&t)
            .iter()
            .filter(|x| x.health == TargetHealth::Healthy)
            .filter(|x| {
                self.instance(&x.instance)
                    .is_some_and(|i| i.script.shadow_bad)
            })
            .count() as u64;
        if bad > 0 {
            self.evidence
                .push(format!("shadow errors from {bad} targets"));
        }
        Some(ShadowReport {
            target_group: t.to_string(),
            mirrored: 100,
            compared: 100 - 10 * bad,
            errors: 10 * bad,
            ..ShadowReport::default()
        })
    }

    // ---- time ----

    /// Runs the backend up to `to`: scripted transitions at their exact
    /// times, the reconcile tick every [`TICK_MS`], faults.
    pub fn advance(&mut self, to: u64) {
        while let Some(t) = self.next_event().filter(|&t| t <= to) {
            self.now = self.now.max(t);
            self.process();
        }
        self.now = self.now.max(to);
    }

    fn next_event(&self) -> Option<u64> {
        let boots = self
            .groups
            .iter()
            .flat_map(|g| g.instances.iter())
            .filter(|i| i.address.is_none())
            .map(|i| i.launched_ms + i.script.boot_ms);
        let stops = self
            .groups
            .iter()
            .flat_map(|g| g.instances.iter())
            .filter_map(|i| i.stop_at);
        let targets = self.tgs.values().flatten().filter_map(|t| t.until);
        let faults = self.faults.first().map(|f| f.0);
        boots
            .chain(stops)
            .chain(targets)
            .chain(faults)
            .chain([self.next_tick])
            .min()
    }

    fn process(&mut self) {
        let now = self.now;
        while self.faults.first().is_some_and(|f| f.0 <= now) {
            let (_, f) = self.faults.remove(0);
            self.fault(f);
        }
        for g in &mut self.groups {
            for i in &mut g.instances {
                if i.address.is_none() && i.launched_ms + i.script.boot_ms <= now {
                    i.address = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, i.port)));
                }
            }
            g.instances.retain(|i| i.stop_at.is_none_or(|s| s > now));
        }
        // A stopped instance leaves every target group it was in.
        let gone: Vec<InstanceId> = self
            .tgs
            .values()
            .flatten()
            .filter(|t| self.instance(&t.instance).is_none())
            .map(|t| t.instance.clone())
            .collect();
        for ts in self.tgs.values_mut() {
            ts.retain(|t| !gone.contains(&t.instance));
        }
        for ts in self.tgs.values_mut() {
            ts.retain(|t| {
                !(t.health == TargetHealth::Draining && t.until.is_some_and(|u| u <= now))
            });
            for t in ts.iter_mut() {
                if let Some(u) = t.until.filter(|&u| u <= now) {
                    t.health = TargetHealth::Healthy;
                    t.since_ms = u;
                    t.until = None;
                }
            }
        }
        if now >= self.next_tick {
            self.tick();
            while self.next_tick <= now {
                self.next_tick += TICK_MS;
            }
        }
    }

    /// One reconciliation of every group (the daemon's `tick`).
    fn tick(&mut self) {
        let now = self.now;
        let names: Vec<GroupName> = self.groups.iter().map(|g| g.name.clone()).collect();
        for name in names {
            let g = self.group_mut(&name).unwrap();
            // 1. A scheduled size change that is due.
            if let Some(s) = g.scheduled.filter(|s| s.at_ms <= now) {
                g.min = g.min.min(s.desired);
                g.desired = s.desired.min(g.max);
                g.scheduled = None;
            }
            // 3. Pending instances are gated by the group itself.
            let t = g.target_group.clone();
            let mut passed = Vec::new();
            for i in &mut g.instances {
                if i.lifecycle == Lifecycle::Pending
                    && i.launch_error.is_none()
                    && i.address.is_some()
                    && now >= i.ready_at()
                {
                    match i.script.gate {
                        GateScript::Pass => {
                            i.lifecycle = Lifecycle::InService;
                            passed.push(i.id.clone());
                        }
                        GateScript::Fail => i.launch_error = Some("failed its launch check".into()),
                        GateScript::Never => {}
                    }
                }
            }
            if !passed.is_empty() {
                g.failed_launches = 0;
            }
            if let Some(t) = &t {
                for id in &passed {
                    self.register(t, id).unwrap();
                }
            }
            // 4. Size.
            self.resize(&name);
            // 5. Terminating instances no longer listed stop.
            let g = self.group(&name).unwrap();
            let stopping: Vec<(InstanceId, u64)> = g
                .instances
                .iter()
                .filter(|i| i.lifecycle == Lifecycle::Terminating && i.stop_at.is_none())
                .filter(|i| {
                    t.as_ref()
                        .is_none_or(|t| !self.targets(t).iter().any(|x| x.instance == i.id))
                })
                .map(|i| (i.id.clone(), now + i.script.stop_ms))
                .collect();
            let g = self.group_mut(&name).unwrap();
            for (id, at) in stopping {
                if let Some(i) = g.instances.iter_mut().find(|i| i.id == id) {
                    i.stop_at = Some(at);
                }
            }
        }
    }

    /// Launches up to desired, or scales in what is beyond it.
    pub fn resize(&mut self, name: &GroupName) {
        let now = self.now;
        let record = self.record();
        let g = self.group(name).unwrap();
        let live = g.live().count() as u32;
        if live < g.desired && now >= g.next_launch_ms {
            let (image, hold, n) = (g.current.image.clone(), g.hold, g.desired - live);
            for _ in 0..n {
                let lifecycle = if hold {
                    Lifecycle::PendingWait
                } else {
                    Lifecycle::Pending
                };
                let i = self.new_instance(&image, now, lifecycle);
                if let Some(r) = record.roll.as_ref().filter(|r| r.to == image)
                    && !i.script.surely_good(self.gate_timeout_ms)
                    && r.from != r.to
                {
                    self.evidence
                        .push(format!("{} of {image} launched: {:?}", i.id, i.script));
                }
                self.group_mut(name).unwrap().instances.push(i);
            }
        } else if live > g.desired {
            // The same victims as every backend's group picks.
            let victims = cloud::scale_in_victims(
                g.live().map(|i| cloud::ScaleInCandidate {
                    id: &i.id,
                    lifecycle: i.lifecycle,
                    image: &i.image,
                    launched_ms: i.launched_ms,
                }),
                &g.current.image,
                (live - g.desired) as usize,
            );
            let t = g.target_group.clone();
            for id in victims {
                let g = self.group_mut(name).unwrap();
                if let Some(i) = g.instances.iter_mut().find(|i| i.id == id) {
                    i.lifecycle = Lifecycle::Terminating;
                }
                self.lost += 1;
                if let Some(t) = &t {
                    self.deregister(t, &id);
                }
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        let now = self.now;
        let record = self.record();
        match f {
            Fault::Death(n) => {
                let live: Vec<(GroupName, InstanceId, Lifecycle)> = self
                    .groups
                    .iter()
                    .flat_map(|g| {
                        g.live()
                            .map(|i| (g.name.clone(), i.id.clone(), i.lifecycle))
                    })
                    .collect();
                if live.is_empty() {
                    return;
                }
                let (name, id, lifecycle) = live[n % live.len()].clone();
                let g = self.group_mut(&name).unwrap();
                g.instances.retain(|i| i.id != id);
                if lifecycle != Lifecycle::InService {
                    g.failed_launches += 1;
                    g.next_launch_ms = now + backoff_ms(g.failed_launches);
                }
                for ts in self.tgs.values_mut() {
                    ts.retain(|t| t.instance != id);
                }
                self.lost += 1;
            }
            Fault::Flap(n, ms) => {
                // Only instances whose failure is not the roll's own
                // (an old one), or one of the image rolled to.
                let roll = record.roll.as_ref();
                let may: Vec<InstanceId> = self
                    .tgs
                    .values()
                    .flatten()
                    .filter(|t| t.health == TargetHealth::Healthy)
                    .filter_map(|t| self.instance(&t.instance))
                    .filter(|i| {
                        roll.is_none_or(|r| i.launched_ms < r.started_ms || i.image == r.to)
                    })
                    .map(|i| i.id.clone())
                    .collect();
                if may.is_empty() {
                    return;
                }
                let id = may[n % may.len()].clone();
                if let Some(r) = roll.filter(|r| self.instance(&id).unwrap().image == r.to) {
                    self.evidence
                        .push(format!("{id} of {} flapped for {ms} ms", r.to));
                }
                for t in self.tgs.values_mut().flatten() {
                    if t.instance == id && t.health == TargetHealth::Healthy {
                        t.health = TargetHealth::Unhealthy {
                            reason: "Target.FailedHealthChecks".into(),
                        };
                        t.since_ms = now;
                        t.until = Some(now + ms);
                    }
                }
            }
            Fault::Drift(d) => {
                let Some(r) = record.roll else { return };
                let Ok(g) = self.group_mut(&r.group) else {
                    return;
                };
                let d = d.clamp(g.min.max(1), g.max.max(1));
                let up = d.saturating_sub(g.desired);
                g.desired = d;
                self.drifted += up;
                self.drifts.push(now);
            }
        }
    }

    // ---- what the executor observes ----

    pub fn observe(&mut self, gates: &mut BTreeMap<InstanceId, Probe>) -> Observed {
        let status = |s: &Sim, t: &Tgt| TargetStatus {
            target: Target {
                instance: t.instance.clone(),
                port: t.port,
            },
            address: s.instance(&t.instance).and_then(|i| i.address),
            health: t.health.clone(),
            since_ms: t.since_ms,
            in_flight: 0,
        };
        let mut views = Vec::new();
        for name in [group(SERVICE), group(TWIN)] {
            if let Some(g) = self.group(&name) {
                let targets = g
                    .target_group
                    .as_ref()
                    .map(|t| self.targets(t).iter().map(|x| status(self, x)).collect())
                    .unwrap_or_default();
                views.push(GroupView {
                    info: g.info(),
                    targets,
                });
            }
        }
        let idle = self
            .listener_tgs
            .iter()
            .find(|t| **t != self.forward)
            .cloned()
            .unwrap_or_else(|| self.forward.clone());
        let idle_targets = self
            .targets(&idle)
            .iter()
            .map(|x| status(self, x))
            .collect();
        let record = self.record();
        let baking = record
            .roll
            .as_ref()
            .is_some_and(|r| r.bake_started_ms.is_some() && !r.bake_done);
        let shadow = if baking { self.shadow_report() } else { None };
        gates.retain(|id, _| self.instance(id).is_some());
        Observed {
            now_ms: self.now,
            service: group(SERVICE),
            groups: views,
            forward: self.forward.clone(),
            idle,
            idle_targets,
            deregistration_delay_ms: self.dereg_delay_ms,
            record,
            gates: gates.clone(),
            shadow,
            alarms: Vec::new(),
            set_gate: None,
            health_interval_ms: self.health_interval_ms,
            // The executor's: `Runner::run` fills it in.
            deregistered: BTreeMap::new(),
            canary: self.canary,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Out(Outcome),
    Refused(String),
    Failed(String),
}

/// What an action did to the executor's loop.
enum Next {
    Pause(u64),
    End(End),
}

/// The executor's loop over a [`Sim`], with the planner's invariants
/// checked before every action.
pub struct Runner {
    pub sim: Sim,
    pub goal: Goal,
    /// The executor's state: its gate probes, and when it deregistered
    /// each instance.
    pub gates: BTreeMap<InstanceId, Probe>,
    pub deregistered: BTreeMap<InstanceId, u64>,
    /// Every action with the time it was planned.
    pub trace: Vec<(u64, Action)>,
    /// `kill -9` before step n (`true`: in the middle of its action,
    /// after the first of its writes).
    pub crash: Option<(usize, bool)>,
    /// The last roll record observed.
    pub last_roll: Option<Roll>,
    /// The largest roll size observed.
    pub max_size: u32,
}

pub fn goal(intent: roll::plan::Intent) -> Goal {
    Goal {
        intent,
        roll_id: "roll-1".into(),
        max_surge: Surge::Count(1),
        min_healthy_pct: 100,
        warmup_ms: 0,
        bake_ms: 0,
        gate_timeout_ms: 5_000,
        keep_ms: 60_000,
        probe_every_ms: 100,
        shadow_strict: false,
        twin: group(TWIN),
        gate_set: false,
        canary: Vec::new(),
    }
}

impl Runner {
    pub fn new(sim: Sim, goal: Goal) -> Runner {
        Runner {
            sim,
            goal,
            gates: BTreeMap::new(),
            deregistered: BTreeMap::new(),
            trace: Vec::new(),
            crash: None,
            last_roll: None,
            max_size: 0,
        }
    }

    /// Runs to the end, or to the first broken invariant (`Err`, with the
    /// last actions).
    pub fn run(&mut self, max_steps: usize) -> Result<End, String> {
        for step in 0..max_steps {
            if self.sim.now > T0 + MAX_RUN_MS {
                break;
            }
            let crash = self.crash.filter(|c| c.0 == step);
            if crash.is_some_and(|c| !c.1) {
                self.kill();
            }
            let mut o = self.sim.observe(&mut self.gates);
            o.deregistered = self.deregistered.clone();
            if let Some(r) = &o.record.roll {
                self.max_size = self.max_size.max(r.size);
                self.last_roll = Some(r.clone());
            }
            let a = plan(&o, &self.goal);
            self.trace.push((o.now_ms, a.clone()));
            let partial = crash.is_some_and(|c| c.1);
            let next = self
                .check(&o, &a)
                .and_then(|()| self.act(&o, &a, partial))
                .map_err(|e| self.explain(&e))?;
            if let Action::Deregister { instance, .. } = &a
                && !partial
            {
                self.deregistered.insert(instance.clone(), o.now_ms);
            }
            if partial {
                self.kill();
            }
            match next {
                Next::Pause(ms) => {
                    let to = self.sim.now + ms.max(1);
                    self.sim.advance(to);
                }
                Next::End(e) => return Ok(e),
            }
        }
        Err(self.explain(&format!(
            "stuck: no end after {} steps and {} ms",
            self.trace.len(),
            self.sim.now - T0
        )))
    }

    /// `kill -9` and the same command again: the gate probes are lost, the
    /// new process has a new roll id.
    fn kill(&mut self) {
        self.gates.clear();
        self.deregistered.clear();
        self.goal.roll_id = format!("{}-again", self.goal.roll_id);
    }

    pub fn explain(&self, why: &str) -> String {
        let tail: Vec<String> = self
            .trace
            .iter()
            .rev()
            .take(40)
            .rev()
            .map(|(t, a)| format!("  {:>7} {a:?}", t - T0))
            .collect();
        format!(
            "{why}\n at {} ms after start, last actions:\n{}\nfleet: {:#?}\ntargets: {:#?}",
            self.sim.now - T0,
            tail.join("\n"),
            self.sim
                .groups
                .iter()
                .map(|g| (
                    &g.name,
                    g.desired,
                    g.min,
                    g.max,
                    &g.current.image,
                    g.hold,
                    g.instances
                        .iter()
                        .map(|i| format!("{} {} {:?}", i.id, i.image, i.lifecycle))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>(),
            self.sim
                .tgs
                .iter()
                .map(|(k, v)| (
                    k,
                    v.iter()
                        .map(|t| format!("{} {}@{}", t.instance, t.health.as_str(), t.since_ms))
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>(),
        )
    }

    /// The invariants, checked on the action before it runs.
    fn check(&self, o: &Observed, a: &Action) -> Result<(), String> {
        let sim = &self.sim;
        let roll = o.record.roll.as_ref();
        match a {
            // 1. Never more than size + max-surge instances.
            Action::Launch { group, desired } => {
                if let Some(r) = roll.filter(|r| &r.group == group) {
                    let g = sim.group(group).unwrap();
                    let live = g.live().count() as u32;
                    let after = g.instances.len() as u32 + desired.saturating_sub(live);
                    let bound = r.size
                        + match r.strategy {
                            // The planner rolls an instance refresh's record only
                            // back, with the rolling steps.
                            Strategy::Rolling | Strategy::InstanceRefresh => {
                                surge_of(r.size, self.goal.max_surge)
                            }
                            Strategy::BlueGreen => 0,
                        };
                    if *desired > g.desired && after > bound {
                        return Err(format!(
                            "property 1: desired {desired} makes {after} instances in {group}, above size {} + surge",
                            r.size
                        ));
                    }
                }
            }
            // 3. Never a terminate before the drain ended.
            Action::Terminate { instance, .. } if sim.listed(instance) => {
                return Err(format!(
                    "property 3: terminate of {instance}, still listed in a target group"
                ));
            }
            // 4. Only gated instances take traffic.
            Action::Register { instance, .. } | Action::Canary { instance, .. }
                if sim.probes.get(instance) != Some(&GateOutcome::Passed) =>
            {
                return Err(format!(
                    "property 4: {instance} registered, its latest probe is {:?}",
                    sim.probes.get(instance)
                ));
            }
            Action::Switch { target_group } => {
                let ts = sim.targets(target_group);
                if ts.is_empty() || ts.iter().any(|t| t.health != TargetHealth::Healthy) {
                    return Err(format!(
                        "property 4: switch to {target_group} whose targets are not all healthy"
                    ));
                }
            }
            Action::Weigh {
                target_group,
                percent,
            } if *percent > 0 => {
                let ts = sim.targets(target_group);
                if ts.is_empty() || ts.iter().any(|t| t.health != TargetHealth::Healthy) {
                    return Err(format!(
                        "property 4: {percent}% to {target_group} whose targets are not all healthy"
                    ));
                }
            }
            _ => {}
        }
        // 2. Never below min-healthy because of an action: run it on a
        // copy, and compare with a copy without it, both with the groups'
        // immediate reaction to their size (someone else's resize is not
        // the action's doing).
        if let Some(r) = roll
            && !a.waits()
        {
            let m = min_in_service(r.size, self.goal.min_healthy_pct);
            let resized = |mut sim: Sim| {
                for g in [group(SERVICE), group(TWIN)] {
                    if sim.group(&g).is_some() {
                        sim.resize(&g);
                    }
                }
                sim.in_service(self.goal.warmup_ms)
            };
            let before = resized(sim.clone());
            let mut copy = Runner::new(sim.clone(), self.goal.clone());
            copy.gates = self.gates.clone();
            if copy.act(o, a, false).is_ok() {
                let after = resized(copy.sim);
                if before >= m && after < m {
                    return Err(format!(
                        "property 2: {after} in service after the action, {before} before, min-healthy is {m}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Runs one action as `Executor::act` does.
    fn act(&mut self, o: &Observed, a: &Action, partial: bool) -> Result<Next, String> {
        let sim = &mut self.sim;
        let roll = o.record.roll.clone();
        let need = |r: Option<Roll>| r.ok_or("the roll record vanished".to_string());
        let pause = |ms: u64| Ok(Next::Pause(ms));
        match a.clone() {
            Action::Begin { roll } => {
                let new = roll.to_tags();
                let stale: Vec<&str> = keys::ROLL
                    .iter()
                    .copied()
                    .filter(|k| !new.contains_key(*k))
                    .collect();
                sim.tag_service(&new, &stale);
            }
            Action::Adopt { size, desired } => {
                let mut r = need(roll)?;
                r.size = size;
                r.desired = desired;
                r.desired_prev = desired;
                sim.write_roll(&r);
            }
            Action::CreateGroup {
                group,
                image,
                target_group,
                max,
            } => {
                sim.create_group(&group, &image, &target_group, max);
                if partial {
                    return pause(CALL_MS);
                }
                sim.hold(&group, true)?;
            }
            Action::Hold { group, hold } => sim.hold(&group, hold)?,
            Action::Limits { group, min, max } => sim.set_limits(&group, min, max)?,
            Action::SetImage { group, image } => sim.set_image(&group, &image)?,
            Action::Launch { group, desired } => {
                if let Some(mut r) = roll.filter(|r| r.group == group) {
                    r.desired_prev = r.desired;
                    r.desired = desired;
                    sim.write_roll(&r);
                }
                if partial {
                    return pause(CALL_MS);
                }
                sim.set_desired(&group, desired)?;
            }
            Action::Gate { group, instances } => {
                let mut progressed = false;
                for id in instances {
                    if sim
                        .group(&group)
                        .and_then(|g| g.instances.iter().find(|i| i.id == id))
                        .is_none()
                    {
                        continue;
                    }
                    let outcome = sim.probe(&id);
                    progressed |= !matches!(outcome, GateOutcome::NotReady { .. });
                    self.gates.insert(
                        id,
                        Probe {
                            outcome,
                            at_ms: sim.now,
                        },
                    );
                }
                if !progressed {
                    return pause(CALL_MS + POLL_MS.min(self.goal.probe_every_ms));
                }
            }
            Action::Register { group, instance } => sim.put_in_service(&group, &instance)?,
            Action::Canary {
                instance,
                target_group,
            } => sim.register(&target_group, &instance)?,
            Action::StartBake { target_group } => {
                let mut r = need(roll)?;
                sim.shadow = Some(target_group);
                if partial {
                    return pause(CALL_MS);
                }
                r.bake_started_ms = Some(sim.now);
                sim.write_roll(&r);
            }
            Action::EndBake => {
                let mut r = need(roll)?;
                sim.shadow = None;
                if partial {
                    return pause(CALL_MS);
                }
                r.bake_done = true;
                sim.write_roll(&r);
            }
            Action::Deregister {
                instance,
                target_group,
            } => {
                if sim.instance(&instance).and_then(|i| i.address).is_none() {
                    return Err(format!("deregister: {instance} has no address"));
                }
                sim.deregister(&target_group, &instance);
            }
            Action::Drain { until_ms, .. }
            | Action::Wait {
                until_ms: Some(until_ms),
                ..
            } if until_ms <= o.now_ms => return pause(POLL_MS.min(10)),
            Action::Drain { until_ms, .. } => return pause(POLL_MS.min(until_ms - o.now_ms)),
            Action::Wait { until_ms, .. } => {
                return pause(until_ms.map_or(POLL_MS, |u| POLL_MS.min(u - o.now_ms)));
            }
            Action::Terminate { group, instance } => {
                if let Some(mut r) = roll.filter(|r| r.group == group) {
                    let d = o.group(&group).map_or(0, |v| v.info.desired);
                    r.desired_prev = d;
                    r.desired = d.saturating_sub(1);
                    sim.write_roll(&r);
                }
                if partial {
                    return pause(CALL_MS);
                }
                sim.terminate(&group, &instance)?;
            }
            Action::Switch { target_group } => {
                let ts = sim.targets(&target_group);
                let healthy = ts
                    .iter()
                    .filter(|t| t.health == TargetHealth::Healthy)
                    .count();
                if healthy == 0 || healthy != ts.len() {
                    return pause(POLL_MS);
                }
                sim.forward = target_group;
                sim.canary = 0;
            }
            Action::Weigh {
                target_group,
                percent,
            } => {
                let ts = sim.targets(&target_group);
                let healthy = ts
                    .iter()
                    .filter(|t| t.health == TargetHealth::Healthy)
                    .count();
                if percent > 0 && (healthy == 0 || healthy != ts.len()) {
                    return pause(POLL_MS);
                }
                let step = roll::record::Canary {
                    percent,
                    since_ms: sim.now,
                };
                sim.tag_service(&step.to_tags(), &[]);
                if partial {
                    return pause(CALL_MS);
                }
                sim.canary = percent;
            }
            Action::Rollback { reason, requested } => {
                let mut r = need(roll)?;
                if r.bake_started_ms.is_some() && !r.bake_done {
                    sim.shadow = None;
                }
                if partial {
                    return pause(CALL_MS);
                }
                r.phase = if requested {
                    Phase::Reverting
                } else {
                    Phase::RollingBack
                };
                r.reason = Some(reason);
                sim.write_roll(&r);
            }
            Action::DropStandby => {
                if let Some(sb) = &o.record.standby {
                    sim.group_mut(&sb.group)?.scheduled = None;
                }
                if partial {
                    return pause(CALL_MS);
                }
                sim.tag_service(&Tags::new(), &keys::STANDBY_ALL);
            }
            Action::Finish {
                outcome,
                standby,
                previous,
                schedule,
            } => {
                for (g, s) in &schedule {
                    sim.group_mut(g)?.scheduled = *s;
                }
                if partial {
                    return pause(CALL_MS);
                }
                let mut set = Tags::new();
                let mut remove: Vec<&str> = keys::ROLL.to_vec();
                match &standby {
                    Some(sb) => set.extend(sb.to_tags()),
                    None => remove.extend(keys::STANDBY_ALL),
                }
                if let Some(p) = &previous {
                    set.insert(keys::PREVIOUS.into(), p.to_string());
                }
                sim.tag_service(&set, &remove);
                return Ok(Next::End(End::Out(outcome)));
            }
            Action::GateSet { .. } => return Err("the simulation has no test listener".into()),
            Action::Done { outcome } => return Ok(Next::End(End::Out(outcome))),
            Action::Refuse { why } => return Ok(Next::End(End::Refused(why))),
            Action::Fail { why } => return Ok(Next::End(End::Failed(why))),
        }
        pause(CALL_MS)
    }
}

/// A short name for each action, for checking the shape of a run.
pub fn kind(a: &Action) -> &'static str {
    match a {
        Action::Begin { .. } => "Begin",
        Action::Adopt { .. } => "Adopt",
        Action::CreateGroup { .. } => "CreateGroup",
        Action::Hold { .. } => "Hold",
        Action::Limits { .. } => "Limits",
        Action::SetImage { .. } => "SetImage",
        Action::Launch { .. } => "Launch",
        Action::Gate { .. } => "Gate",
        Action::GateSet { .. } => "GateSet",
        Action::Register { .. } => "Register",
        Action::Canary { .. } => "Canary",
        Action::StartBake { .. } => "StartBake",
        Action::EndBake => "EndBake",
        Action::Deregister { .. } => "Deregister",
        Action::Drain { .. } => "Drain",
        Action::Terminate { .. } => "Terminate",
        Action::Switch { .. } => "Switch",
        Action::Weigh { .. } => "Weigh",
        Action::Rollback { .. } => "Rollback",
        Action::DropStandby => "DropStandby",
        Action::Finish { .. } => "Finish",
        Action::Wait { .. } => "Wait",
        Action::Done { .. } => "Done",
        Action::Refuse { .. } => "Refuse",
        Action::Fail { .. } => "Fail",
    }
}
