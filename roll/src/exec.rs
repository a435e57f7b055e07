//! The executor: observe the backend, ask the planner, run its one action,
//! observe again — until the planner says done. Everything a later run
//! needs is written to the backend (the record in the group's tags) before
//! the change it describes, so `kill -9` at any point followed by the same
//! command converges; the only state here is what can be rebuilt by
//! looking again (gate probes, the report).
//!
//! The executor holds the group's lease for its whole run: a second roll
//! of the same group fails with `Busy` naming this one.

use std::collections::BTreeMap;
use std::time::Duration;

use cloud::run::Cancel;
use cloud::{
    Cloud, GateSpec, GroupName, GroupSpec, ImageId, InstanceId, LbCounters, ListenerId, ShadowSpec,
    Tags, Target, TargetGroupId, TargetHealth, tags,
};

use crate::error::RollError;
use crate::plan::{Action, Goal, GroupView, Observed, Outcome, Probe, SetProbe, plan};
use crate::record::{Canary, Phase, Record, Roll, keys};
use crate::report::Report;

/// The service a roll changes: the group named on the command line, its
/// blue/green twin, and their listener.
#[derive(Debug, Clone)]
pub struct Service {
    pub group: GroupName,
    pub twin: GroupName,
    pub listener: ListenerId,
    /// The listener's two target groups (live and idle) where the backend
    /// cannot tell them from the listener (aws: from roll.toml or flags);
    /// `None`: the listener's own list.
    pub target_groups: Option<(TargetGroupId, TargetGroupId)>,
    /// Alarms that fail a roll out while they fire (aws: CloudWatch).
    pub alarms: Vec<String>,
    /// A test listener forwarding to the idle target group: blue/green
    /// sets are gated through it before the switch.
    pub test_listener: Option<ListenerId>,
    /// Where roll reaches the test listener (`host:port`) when not at the
    /// balancer's own address (a tunnel, a proxy into the VPC).
    pub test_address: Option<String>,
}

impl Service {
    /// The local layout `roll up` creates: listener `G`, target groups
    /// `G` and `G--b`, the twin group `G--b`.
    pub fn named(group: &GroupName) -> Service {
        Service {
            twin: twin_of(group),
            listener: ListenerId::new(group.as_str()),
            group: group.clone(),
            target_groups: None,
            alarms: Vec::new(),
            test_listener: None,
            test_address: None,
        }
    }
}

/// The blue/green twin of a group.
pub fn twin_of(group: &GroupName) -> GroupName {
    GroupName::new(format!("{group}--b"))
}

/// What the executor reports as it goes (stderr).
pub trait Progress: Send {
    fn step(&mut self, text: &str);
}

/// Knobs that are the executor's, not the planner's.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Pause between observations while waiting.
    pub poll: Duration,
    /// Share of live GETs mirrored during bake time.
    pub shadow_percent: u32,
}

pub struct Executor<'a> {
    cloud: &'a Cloud,
    svc: Service,
    goal: Goal,
    opts: ExecOptions,
    gates: BTreeMap<InstanceId, Probe>,
    set_gate: Option<SetProbe>,
    /// When this run deregistered each instance.
    deregistered: BTreeMap<InstanceId, u64>,
    specs: BTreeMap<ImageId, GateSpec>,
    /// Every instance seen, with its image (to split traffic by image).
    seen: BTreeMap<InstanceId, ImageId>,
    counters_before: Option<LbCounters>,
    pub report: Report,
    progress: Box<dyn Progress + 'a>,
    cancel: Cancel,
    last_step: String,
}

fn now() -> u64 {
    cloud::time::now_ms()
}

impl<'a> Executor<'a> {
    pub fn new(
        cloud: &'a Cloud,
        svc: Service,
        goal: Goal,
        opts: ExecOptions,
        progress: Box<dyn Progress + 'a>,
        cancel: Cancel,
    ) -> Executor<'a> {
        let report = Report {
            group: svc.group.to_string(),
            roll_id: goal.roll_id.clone(),
            rollback: format!("roll back --group {}", svc.group),
            started_ms: now(),
            ..Report::default()
        };
        Executor {
            cloud,
            svc,
            goal,
            opts,
            gates: BTreeMap::new(),
            set_gate: None,
            deregistered: BTreeMap::new(),
            specs: BTreeMap::new(),
            seen: BTreeMap::new(),
            counters_before: None,
            report,
            progress,
            cancel,
            last_step: String::new(),
        }
    }

    /// Observes everything the planner decides on.
    pub async fn observe(&mut self) -> Result<Observed, RollError> {
        let groups_api = self.cloud.groups();
        let lbs = self.cloud.lbs();
        let service = match groups_api.describe_group(&self.svc.group).await {
            Ok(g) => g,
            Err(e) if e.is_not_found() => {
                return Err(RollError::Usage(format!(
                    "there is no group {} (roll up creates it)",
                    self.svc.group
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let twin = match groups_api.describe_group(&self.svc.twin).await {
            Ok(g) => Some(g),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let listener = match lbs.listener(&self.svc.listener).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                return Err(RollError::Usage(format!(
                    "group {} has no load balancer {} (roll up creates both)",
                    self.svc.group, self.svc.listener
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let pair = match &self.svc.target_groups {
            Some((a, b)) => vec![a.clone(), b.clone()],
            None => listener.target_groups.clone(),
        };
        let record = Record::from_tags(&service.tags);
        // While a canary step splits new requests, the set the roll brings
        // up is not the one it switched to, even where it gets the larger
        // share (or a tie reads as it): the live set is the other one.
        let mut forward = listener.forward.clone();
        if let Some(r) = &record.roll {
            let new_tg = [Some(&service), twin.as_ref()]
                .into_iter()
                .flatten()
                .find(|g| g.name == r.group)
                .and_then(|g| g.target_group.clone());
            if new_tg.as_ref() == Some(&forward)
                && listener.weight_of(&forward) < 100
                && let Some(other) = pair.iter().find(|t| **t != forward)
            {
                forward = other.clone();
            }
        }
        let idle = pair
            .iter()
            .find(|t| **t != forward)
            .cloned()
            .unwrap_or_else(|| forward.clone());
        let canary = if idle == forward {
            0
        } else {
            listener.weight_of(&idle)
        };
        let forward_info = lbs.target_group(&forward).await?;
        let mut views = Vec::new();
        for info in std::iter::once(service).chain(twin) {
            let targets = match &info.target_group {
                Some(tg) => lbs.targets(tg).await?,
                None => Vec::new(),
            };
            for i in &info.instances {
                self.seen.insert(i.id.clone(), i.image.clone());
            }
            views.push(GroupView { info, targets });
        }
        let idle_targets = lbs.targets(&idle).await?;
        let baking = record
            .roll
            .as_ref()
            .is_some_and(|r| r.bake_started_ms.is_some() && !r.bake_done);
        let shadow = if baking {
            match lbs.shadow(&self.svc.listener).await {
                Ok(s) => s,
                // No shadow comparison on this backend.
                Err(e) if e.is_bad_input() => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let alarms = if self.svc.alarms.is_empty() {
            Vec::new()
        } else {
            self.cloud.probes().alarms_firing(&self.svc.alarms).await?
        };
        // Probes of instances that are gone are of no use.
        self.gates
            .retain(|id, _| views.iter().any(|v| v.info.instance(id).is_some()));
        Ok(Observed {
            now_ms: now(),
            service: self.svc.group.clone(),
            groups: views,
            forward,
            idle,
            idle_targets,
            deregistration_delay_ms: forward_info.deregistration_delay_ms,
            record,
            gates: self.gates.clone(),
            shadow,
            alarms,
            set_gate: self.set_gate.clone(),
            canary,
            health_interval_ms: forward_info.health_check.interval_ms,
            deregistered: self.deregistered.clone(),
        })
    }

    /// Sleeps up to `d`, waking as soon as the run is interrupted.
    async fn pause(&self, d: Duration) -> Result<(), RollError> {
        Ok(self.cancel.pause(d).await?)
    }

    fn step(&mut self, text: String) {
        if text != self.last_step {
            self.progress.step(&text);
            self.last_step = text;
        }
    }

    /// Runs the roll to its end.
    pub async fn run(&mut self) -> Result<Outcome, RollError> {
        let result = self.run_inner().await;
        self.report.finished_ms = now();
        self.report.duration_ms = self
            .report
            .finished_ms
            .saturating_sub(self.report.started_ms);
        if let Some(before) = self.counters_before.clone()
            && let Ok(after) = self.cloud.lbs().counters(&self.svc.listener).await
        {
            self.report.traffic(&before, &after, &self.seen);
        }
        match &result {
            Ok(o) => self.report.outcome = Some(*o),
            Err(e) => self.report.error = Some(e.to_string()),
        }
        result
    }

    async fn run_inner(&mut self) -> Result<Outcome, RollError> {
        self.counters_before = match self.cloud.lbs().counters(&self.svc.listener).await {
            Ok(c) => Some(c),
            Err(e) if e.is_bad_input() => None,
            Err(e) => return Err(e.into()),
        };
        loop {
            self.cancel.check()?;
            let o = self.observe().await?;
            if let Some(r) = &o.record.roll {
                self.report.strategy = r.strategy.as_str().into();
                self.report.from = Some(r.from.clone());
                self.report.to = Some(r.to.clone());
                self.report.instances = r.size;
                if r.phase != Phase::Rolling {
                    self.report.reason = r.reason.clone();
                }
            }
            let action = plan(&o, &self.goal);
            tracing::debug!(?action, "planned");
            self.report.action(o.now_ms, &action);
            if let Some(outcome) = self.act(&o, action).await? {
                return Ok(outcome);
            }
        }
    }

    /// The test listener's `host:port`: the configured address, else the
    /// listener's own (plain HTTP only: the gate speaks HTTP/1).
    async fn test_address(&self) -> Result<String, RollError> {
        if let Some(a) = &self.svc.test_address {
            return Ok(a.clone());
        }
        let Some(id) = &self.svc.test_listener else {
            return Err(RollError::Usage(
                "the blue/green gate through a test listener needs --test-listener".into(),
            ));
        };
        let l = self.cloud.lbs().listener(id).await?;
        if l.tls {
            return Err(RollError::Usage(format!(
                "test listener {id} is HTTPS; the gate through it speaks plain HTTP (use an HTTP test listener, or --test-address)"
            )));
        }
        Ok(l.address)
    }

    async fn gate_spec(&mut self, image: &ImageId) -> Result<GateSpec, RollError> {
        if let Some(s) = self.specs.get(image) {
            return Ok(s.clone());
        }
        let m = self.cloud.images().manifest(image).await?;
        let spec = GateSpec::from_manifest(image, &m);
        self.specs.insert(image.clone(), spec.clone());
        Ok(spec)
    }

    async fn write_roll(&self, roll: &Roll) -> Result<(), RollError> {
        self.cloud
            .groups()
            .tag_group(&self.svc.group, &roll.to_tags(), &[])
            .await?;
        Ok(())
    }

    fn target_of(o: &Observed, id: &InstanceId) -> Result<Target, RollError> {
        let port = o
            .groups
            .iter()
            .find_map(|v| v.info.instance(id))
            .and_then(|i| i.address)
            .map(|a| a.port())
            .ok_or_else(|| RollError::Failed(format!("instance {id} has no address")))?;
        Ok(Target {
            instance: id.clone(),
            port,
        })
    }

    /// Runs one action; `Some` when the roll is over.
    async fn act(&mut self, o: &Observed, action: Action) -> Result<Option<Outcome>, RollError> {
        let groups = self.cloud.groups();
        let lbs = self.cloud.lbs();
        let roll = o.record.roll.clone();
        match action {
            Action::Begin { roll } => {
                self.step(format!(
                    "{}: {} -> {} ({}, {} instances, roll {})",
                    self.svc.group,
                    roll.from,
                    roll.to,
                    roll.strategy.as_str(),
                    roll.size,
                    roll.id
                ));
                // A fresh record: no field of an earlier roll survives.
                let mut stale: Vec<String> = keys::ROLL.iter().map(|k| k.to_string()).collect();
                stale.retain(|k| !roll.to_tags().contains_key(k));
                groups
                    .tag_group(&self.svc.group, &roll.to_tags(), &stale)
                    .await?;
            }
            Action::Adopt { size, desired } => {
                let mut r = self.need_roll(roll)?;
                self.step(format!(
                    "{}: someone set desired to {desired}: rolling {size} instances",
                    r.group
                ));
                r.size = size;
                r.desired = desired;
                r.desired_prev = desired;
                self.write_roll(&r).await?;
            }
            Action::CreateGroup {
                group,
                image,
                target_group,
                max,
            } => {
                self.step(format!("{group}: creating the blue/green set"));
                let mut t = Tags::new();
                t.insert(tags::ROLL_GROUP.into(), self.svc.group.to_string());
                groups
                    .create_group(&GroupSpec {
                        name: group.clone(),
                        image,
                        desired: 0,
                        min: 0,
                        max,
                        target_group: Some(target_group),
                        tags: t,
                        // On aws: the same launch template, subnets and
                        // settings as the service group.
                        like: Some(self.svc.group.clone()),
                    })
                    .await?;
                groups.hold_launches(&group, true).await?;
            }
            Action::Hold { group, hold } => groups.hold_launches(&group, hold).await?,
            Action::GateSet { target_group } => {
                let r = self.need_roll(roll)?;
                let address = self.test_address().await?;
                let spec = self.gate_spec(&r.to).await?;
                // Enough rounds that the balancer likely reaches every
                // instance of the set more than once.
                let rounds = 2 * o
                    .group(&r.group)
                    .map_or(1, |v| v.info.instances.len() as u32);
                let outcome = self
                    .cloud
                    .probes()
                    .gate_set(&address, &spec, rounds)
                    .await?;
                let at = now();
                let who = InstanceId::new(format!("test-listener {address}"));
                self.report.gate(at, &who, &r.to, &outcome);
                match &outcome {
                    cloud::GateOutcome::Passed => self.step(format!(
                        "{target_group}: the new set passed its gate through the test listener {address} ({rounds} rounds, {} golden queries each)",
                        spec.golden.len()
                    )),
                    cloud::GateOutcome::Failed { .. } => self.step(format!(
                        "{target_group}: the new set FAILED its gate through the test listener: {outcome}"
                    )),
                    cloud::GateOutcome::NotReady { .. } => {}
                }
                let first_ms = self.set_gate.as_ref().map_or(at, |p| p.first_ms);
                self.set_gate = Some(SetProbe {
                    outcome,
                    at_ms: at,
                    first_ms,
                });
            }
            Action::Limits { group, min, max } => groups.set_limits(&group, min, max).await?,
            Action::SetImage { group, image } => {
                self.step(format!("{group}: new instances launch from {image}"));
                groups.set_image(&group, &image).await?;
            }
            Action::Launch { group, desired } => {
                if let Some(mut r) = roll.filter(|r| r.group == group) {
                    // Recorded before asked: a crash in between reads as
                    // our own ask, not as drift.
                    r.desired_prev = r.desired;
                    r.desired = desired;
                    self.write_roll(&r).await?;
                }
                let from = o.group(&group).map_or(0, |v| v.info.desired);
                self.step(format!("{group}: desired {from} -> {desired}"));
                groups.set_desired(&group, desired).await?;
            }
            Action::Gate { group, instances } => {
                let mut progressed = false;
                for id in instances {
                    let Some(inst) = o.group(&group).and_then(|v| v.info.instance(&id)).cloned()
                    else {
                        continue;
                    };
                    let spec = self.gate_spec(&inst.image).await?;
                    let outcome = self.cloud.probes().gate(&inst, &spec).await?;
                    let at = now();
                    self.report.gate(at, &id, &inst.image, &outcome);
                    match &outcome {
                        cloud::GateOutcome::Passed => {
                            self.step(format!(
                                "{id}: gate passed ({} golden queries)",
                                spec.golden.len()
                            ));
                            progressed = true;
                        }
                        cloud::GateOutcome::Failed { .. } => {
                            self.step(format!("{id}: gate FAILED: {outcome}"));
                            progressed = true;
                        }
                        cloud::GateOutcome::NotReady { .. } => {}
                    }
                    self.gates.insert(id, Probe { outcome, at_ms: at });
                }
                if !progressed {
                    self.pause(
                        self.opts
                            .poll
                            .min(Duration::from_millis(self.goal.probe_every_ms)),
                    )
                    .await?;
                }
            }
            Action::Register { group, instance } => {
                self.step(format!("{instance}: in service"));
                groups.put_in_service(&group, &instance).await?;
            }
            Action::Canary {
                instance,
                target_group,
            } => {
                self.step(format!(
                    "{instance}: canary in {target_group} (mirrored traffic only)"
                ));
                let t = Self::target_of(o, &instance)?;
                lbs.register(&target_group, &[t]).await?;
            }
            Action::StartBake { target_group } => {
                let mut r = self.need_roll(roll)?;
                self.step(format!(
                    "bake time {:.1} s: mirroring {}% of live GETs to {target_group}",
                    self.goal.bake_ms as f64 / 1000.0,
                    self.opts.shadow_percent
                ));
                let started = lbs
                    .start_shadow(
                        &self.svc.listener,
                        &ShadowSpec {
                            target_group: target_group.clone(),
                            percent: self.opts.shadow_percent,
                        },
                    )
                    .await;
                match started {
                    Ok(()) => {}
                    // A balancer that cannot mirror (an ALB): the bake
                    // time still watches the new instances' health.
                    Err(e) if e.is_bad_input() => {
                        self.step(format!("no shadow comparison on this balancer ({e}): the bake time watches {target_group}'s health"))
                    }
                    Err(e) => return Err(e.into()),
                }
                r.bake_started_ms = Some(now());
                self.write_roll(&r).await?;
            }
            Action::EndBake => {
                let mut r = self.need_roll(roll)?;
                match lbs.stop_shadow(&self.svc.listener).await {
                    Ok(shadow) => {
                        self.step(format!(
                            "bake time over: {} mirrored, {} compared, {} differing, {} errors",
                            shadow.mirrored, shadow.compared, shadow.differing, shadow.errors
                        ));
                        self.report.shadow = Some(shadow);
                    }
                    Err(e) if e.is_bad_input() => self.step("bake time over".into()),
                    Err(e) => return Err(e.into()),
                }
                r.bake_done = true;
                self.write_roll(&r).await?;
            }
            Action::Deregister {
                instance,
                target_group,
            } => {
                self.step(format!(
                    "{instance}: deregistered from {target_group}, draining"
                ));
                let t = Self::target_of(o, &instance)?;
                lbs.deregister(&target_group, &[t]).await?;
                self.deregistered.insert(instance, now());
            }
            Action::Drain { until_ms, .. }
            | Action::Wait {
                until_ms: Some(until_ms),
                ..
            } if until_ms <= o.now_ms => {
                self.pause(self.opts.poll.min(Duration::from_millis(10)))
                    .await?;
            }
            Action::Drain { instance, until_ms } => {
                self.step(format!("{instance}: draining"));
                let left = Duration::from_millis(until_ms.saturating_sub(o.now_ms));
                self.pause(self.opts.poll.min(left)).await?;
            }
            Action::Terminate { group, instance } => {
                if let Some(mut r) = roll.filter(|r| r.group == group) {
                    let d = o.group(&group).map_or(0, |v| v.info.desired);
                    r.desired_prev = d;
                    r.desired = d.saturating_sub(1);
                    self.write_roll(&r).await?;
                }
                self.step(format!("{instance}: terminated"));
                groups.terminate_instance(&group, &instance, true).await?;
            }
            Action::Switch { target_group } => {
                if o.record.roll.is_none() {
                    // roll back to the standby: no roll record says what
                    // this is, the groups do.
                    let image_of = |tg: &TargetGroupId| {
                        o.groups
                            .iter()
                            .find(|v| v.info.target_group.as_ref() == Some(tg))
                    };
                    self.report.strategy = "switch".into();
                    self.report.from = image_of(&o.forward).map(|v| v.info.current.image.clone());
                    if let Some(v) = image_of(&target_group) {
                        self.report.to = Some(v.info.current.image.clone());
                        self.report.instances = v.info.instances.len() as u32;
                    }
                }
                // The set taking traffic is no standby (any more).
                if let Some(v) = o
                    .groups
                    .iter()
                    .find(|v| v.info.target_group.as_ref() == Some(&target_group))
                {
                    groups.set_standby(&v.info.name, false).await?;
                }
                self.switch(&target_group).await?;
            }
            Action::Weigh {
                target_group,
                percent,
            } => self.weigh(o, &target_group, percent).await?,
            Action::Rollback { reason, requested } => {
                let mut r = self.need_roll(roll)?;
                self.step(format!(
                    "{} to {}: {reason}",
                    if requested {
                        "reverting"
                    } else {
                        "ROLLING BACK"
                    },
                    r.from
                ));
                r.phase = if requested {
                    Phase::Reverting
                } else {
                    Phase::RollingBack
                };
                r.reason = Some(reason.clone());
                self.report.reason = Some(reason);
                // Recorded before the mirror stops: a shadow's errors are
                // the evidence a rerun would otherwise decide on again.
                self.write_roll(&r).await?;
                if r.bake_started_ms.is_some() && !r.bake_done {
                    // Keep what the shadow saw: it may be the evidence.
                    if let Ok(s) = lbs.stop_shadow(&self.svc.listener).await {
                        self.report.shadow = Some(s);
                    }
                }
            }
            Action::DropStandby => {
                if let Some(sb) = &o.record.standby {
                    self.step(format!("{}: replacing the standby {}", sb.group, sb.image));
                    groups.set_standby(&sb.group, false).await?;
                    groups.schedule_desired(&sb.group, None).await?;
                }
                let remove: Vec<String> = keys::STANDBY_ALL.iter().map(|k| k.to_string()).collect();
                groups
                    .tag_group(&self.svc.group, &Tags::new(), &remove)
                    .await?;
            }
            Action::Finish {
                outcome,
                standby,
                previous,
                schedule,
            } => {
                if let Some(r) = &roll
                    && !r.bake_done
                {
                    // Went back during its bake, or was killed between
                    // starting the mirror and recording it: the mirror may
                    // still run (stopping none is a no-op).
                    match lbs.stop_shadow(&self.svc.listener).await {
                        Ok(s) if r.bake_started_ms.is_some() || !s.target_group.is_empty() => {
                            self.report.shadow.get_or_insert(s);
                        }
                        Ok(_) => {}
                        Err(e) if e.is_bad_input() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                for (group, s) in &schedule {
                    groups.schedule_desired(group, *s).await?;
                }
                // The kept set launches nothing and no policy scales it
                // until it is switched back to or replaced.
                if let Some(sb) = &standby {
                    groups.set_standby(&sb.group, true).await?;
                }
                let mut set = Tags::new();
                let mut remove: Vec<String> = keys::ROLL.iter().map(|k| k.to_string()).collect();
                match &standby {
                    Some(sb) => set.extend(sb.to_tags()),
                    None => remove.extend(keys::STANDBY_ALL.iter().map(|k| k.to_string())),
                }
                if let Some(p) = &previous {
                    set.insert(keys::PREVIOUS.into(), p.to_string());
                }
                groups.tag_group(&self.svc.group, &set, &remove).await?;
                if let Some(sb) = &standby {
                    self.step(format!(
                        "{}: standby on {} until {} (roll back switches to it)",
                        sb.group,
                        sb.image,
                        cloud::time::rfc3339(sb.until_ms / 1000)
                    ));
                }
                return Ok(Some(outcome));
            }
            Action::Wait { why, until_ms } => {
                self.step(format!("waiting for {why}"));
                let left = until_ms
                    .map(|u| Duration::from_millis(u.saturating_sub(o.now_ms)))
                    .unwrap_or(self.opts.poll);
                self.pause(self.opts.poll.min(left)).await?;
            }
            Action::Done { outcome } => return Ok(Some(outcome)),
            Action::Refuse { why } => return Err(RollError::Usage(why)),
            Action::Fail { why } => return Err(RollError::Failed(why)),
        }
        Ok(None)
    }

    fn need_roll(&self, roll: Option<Roll>) -> Result<Roll, RollError> {
        roll.ok_or_else(|| {
            RollError::Failed("the roll record vanished from the group's tags".into())
        })
    }

    /// A canary step: recorded, then asked of the listener — a share for
    /// the new set only after checking once more, right now, that every
    /// one of its targets is healthy (an ALB fails open).
    async fn weigh(
        &mut self,
        o: &Observed,
        tg: &TargetGroupId,
        percent: u32,
    ) -> Result<(), RollError> {
        let lbs = self.cloud.lbs();
        if percent > 0 {
            let targets = lbs.targets(tg).await?;
            let healthy = targets
                .iter()
                .filter(|t| t.health == TargetHealth::Healthy)
                .count();
            if healthy == 0 || healthy != targets.len() {
                self.pause(self.opts.poll).await?;
                return Ok(());
            }
        }
        // Recorded before asked: a rerun after `kill -9` asks again, and
        // `roll back` knows there is a share to take back.
        let step = Canary {
            percent,
            since_ms: now(),
        };
        self.cloud
            .groups()
            .tag_group(&self.svc.group, &step.to_tags(), &[])
            .await?;
        let from = o.canary;
        self.step(if percent == 0 {
            format!(
                "{}: canary over, every new request back on {} (was {from}% on {tg})",
                self.svc.listener, o.forward
            )
        } else {
            format!(
                "{}: canary {percent}% of new requests to {tg} (was {from}%), watching it for {:.1} s",
                self.svc.listener,
                self.goal.bake_ms.max(self.goal.probe_every_ms) as f64 / 1000.0
            )
        });
        lbs.set_weights(&self.svc.listener, tg, percent).await?;
        self.report.canary_step(step.since_ms, tg, percent);
        Ok(())
    }

    /// Switches the listener, after checking once more, right now, that
    /// every target of the new set is healthy.
    async fn switch(&mut self, tg: &TargetGroupId) -> Result<(), RollError> {
        let lbs = self.cloud.lbs();
        let targets = lbs.targets(tg).await?;
        let healthy = targets
            .iter()
            .filter(|t| t.health == TargetHealth::Healthy)
            .count();
        if healthy == 0 || healthy != targets.len() {
            // Observed healthy a moment ago: look again.
            self.pause(self.opts.poll).await?;
            return Ok(());
        }
        let start = tokio::time::Instant::now();
        lbs.switch(&self.svc.listener, tg).await?;
        let ms = start.elapsed().as_millis() as u64;
        self.report.switch_ms = Some(ms);
        self.step(format!(
            "{}: switched to {tg} ({healthy} healthy targets) in {ms} ms",
            self.svc.listener
        ));
        Ok(())
    }
}
