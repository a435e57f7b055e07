//! The planner: `plan(&Observed, &Goal) -> Action`, a pure function. It
//! reads no clock and does no I/O — time, health, gate results and the
//! roll record all come in [`Observed`] — so every strategy is tested on
//! made-up fleets with paused time, and the same planner drives every
//! backend. The executor (`exec.rs`) runs the one action, observes again
//! and asks again, until [`Action::Done`].
//!
//! The invariants it keeps (property-tested in `tests/planner.rs`):
//! - never more than size + max-surge instances (it only launches below
//!   that);
//! - never fewer than min-healthy of size in service because of it (it
//!   deregisters an in-service instance only when the rest are enough);
//! - never a terminate before the drain ended (it terminates only an
//!   instance no target group lists, neither registered nor draining);
//! - a new instance takes traffic only after its gate passed, and the
//!   first one (with a bake time) only after it answered mirrored live
//!   traffic like the old image did;
//! - it ends on the target image, or — after a failed gate — back on the
//!   previous one; a rolling roll with no room to replace an instance (no
//!   surge, and min-healthy of all or a bake) is refused, not waited on.

use std::collections::BTreeMap;

use cloud::{
    GateOutcome, GroupInfo, GroupInstance, GroupName, ImageId, InstanceId, Lifecycle, ShadowReport,
    TargetGroupId, TargetHealth, TargetStatus,
};
use serde::Serialize;

use crate::record::{Kind, Phase, Record, Roll, Standby, Strategy};

/// One group as observed: the group and its target group's targets.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub info: GroupInfo,
    pub targets: Vec<TargetStatus>,
}

/// The latest gate probe of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub outcome: GateOutcome,
    pub at_ms: u64,
}

/// The blue/green set's gate through a test listener: the last outcome,
/// when it was probed, and when the first probe was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetProbe {
    pub outcome: GateOutcome,
    pub at_ms: u64,
    pub first_ms: u64,
}

/// Everything the planner decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub now_ms: u64,
    /// The group named on the command line: it carries the record.
    pub service: GroupName,
    /// The service group and, if it exists, its blue/green twin.
    pub groups: Vec<GroupView>,
    /// The target group the listener forwards to.
    pub forward: TargetGroupId,
    /// The listener's other target group: the blue/green idle set, and
    /// where a rolling canary answers mirrored traffic during bake time.
    pub idle: TargetGroupId,
    /// Targets of `idle` (for rolling canaries; blue/green reads them
    /// through the idle group's view too).
    pub idle_targets: Vec<TargetStatus>,
    pub deregistration_delay_ms: u64,
    pub record: Record,
    pub gates: BTreeMap<InstanceId, Probe>,
    /// The shadow comparison while a bake runs.
    pub shadow: Option<ShadowReport>,
    /// The service's alarms that are firing (`--alarm`).
    pub alarms: Vec<String>,
    /// The new blue/green set's gate through the test listener, once run.
    pub set_gate: Option<SetProbe>,
    /// The live target group's health-check interval: a deregistered
    /// instance is terminated no sooner than this after its
    /// deregistration, however soon the balancer let it go.
    pub health_interval_ms: u64,
    /// When this run deregistered each instance (Unix ms).
    pub deregistered: BTreeMap<InstanceId, u64>,
    /// Percent of new requests the listener sends to `idle` now (a
    /// blue/green canary step; 0: none).
    pub canary: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// `roll out --image`.
    Out { image: ImageId, strategy: Strategy },
    /// `roll back [--to]`: a switch to the blue/green standby while it is
    /// kept and healthy, else a rolling roll to `to` (default: the image
    /// before the current one).
    Back { to: Option<ImageId> },
    /// `roll scale --size`.
    Scale { size: u32 },
}

/// `--max-surge N|P%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surge {
    Count(u32),
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub intent: Intent,
    pub roll_id: String,
    pub max_surge: Surge,
    /// `--min-healthy`, percent of size.
    pub min_healthy_pct: u32,
    /// A healthy new instance counts as in service after this long.
    pub warmup_ms: u64,
    /// Shadow comparison of the first new instance(s) (0: none).
    pub bake_ms: u64,
    /// From launch to passing the gate (and the balancer's checks).
    pub gate_timeout_ms: u64,
    /// How long a blue/green standby is kept.
    pub keep_ms: u64,
    /// A gate probe older than this is repeated.
    pub probe_every_ms: u64,
    /// Any shadow difference fails the roll (the index digest did not
    /// change, e.g. a security rebake); else differences are reported.
    pub shadow_strict: bool,
    /// The service group's blue/green twin.
    pub twin: GroupName,
    /// Blue/green: the new set passes the gate through a test listener
    /// (forwarding to the idle target group) before the switch.
    pub gate_set: bool,
    /// Blue/green `--canary`: percent of new requests moved to the new
    /// set in steps before the switch (strictly increasing, each
    /// 1..=99), each held for the bake time.
    pub canary: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    RolledOut,
    /// A gate failed; the service is back on the previous image.
    RolledBack,
    /// `roll back` undid an unfinished roll.
    Reverted,
    /// `roll back` switched to the standby.
    SwitchedBack,
    NothingToDo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Write the roll record (before anything changes).
    Begin {
        roll: Roll,
    },
    /// Someone else resized the group: adopt their size.
    Adopt {
        size: u32,
        desired: u32,
    },
    /// Create the blue/green twin (launches held, size 0).
    CreateGroup {
        group: GroupName,
        image: ImageId,
        target_group: TargetGroupId,
        max: u32,
    },
    /// Launches wait for the roll's gate (or, released, the group's own).
    Hold {
        group: GroupName,
        hold: bool,
    },
    Limits {
        group: GroupName,
        min: u32,
        max: u32,
    },
    SetImage {
        group: GroupName,
        image: ImageId,
    },
    /// Set desired to this (the group launches from its template).
    Launch {
        group: GroupName,
        desired: u32,
    },
    /// Probe these instances' gate once.
    Gate {
        group: GroupName,
        instances: Vec<InstanceId>,
    },
    /// Probe the new blue/green set's gate once, through the test
    /// listener in front of `target_group`.
    GateSet {
        target_group: TargetGroupId,
    },
    /// Put a gated instance in service (its group's target group).
    Register {
        group: GroupName,
        instance: InstanceId,
    },
    /// Register a gated instance in the idle target group, where it gets
    /// mirrored traffic only (rolling with a bake time).
    Canary {
        instance: InstanceId,
        target_group: TargetGroupId,
    },
    /// Record the bake start and mirror live traffic to `target_group`.
    StartBake {
        target_group: TargetGroupId,
    },
    /// Stop mirroring, record the bake done.
    EndBake,
    Deregister {
        instance: InstanceId,
        target_group: TargetGroupId,
    },
    /// Wait for a draining target (at most until `until_ms`).
    Drain {
        instance: InstanceId,
        until_ms: u64,
    },
    /// Terminate (with decrement) an instance no target group lists.
    Terminate {
        group: GroupName,
        instance: InstanceId,
    },
    /// Send all new requests to `target_group`.
    Switch {
        target_group: TargetGroupId,
    },
    /// A blue/green canary step: record it, then send `percent` of new
    /// requests to `target_group` (the new set) and the rest to the live
    /// one; 0 takes them all back.
    Weigh {
        target_group: TargetGroupId,
        percent: u32,
    },
    /// A gate failed (or `requested`: `roll back` undoes an unfinished
    /// roll): record the reason, head back to the previous image.
    Rollback {
        reason: String,
        requested: bool,
    },
    /// Drop the record of a standby that is about to be replaced.
    DropStandby,
    /// Clear the roll record; keep a standby and the image to roll back to.
    Finish {
        outcome: Outcome,
        standby: Option<Standby>,
        previous: Option<ImageId>,
        /// Scheduled size changes to set (`None` cancels one).
        schedule: Vec<(GroupName, Option<cloud::ScheduledDesired>)>,
    },
    /// Nothing to do until something changes (or `until_ms`).
    Wait {
        why: String,
        until_ms: Option<u64>,
    },
    Done {
        outcome: Outcome,
    },
    /// The goal makes no sense here (exit 2).
    Refuse {
        why: String,
    },
    /// Cannot converge (e.g. the previous image fails its gate too).
    Fail {
        why: String,
    },
}

impl Action {
    /// Whether the executor should pause before observing again.
    pub fn waits(&self) -> bool {
        matches!(self, Action::Wait { .. } | Action::Drain { .. })
    }
}

/// The planner.
pub fn plan(o: &Observed, g: &Goal) -> Action {
    let Some(live) = o.live() else {
        return Action::Fail {
            why: format!(
                "the listener forwards to target group {} which no group of {} uses",
                o.forward, o.service
            ),
        };
    };
    match &o.record.roll {
        Some(r) if continues(r, &g.intent) => continue_roll(o, g, r),
        Some(r) => match &g.intent {
            Intent::Back { .. } => Action::Rollback {
                reason: format!(
                    "roll back requested: undoing roll {} ({} -> {})",
                    r.id, r.from, r.to
                ),
                requested: true,
            },
            Intent::Scale { .. } => Action::Refuse {
                why: format!(
                    "roll {} ({} -> {}) is in progress on {}: rerun it (or roll back) first",
                    r.id, r.from, r.to, o.service
                ),
            },
            // A different roll out supersedes an interrupted one; the
            // image to fall back to stays the last one that finished.
            Intent::Out { image, strategy } => begin(o, g, live, image, *strategy, Some(r)),
        },
        None => start(o, g, live),
    }
}

/// Whether the recorded roll is the one the goal asks for (a rerun of
/// the command that began it, or `roll back` of a roll already heading
/// back).
fn continues(r: &Roll, intent: &Intent) -> bool {
    match intent {
        Intent::Out { image, strategy } => {
            r.kind == Kind::Out && &r.to == image && r.strategy == *strategy
        }
        Intent::Back { .. } => r.kind == Kind::Back || r.phase != Phase::Rolling,
        Intent::Scale { size } => r.kind == Kind::Scale && r.size == *size,
    }
}

fn kind_of(intent: &Intent) -> Kind {
    match intent {
        Intent::Out { .. } => Kind::Out,
        Intent::Back { .. } => Kind::Back,
        Intent::Scale { .. } => Kind::Scale,
    }
}

impl Observed {
    pub fn group(&self, name: &GroupName) -> Option<&GroupView> {
        self.groups.iter().find(|g| &g.info.name == name)
    }

    /// The group behind the listener.
    pub fn live(&self) -> Option<&GroupView> {
        self.groups
            .iter()
            .find(|g| g.info.target_group.as_ref() == Some(&self.forward))
    }

    fn health_in<'t>(targets: &'t [TargetStatus], id: &InstanceId) -> Option<&'t TargetStatus> {
        targets.iter().find(|t| &t.target.instance == id)
    }
}

fn surge(size: u32, g: &Goal) -> u32 {
    match g.max_surge {
        Surge::Count(n) => n,
        // ASG rounds a percentage surge up, and at least one.
        Surge::Percent(p) => (size * p).div_ceil(100).max(1),
    }
}

fn min_in_service(size: u32, g: &Goal) -> u32 {
    (size * g.min_healthy_pct.min(100)).div_ceil(100)
}

/// A rolling replacement without surge must take an old instance out
/// before its replacement launches: min-healthy of every instance
/// forbids that (Auto Scaling refuses such an instance refresh too), and
/// a bake keeps every old instance until the canary, which then has no
/// room, passed. Either would wait forever.
fn no_room(size: u32, g: &Goal, bake_pending: bool) -> Option<Action> {
    if size == 0 || surge(size, g) > 0 {
        return None;
    }
    let why = if min_in_service(size, g) >= size {
        format!(
            "--max-surge 0 with --min-healthy {}% of {size} instances leaves no room to replace one: allow a surge or lower --min-healthy",
            g.min_healthy_pct
        )
    } else if bake_pending {
        "--max-surge 0 leaves no room for the bake's canary beside the old instances: allow a surge"
            .into()
    } else {
        return None;
    };
    Some(Action::Refuse { why })
}

/// Whether every instance of the group runs `image` and serves.
fn settled(v: &GroupView, image: &ImageId, size: u32) -> bool {
    v.info.desired == size
        && v.info.instances.len() == size as usize
        && v.info.current.image == *image
        && v.info.instances.iter().all(|i| {
            i.image == *image
                && i.lifecycle == Lifecycle::InService
                && Observed::health_in(&v.targets, &i.id)
                    .is_some_and(|t| t.health == TargetHealth::Healthy)
        })
}

fn start(o: &Observed, g: &Goal, live: &GroupView) -> Action {
    match &g.intent {
        Intent::Out { image, strategy } => {
            if settled(live, image, live.info.desired) {
                return Action::Done {
                    outcome: Outcome::NothingToDo,
                };
            }
            begin(o, g, live, image, *strategy, None)
        }
        Intent::Back { to } => back(o, g, live, to.as_ref()),
        Intent::Scale { size } => {
            let image = live.info.current.image.clone();
            if settled(live, &image, *size) {
                return Action::Done {
                    outcome: Outcome::NothingToDo,
                };
            }
            let mut roll = new_roll(o, g, live, &image, &image, Strategy::Rolling, *size);
            roll.group = live.info.name.clone();
            Action::Begin { roll }
        }
    }
}

fn new_roll(
    o: &Observed,
    g: &Goal,
    live: &GroupView,
    from: &ImageId,
    to: &ImageId,
    strategy: Strategy,
    size: u32,
) -> Roll {
    let group = match strategy {
        Strategy::Rolling | Strategy::InstanceRefresh => live.info.name.clone(),
        Strategy::BlueGreen => {
            if live.info.name == o.service {
                g.twin.clone()
            } else {
                o.service.clone()
            }
        }
    };
    let (min_orig, max_orig, desired) = match o.group(&group) {
        Some(v) => (v.info.min, v.info.max, v.info.desired),
        None => (0, size, 0),
    };
    Roll {
        id: g.roll_id.clone(),
        kind: kind_of(&g.intent),
        strategy,
        phase: Phase::Rolling,
        from: from.clone(),
        to: to.clone(),
        size,
        desired,
        desired_prev: desired,
        started_ms: o.now_ms,
        bake_started_ms: None,
        bake_done: false,
        reason: None,
        group,
        min_orig,
        max_orig,
    }
}

fn begin(
    o: &Observed,
    g: &Goal,
    live: &GroupView,
    image: &ImageId,
    strategy: Strategy,
    prior: Option<&Roll>,
) -> Action {
    // The image the service runs now: the live group's template, unless
    // an interrupted roll already pointed it at the new image.
    let from = prior.map(|r| r.from.clone()).unwrap_or_else(|| {
        if live.info.current.image != *image {
            live.info.current.image.clone()
        } else {
            live.info
                .instances
                .iter()
                .map(|i| i.image.clone())
                .find(|i| i != image)
                .or_else(|| live.info.previous.first().map(|v| v.image.clone()))
                .unwrap_or_else(|| image.clone())
        }
    });
    let size = prior.map_or(live.info.desired, |r| r.size).max(1);
    if strategy == Strategy::Rolling
        && from != *image
        && let Some(refuse) = no_room(size, g, g.bake_ms > 0)
    {
        return refuse;
    }
    let mut roll = new_roll(o, g, live, &from, image, strategy, size);
    if let Some(p) = prior.filter(|p| p.group == roll.group) {
        // The interrupted roll changed the limits: keep the originals.
        roll.min_orig = p.min_orig;
        roll.max_orig = p.max_orig;
    }
    Action::Begin { roll }
}

/// `roll back` without a roll in progress.
fn back(o: &Observed, g: &Goal, live: &GroupView, to: Option<&ImageId>) -> Action {
    if let Some(sb) = &o.record.standby
        && to.is_none_or(|t| t == &sb.image)
        && let Some(standby) = o.group(&sb.group)
        && o.now_ms < sb.until_ms
    {
        let Some(tg) = standby.info.target_group.clone() else {
            return Action::Fail {
                why: format!("standby group {} has no target group", sb.group),
            };
        };
        if tg == o.forward {
            // Switched: the group we left is the standby now.
            let until = o.now_ms + g.keep_ms;
            let left = o
                .groups
                .iter()
                .find(|v| v.info.name != sb.group)
                .map(|v| (v.info.name.clone(), v.info.current.image.clone()));
            let mut schedule = vec![(sb.group.clone(), None)];
            let (standby, previous) = match left {
                Some((name, image)) => {
                    schedule.push((
                        name.clone(),
                        Some(cloud::ScheduledDesired {
                            at_ms: until,
                            desired: 0,
                        }),
                    ));
                    (
                        Some(Standby {
                            group: name,
                            image: image.clone(),
                            until_ms: until,
                        }),
                        Some(image),
                    )
                }
                None => (None, None),
            };
            return Action::Finish {
                outcome: Outcome::SwitchedBack,
                standby,
                previous,
                schedule,
            };
        }
        if standby_ready(standby, &sb.image) {
            return Action::Switch { target_group: tg };
        }
    }

    // No usable standby: a rolling roll to the previous image.
    let target = to
        .cloned()
        .or_else(|| o.record.previous.clone())
        .or_else(|| {
            live.info
                .previous
                .iter()
                .map(|v| v.image.clone())
                .find(|i| *i != live.info.current.image)
        });
    match target {
        Some(image)
            if image == live.info.current.image && settled(live, &image, live.info.desired) =>
        {
            Action::Done {
                outcome: Outcome::NothingToDo,
            }
        }
        Some(image) => begin(o, g, live, &image, Strategy::Rolling, None),
        None => Action::Refuse {
            why: format!(
                "group {} has no previous image to roll back to; name one with --to",
                o.service
            ),
        },
    }
}

/// Every instance of the standby runs its image and is healthy in its
/// (idle) target group right now: an ALB fails open when all targets are
/// unhealthy, so we never switch to a set that is not.
fn standby_ready(v: &GroupView, image: &ImageId) -> bool {
    let live: Vec<&GroupInstance> = v
        .info
        .instances
        .iter()
        .filter(|i| i.lifecycle != Lifecycle::Terminating)
        .collect();
    !live.is_empty()
        && live.iter().all(|i| {
            &i.image == image
                && Observed::health_in(&v.targets, &i.id)
                    .is_some_and(|t| t.health == TargetHealth::Healthy)
        })
}

fn continue_roll(o: &Observed, g: &Goal, r: &Roll) -> Action {
    // An alarm firing while a roll out is on its way fails it, whatever
    // step it is at (gate, bake time, replacing the rest); going back is
    // never stopped by one (it is usually why).
    if r.kind == Kind::Out
        && r.phase == Phase::Rolling
        && let Some(a) = o.alarms.first()
    {
        return Action::Rollback {
            reason: format!("alarm {a} is in ALARM"),
            requested: false,
        };
    }
    // A canary step left new requests on the idle set, and this roll is
    // not the one stepping it up (going back, or another roll): all of
    // them back to the live set before anything there changes.
    let stepping =
        r.strategy == Strategy::BlueGreen && r.phase == Phase::Rolling && o.record.canary.is_some();
    if o.canary > 0 && !stepping && o.idle != o.forward {
        return Action::Weigh {
            target_group: o.idle.clone(),
            percent: 0,
        };
    }
    match r.strategy {
        // An instance refresh is watched by `refresh.rs`; its record meets
        // the planner only on the way back from a refresh that ended
        // half-way, which the rolling steps finish.
        Strategy::Rolling | Strategy::InstanceRefresh => rolling(o, g, r),
        Strategy::BlueGreen => blue_green(o, g, r),
    }
}

/// How one instance stands in the roll.
struct Member<'a> {
    i: &'a GroupInstance,
    /// In its group's target group (None: not listed).
    target: Option<&'a TargetStatus>,
    /// In the idle target group (rolling canary).
    canary: Option<&'a TargetStatus>,
}

impl Member<'_> {
    fn health(&self) -> Option<&TargetHealth> {
        self.target.map(|t| &t.health)
    }
    fn listed(&self) -> bool {
        self.target.is_some() || self.canary.is_some()
    }
    fn serving(&self) -> bool {
        self.health() == Some(&TargetHealth::Healthy)
    }
    fn in_service(&self, now: u64, warmup: u64) -> bool {
        self.target
            .is_some_and(|t| t.health == TargetHealth::Healthy && now >= t.since_ms + warmup)
    }
    /// Deregistered (draining or gone from its target group) while its
    /// group still has it in service: on its way out.
    fn taken_out(&self) -> bool {
        self.i.lifecycle == Lifecycle::InService
            && self.canary.is_none()
            && matches!(
                self.health(),
                None | Some(TargetHealth::Unused | TargetHealth::Draining)
            )
    }
}

fn members<'a>(o: &'a Observed, v: &'a GroupView) -> Vec<Member<'a>> {
    v.info
        .instances
        .iter()
        .map(|i| Member {
            i,
            target: Observed::health_in(&v.targets, &i.id),
            canary: if v.info.target_group.as_ref() == Some(&o.idle) {
                None
            } else {
                Observed::health_in(&o.idle_targets, &i.id)
            },
        })
        .collect()
}

/// Drift: the group's desired is neither what the roll last asked for nor
/// what it was before that ask landed.
fn drift(v: &GroupView, r: &Roll) -> Option<Action> {
    let d = v.info.desired;
    if d == r.desired || d == r.desired_prev {
        return None;
    }
    // Their change is relative to what the roll asked for (its surge is
    // not theirs), but whoever asked for instances gets at least one.
    let size = (i64::from(r.size) + i64::from(d) - i64::from(r.desired)).max(i64::from(d.min(1)));
    Some(Action::Adopt {
        size: size as u32,
        desired: d,
    })
}

/// The steps both strategies share on the group where the new image comes
/// up: setup, failures, junk, gates, registration, launches.
enum Step {
    Act(Action),
    /// Instances of the target image, counted.
    Counted {
        new: u32,
        serving: u32,
    },
}

fn bring_up(o: &Observed, g: &Goal, r: &Roll, v: &GroupView, max_needed: u32) -> Step {
    let name = &v.info.name;
    let target = r.target();
    if let Some(a) = drift(v, r) {
        return Step::Act(a);
    }
    let live_count = v
        .info
        .instances
        .iter()
        .filter(|i| i.lifecycle != Lifecycle::Terminating)
        .count() as u32;
    if live_count > v.info.desired {
        // Scaling in to a smaller desired (adopted above): a terminate
        // with decrement now would take one more than that.
        return Step::Act(Action::Wait {
            why: format!("{name} to scale in to {}", v.info.desired),
            until_ms: None,
        });
    }
    if !v.info.hold_launches {
        return Step::Act(Action::Hold {
            group: name.clone(),
            hold: true,
        });
    }
    let want_max = v.info.max.max(max_needed);
    // Every terminate lowers desired, and the group refuses one below its
    // min: a roll back may have to remove a never-served instance while
    // fewer than min-healthy serve. Min-healthy is kept here, counted in
    // service; the group's min is restored when the roll finishes.
    let want_min = 0;
    if (want_min, want_max) != (v.info.min, v.info.max) {
        return Step::Act(Action::Limits {
            group: name.clone(),
            min: want_min,
            max: want_max,
        });
    }
    if v.info.current.image != *target {
        return Step::Act(Action::SetImage {
            group: name.clone(),
            image: target.clone(),
        });
    }
    let ms = members(o, v);
    let bake_running = r.bake_started_ms.is_some() && !r.bake_done;
    // Failures of instances of the target image.
    // Only instances this roll launched can fail it: one that served
    // before (e.g. during `roll scale`) going unhealthy is the group's
    // business (it replaces it), not a failed gate.
    for m in ms
        .iter()
        .filter(|m| &m.i.image == target && m.i.launched_ms >= r.started_ms)
    {
        if m.i.lifecycle == Lifecycle::Terminating {
            continue;
        }
        let failure = if let Some(e) = &m.i.launch_error {
            Some(format!("{}: launch failed: {e}", m.i.id))
        } else if let Some(Probe {
            outcome: out @ GateOutcome::Failed { .. },
            ..
        }) = o.gates.get(&m.i.id)
            && m.i.lifecycle != Lifecycle::InService
        {
            Some(format!("{} failed its gate: {out}", m.i.id))
        } else if m.i.lifecycle == Lifecycle::PendingWait
            && o.now_ms > m.i.launched_ms + g.gate_timeout_ms
            // Judged by a probe after the deadline: one the executor lost
            // (`kill -9`) is taken again first, unless there is nothing to
            // probe.
            && match o.gates.get(&m.i.id) {
                Some(p) => {
                    !p.outcome.is_passed() && p.at_ms > m.i.launched_ms + g.gate_timeout_ms
                }
                None => m.i.address.is_none(),
            }
        {
            let why = match o.gates.get(&m.i.id) {
                Some(Probe {
                    outcome: GateOutcome::NotReady { why },
                    ..
                }) => why.clone(),
                _ => "never probed".into(),
            };
            Some(format!(
                "{} did not pass its gate within {} ms ({why})",
                m.i.id, g.gate_timeout_ms
            ))
        } else if let Some(TargetHealth::Unhealthy { reason }) = m.health() {
            Some(format!(
                "{} failed the balancer's health checks: {reason}",
                m.i.id
            ))
        } else if let Some(t) = m.target.filter(|t| t.health == TargetHealth::Initial)
            && o.now_ms > t.since_ms + g.gate_timeout_ms
        {
            Some(format!(
                "{} did not pass the balancer's health checks within {} ms",
                m.i.id, g.gate_timeout_ms
            ))
        } else if let Some(TargetHealth::Unhealthy { reason }) = m.canary.map(|c| &c.health) {
            Some(format!(
                "{} failed the balancer's health checks during bake time: {reason}",
                m.i.id
            ))
        } else {
            None
        };
        if let Some(why) = failure {
            return Step::Act(match r.phase {
                Phase::Rolling => Action::Rollback {
                    reason: why,
                    requested: false,
                },
                Phase::RollingBack | Phase::Reverting => Action::Fail {
                    why: format!("rolling back to {} failed too: {why}", r.from),
                },
            });
        }
    }
    if bake_running
        && r.phase == Phase::Rolling
        && let Some(s) = &o.shadow
    {
        let diff = if s.errors > 0 {
            Some(format!(
                "shadow comparison: {} of {} mirrored requests failed where the old image answered 200",
                s.errors, s.mirrored
            ))
        } else if g.shadow_strict && s.differing > 0 {
            Some(format!(
                "shadow comparison: {} of {} answers differ from the old image's, and the index did not change",
                s.differing, s.compared
            ))
        } else {
            None
        };
        if let Some(reason) = diff {
            return Step::Act(Action::Rollback {
                reason,
                requested: false,
            });
        }
    }
    // Instances of another image that never served: nothing to drain.
    for m in &ms {
        if &m.i.image != target
            && matches!(m.i.lifecycle, Lifecycle::Pending | Lifecycle::PendingWait)
            && !m.listed()
        {
            return Step::Act(Action::Terminate {
                group: name.clone(),
                instance: m.i.id.clone(),
            });
        }
    }
    let news: Vec<&Member> = ms
        .iter()
        .filter(|m| &m.i.image == target && m.i.lifecycle != Lifecycle::Terminating)
        .collect();
    // Gate probes that are missing or stale.
    let stale: Vec<InstanceId> = news
        .iter()
        .filter(|m| matches!(m.i.lifecycle, Lifecycle::PendingWait | Lifecycle::Pending))
        .filter(|m| m.i.address.is_some())
        .filter(|m| match o.gates.get(&m.i.id) {
            Some(p) if p.outcome.is_passed() => false,
            Some(p) => o.now_ms >= p.at_ms + g.probe_every_ms,
            None => true,
        })
        .map(|m| m.i.id.clone())
        .collect();
    if !stale.is_empty() {
        return Step::Act(Action::Gate {
            group: name.clone(),
            instances: stale,
        });
    }
    // Launch up to size, never beyond size + surge instances.
    let total = v.info.instances.len() as u32;
    let launching = v.info.desired.saturating_sub(live_count);
    let new = news.len() as u32 + launching;
    let k = r
        .size
        .saturating_sub(new)
        .min(max_needed.saturating_sub(total + launching));
    if k > 0 {
        return Step::Act(Action::Launch {
            group: name.clone(),
            desired: v.info.desired + k,
        });
    }
    Step::Counted {
        new: news.len() as u32,
        serving: news.iter().filter(|m| m.serving()).count() as u32,
    }
}

/// Registration of gated instances, the canary and the bake.
fn register_or_bake(
    o: &Observed,
    g: &Goal,
    r: &Roll,
    v: &GroupView,
    canary_tg: Option<&TargetGroupId>,
) -> Option<Action> {
    let target = r.target();
    let ms = members(o, v);
    let gated: Vec<&Member> = ms
        .iter()
        .filter(|m| {
            &m.i.image == target
                && m.i.lifecycle == Lifecycle::PendingWait
                && o.gates.get(&m.i.id).is_some_and(|p| p.outcome.is_passed())
        })
        .collect();
    let bake_wanted = g.bake_ms > 0 && !r.bake_done && r.phase == Phase::Rolling;
    if bake_wanted && let Some(tg) = canary_tg {
        // Rolling: the first gated instance answers mirrored traffic in
        // the idle target group before any new instance takes traffic.
        let canary = ms.iter().find(|m| m.canary.is_some());
        match (canary, r.bake_started_ms) {
            (None, _) => {
                return gated.first().map(|m| Action::Canary {
                    instance: m.i.id.clone(),
                    target_group: tg.clone(),
                });
            }
            (Some(c), None) => {
                return Some(match c.canary.map(|t| &t.health) {
                    Some(TargetHealth::Healthy) => Action::StartBake {
                        target_group: tg.clone(),
                    },
                    _ => Action::Wait {
                        why: format!("canary {} to pass the balancer's health checks", c.i.id),
                        until_ms: c.canary.map(|t| t.since_ms + g.gate_timeout_ms),
                    },
                });
            }
            (Some(_), Some(started)) => {
                let end = started + g.bake_ms;
                return Some(if o.now_ms >= end {
                    Action::EndBake
                } else {
                    Action::Wait {
                        why: "bake time: comparing the canary's answers with the live ones".into(),
                        until_ms: Some(end),
                    }
                });
            }
        }
    }
    // The canary leaves the idle target group once the bake is over.
    if let Some(c) = ms.iter().find(|m| m.canary.is_some()) {
        let t = c.canary.map(|t| &t.health);
        return Some(if t == Some(&TargetHealth::Draining) {
            Action::Drain {
                instance: c.i.id.clone(),
                until_ms: c.canary.map(|t| t.since_ms).unwrap_or(o.now_ms)
                    + o.deregistration_delay_ms,
            }
        } else {
            Action::Deregister {
                instance: c.i.id.clone(),
                target_group: o.idle.clone(),
            }
        });
    }
    gated.first().map(|m| Action::Register {
        group: v.info.name.clone(),
        instance: m.i.id.clone(),
    })
}

fn rolling(o: &Observed, g: &Goal, r: &Roll) -> Action {
    let Some(v) = o.group(&r.group) else {
        return Action::Fail {
            why: format!("group {} is gone", r.group),
        };
    };
    let Some(tg) = v.info.target_group.clone() else {
        return Action::Fail {
            why: format!("group {} has no target group", r.group),
        };
    };
    let n = r.size;
    let s = surge(n, g);
    let m = min_in_service(n, g);
    let target = r.target();
    // A canary needs a target group that takes no client traffic: a
    // listener with one target group gets no bake time (`roll up` always
    // makes two; one made otherwise would wait forever).
    let bake_pending = g.bake_ms > 0 && !r.bake_done && r.phase == Phase::Rolling && o.idle != tg;
    // Done already (the last steps only release the hold and restore the
    // limits, which the setup below would undo).
    if !bake_pending
        && o.idle_targets
            .iter()
            .all(|t| v.info.instance(&t.target.instance).is_none())
        && settled(v, target, n)
        && members(o, v)
            .iter()
            .all(|m| m.in_service(o.now_ms, g.warmup_ms))
    {
        return finish(o, r, v, None, Vec::new());
    }
    // Checked again: an adopted size can leave no room either.
    if r.from != r.to
        && let Some(refuse) = no_room(n, g, bake_pending)
    {
        return refuse;
    }
    let (new, _) = match bring_up(o, g, r, v, n + s) {
        Step::Act(a) => return a,
        Step::Counted { new, serving } => (new, serving),
    };
    let canary_tg = (o.idle != tg).then_some(&o.idle);
    if let Some(a) = register_or_bake(o, g, r, v, canary_tg) {
        return a;
    }
    let ms = members(o, v);
    let in_service = ms
        .iter()
        .filter(|m| m.i.lifecycle != Lifecycle::Terminating && m.in_service(o.now_ms, g.warmup_ms))
        .count() as u32;
    // Members to take out: other images, and new ones beyond size.
    let mut extra_new = new.saturating_sub(n);
    let mut out: Vec<&Member> = Vec::new();
    let mut candidates: Vec<&Member> = ms
        .iter()
        .filter(|m| m.i.lifecycle != Lifecycle::Terminating)
        .collect();
    // Unhealthy first, then not yet healthy, then the oldest.
    candidates.sort_by_key(|m| {
        let rank = match m.health() {
            Some(TargetHealth::Unhealthy { .. }) => 0,
            Some(TargetHealth::Draining) => 1,
            None | Some(TargetHealth::Unused) => 2,
            Some(TargetHealth::Initial) => 3,
            Some(TargetHealth::Healthy) => 4,
        };
        (rank, m.i.launched_ms)
    });
    for c in candidates {
        if &c.i.image != target {
            out.push(c);
        } else if c.canary.is_none() && (extra_new > 0 || c.taken_out()) {
            // Beyond size, or taken out before a roll back made its
            // image the target again: nothing puts it back in service,
            // so it leaves and is replaced.
            extra_new = extra_new.saturating_sub(1);
            out.push(c);
        }
    }
    // Old instances stay until the bake passed, but no more of them than
    // the size: after an adopted smaller size they would leave the canary
    // no room.
    let mut old_beyond_size = out
        .iter()
        .filter(|c| {
            &c.i.image != target
                && !matches!(
                    c.health(),
                    None | Some(TargetHealth::Unused | TargetHealth::Draining)
                )
        })
        .count()
        .saturating_sub(n as usize);
    let mut draining: Option<Action> = None;
    for c in &out {
        match c.health() {
            Some(TargetHealth::Draining) => {
                if draining.is_none() {
                    draining = Some(Action::Drain {
                        instance: c.i.id.clone(),
                        until_ms: c.target.map(|t| t.since_ms).unwrap_or(o.now_ms)
                            + o.deregistration_delay_ms,
                    });
                }
            }
            None | Some(TargetHealth::Unused) => {
                if !c.listed() {
                    if let Some(until_ms) = settling(o, &c.i.id) {
                        draining.get_or_insert(Action::Drain {
                            instance: c.i.id.clone(),
                            until_ms,
                        });
                        continue;
                    }
                    return Action::Terminate {
                        group: r.group.clone(),
                        instance: c.i.id.clone(),
                    };
                }
            }
            Some(_) => {
                if bake_pending && &c.i.image != target {
                    if old_beyond_size == 0 {
                        continue;
                    }
                    old_beyond_size -= 1;
                }
                // One that takes traffic leaves only while enough others
                // count, even if it does not count itself yet (warming up):
                // else all the old ones, healthy but not warmed up, could
                // leave at once.
                if !c.serving() || in_service > m {
                    return Action::Deregister {
                        instance: c.i.id.clone(),
                        target_group: tg.clone(),
                    };
                }
            }
        }
    }
    if let Some(d) = draining {
        return d;
    }
    // Terminating instances on their way out.
    let leaving = v
        .info
        .instances
        .iter()
        .any(|i| i.lifecycle == Lifecycle::Terminating);
    let done = out.is_empty()
        && !leaving
        && new == n
        && v.info.desired == n
        && ms.iter().all(|m| m.in_service(o.now_ms, g.warmup_ms));
    if !done {
        return Action::Wait {
            why: waiting_for(o, g, &ms, target),
            until_ms: next_deadline(o, g, &ms),
        };
    }
    finish(o, r, v, None, Vec::new())
}

/// Release the hold, restore the limits, clear the record.
fn finish(
    o: &Observed,
    r: &Roll,
    v: &GroupView,
    standby: Option<Standby>,
    schedule: Vec<(GroupName, Option<cloud::ScheduledDesired>)>,
) -> Action {
    if v.info.hold_launches {
        return Action::Hold {
            group: v.info.name.clone(),
            hold: false,
        };
    }
    let want = (r.min_orig.min(r.size), r.max_orig.max(r.size));
    if (v.info.min, v.info.max) != want {
        return Action::Limits {
            group: v.info.name.clone(),
            min: want.0,
            max: want.1,
        };
    }
    let outcome = match r.phase {
        Phase::Rolling => Outcome::RolledOut,
        Phase::RollingBack => Outcome::RolledBack,
        Phase::Reverting => Outcome::Reverted,
    };
    let previous = match (outcome, r.from != r.to) {
        (Outcome::RolledOut, true) => Some(r.from.clone()),
        _ => o.record.previous.clone(),
    };
    Action::Finish {
        outcome,
        standby,
        previous,
        schedule,
    }
}

fn blue_green(o: &Observed, g: &Goal, r: &Roll) -> Action {
    let n = r.size;
    let Some(idle) = o.group(&r.group) else {
        return match r.phase {
            Phase::Rolling => Action::CreateGroup {
                group: r.group.clone(),
                image: r.to.clone(),
                target_group: o.idle.clone(),
                max: n,
            },
            // Nothing was ever created: rolling back is done.
            Phase::RollingBack | Phase::Reverting => Action::Finish {
                outcome: if r.phase == Phase::Reverting {
                    Outcome::Reverted
                } else {
                    Outcome::RolledBack
                },
                standby: o.record.standby.clone(),
                previous: o.record.previous.clone(),
                schedule: Vec::new(),
            },
        };
    };
    let Some(idle_tg) = idle.info.target_group.clone() else {
        return Action::Fail {
            why: format!("group {} has no target group", r.group),
        };
    };
    let switched = idle_tg == o.forward;
    if switched && r.phase != Phase::Rolling {
        // Switched, then `roll back` before the roll finished: the set it
        // left (kept and health-checked) serves again, then the new one
        // goes away as if never switched.
        let old = o.groups.iter().find(|v| v.info.name != r.group);
        return match old.and_then(|v| Some((v, v.info.target_group.clone()?))) {
            Some((v, tg)) if standby_ready(v, &r.from) => Action::Switch { target_group: tg },
            Some((v, _)) => Action::Wait {
                why: format!("{} to be healthy again to switch back to", v.info.name),
                until_ms: None,
            },
            None => Action::Fail {
                why: format!("nothing to switch back to: only {} is left", r.group),
            },
        };
    }
    if switched {
        // The new set serves; the old one becomes the standby.
        let old = o.groups.iter().find(|v| v.info.name != r.group);
        let until = o.now_ms + g.keep_ms;
        let mut schedule = vec![(r.group.clone(), None)];
        let standby = old.map(|v| {
            schedule.push((
                v.info.name.clone(),
                Some(cloud::ScheduledDesired {
                    at_ms: until,
                    desired: 0,
                }),
            ));
            Standby {
                group: v.info.name.clone(),
                image: r.from.clone(),
                until_ms: until,
            }
        });
        return finish(o, r, idle, standby, schedule);
    }
    if r.phase != Phase::Rolling {
        // Never switched: the idle set goes away, the live one never
        // stopped serving.
        return scale_to_zero(o, r, idle, &idle_tg).unwrap_or_else(|| Action::Finish {
            outcome: if r.phase == Phase::Reverting {
                Outcome::Reverted
            } else {
                Outcome::RolledBack
            },
            standby: None,
            previous: o.record.previous.clone(),
            schedule: vec![(r.group.clone(), None)],
        });
    }
    if o.record
        .standby
        .as_ref()
        .is_some_and(|s| s.group == r.group)
    {
        return Action::DropStandby;
    }
    let serving = match bring_up(o, g, r, idle, n) {
        Step::Act(a) => return a,
        Step::Counted { serving, .. } => serving,
    };
    if let Some(a) = register_or_bake(o, g, r, idle, None) {
        return a;
    }
    // Instances of the old image left in the idle group (a standby being
    // replaced): out of the idle target group, then gone.
    let ms = members(o, idle);
    for m in &ms {
        if m.i.image != r.to && m.i.lifecycle != Lifecycle::Terminating {
            return take_out(o, m, &r.group, &idle_tg);
        }
    }
    // Every target healthy, draining ones gone too: the set the
    // executor is willing to switch to.
    let all_in = serving == n
        && ms
            .iter()
            .filter(|m| m.i.lifecycle != Lifecycle::Terminating)
            .all(|m| m.in_service(o.now_ms, g.warmup_ms))
        && idle
            .targets
            .iter()
            .all(|t| t.health == TargetHealth::Healthy);
    if !all_in {
        return Action::Wait {
            why: waiting_for(o, g, &ms, &r.to),
            until_ms: next_deadline(o, g, &ms),
        };
    }
    if g.gate_set
        && let Some(a) = set_gate(o, g, &idle_tg)
    {
        return a;
    }
    if g.bake_ms > 0 && !r.bake_done {
        return match r.bake_started_ms {
            None => Action::StartBake {
                target_group: idle_tg,
            },
            Some(started) if o.now_ms >= started + g.bake_ms => Action::EndBake,
            Some(started) => Action::Wait {
                why: "bake time: comparing the new set's answers with the live ones".into(),
                until_ms: Some(started + g.bake_ms),
            },
        };
    }
    if let Some(a) = canary_step(o, g, &idle_tg) {
        return a;
    }
    Action::Switch {
        target_group: idle_tg,
    }
}

/// The canary steps before the switch (`--canary`): each one recorded,
/// asked of the listener, then held for the bake time (at least one
/// probe interval) while the new set is watched like before — unhealthy
/// or an alarm rolls back, with the weights back to the live set. `None`
/// once the last step was held: the switch.
fn canary_step(o: &Observed, g: &Goal, idle_tg: &TargetGroupId) -> Option<Action> {
    let asked = o.record.canary;
    if g.canary.is_empty() && asked.is_none_or(|c| c.percent == 0) {
        return None;
    }
    let weigh = |percent| Action::Weigh {
        target_group: idle_tg.clone(),
        percent,
    };
    let at = asked.map_or(0, |c| c.percent);
    if at > 0 && o.canary != at {
        // Recorded, never landed (killed in between): ask again.
        return Some(weigh(at));
    }
    if let Some(c) = asked.filter(|c| c.percent > 0) {
        let until = c.since_ms + g.bake_ms.max(g.probe_every_ms);
        if o.now_ms < until {
            return Some(Action::Wait {
                why: format!(
                    "canary: {}% of new requests on the new set, watching it",
                    c.percent
                ),
                until_ms: Some(until),
            });
        }
    }
    g.canary
        .iter()
        .find(|&&p| p > at && p < 100)
        .map(|&p| weigh(p))
}

/// The new set's gate through the test listener, before bake time and
/// the switch: probe it (again, once the last probe is stale), roll back
/// when it failed or is still not ready after the gate timeout; `None`
/// once it passed.
fn set_gate(o: &Observed, g: &Goal, idle_tg: &TargetGroupId) -> Option<Action> {
    let probe = || Action::GateSet {
        target_group: idle_tg.clone(),
    };
    let Some(p) = &o.set_gate else {
        return Some(probe());
    };
    match &p.outcome {
        GateOutcome::Passed => None,
        GateOutcome::Failed { .. } => Some(Action::Rollback {
            reason: format!(
                "the new set failed its gate through the test listener: {}",
                p.outcome
            ),
            requested: false,
        }),
        GateOutcome::NotReady { why } if o.now_ms >= p.first_ms + g.gate_timeout_ms => {
            Some(Action::Rollback {
                reason: format!(
                    "the new set did not pass its gate through the test listener within {} ms: {why}",
                    g.gate_timeout_ms
                ),
                requested: false,
            })
        }
        GateOutcome::NotReady { why } if o.now_ms < p.at_ms + g.probe_every_ms => {
            Some(Action::Wait {
                why: format!("the test listener: {why}"),
                until_ms: Some(p.at_ms + g.probe_every_ms),
            })
        }
        GateOutcome::NotReady { .. } => Some(probe()),
    }
}

/// Until when an instance this run deregistered less than one
/// health-check interval ago must wait before it is terminated (the
/// balancer may drop it sooner than its nodes all stopped routing to it).
fn settling(o: &Observed, id: &InstanceId) -> Option<u64> {
    let until = o.deregistered.get(id)? + o.health_interval_ms;
    (o.now_ms < until).then_some(until)
}

/// The next step of taking one instance out of service for good:
/// deregister it from `tg`, wait out its drain, then terminate it.
fn take_out(o: &Observed, m: &Member, group: &GroupName, tg: &TargetGroupId) -> Action {
    match m.health() {
        Some(TargetHealth::Draining) => Action::Drain {
            instance: m.i.id.clone(),
            until_ms: m.target.map(|t| t.since_ms).unwrap_or(o.now_ms) + o.deregistration_delay_ms,
        },
        None | Some(TargetHealth::Unused) if let Some(until_ms) = settling(o, &m.i.id) => {
            Action::Drain {
                instance: m.i.id.clone(),
                until_ms,
            }
        }
        None | Some(TargetHealth::Unused) => Action::Terminate {
            group: group.clone(),
            instance: m.i.id.clone(),
        },
        Some(_) => Action::Deregister {
            instance: m.i.id.clone(),
            target_group: tg.clone(),
        },
    }
}

/// Takes every instance of `v` out: deregister, drain, terminate. `None`
/// once the group is empty at desired 0.
fn scale_to_zero(o: &Observed, r: &Roll, v: &GroupView, tg: &TargetGroupId) -> Option<Action> {
    if let Some(m) = members(o, v)
        .iter()
        .find(|m| m.i.lifecycle != Lifecycle::Terminating)
    {
        return Some(take_out(o, m, &r.group, tg));
    }
    if v.info.desired > 0 {
        return Some(Action::Launch {
            group: v.info.name.clone(),
            desired: 0,
        });
    }
    if v.info.instances.is_empty() {
        None
    } else {
        Some(Action::Wait {
            why: format!("{} to stop its instances", v.info.name),
            until_ms: None,
        })
    }
}

fn waiting_for(o: &Observed, g: &Goal, ms: &[Member], target: &ImageId) -> String {
    for m in ms {
        if m.i.lifecycle == Lifecycle::Terminating {
            return format!("{} to stop", m.i.id);
        }
        if &m.i.image == target {
            match m.health() {
                None if m.i.lifecycle == Lifecycle::PendingWait => {
                    return format!("{} to pass its gate", m.i.id);
                }
                Some(TargetHealth::Initial) => {
                    return format!("{} to pass the balancer's health checks", m.i.id);
                }
                Some(TargetHealth::Healthy) if !m.in_service(o.now_ms, g.warmup_ms) => {
                    return format!("{} to warm up", m.i.id);
                }
                _ => {}
            }
        }
    }
    "instances to launch".into()
}

/// When something the planner waits on times out (a gate, health checks,
/// warmup), so the executor wakes in time.
fn next_deadline(o: &Observed, g: &Goal, ms: &[Member]) -> Option<u64> {
    ms.iter()
        .filter_map(|m| match m.target {
            None => Some(m.i.launched_ms + g.gate_timeout_ms),
            Some(t) if t.health == TargetHealth::Initial => Some(t.since_ms + g.gate_timeout_ms),
            Some(t) if t.health == TargetHealth::Healthy => Some(t.since_ms + g.warmup_ms),
            _ => None,
        })
        .filter(|&t| t > o.now_ms)
        .min()
}
