//! `roll out --strategy instance-refresh`: the rolling replacement
//! delegated to Auto Scaling's instance refresh
//! ([`cloud::Groups::start_refresh`]), watched to its end with kiln's own
//! gate on top, the same record, lease and report as every roll, and the
//! same `roll back` afterwards.
//!
//! Why a driver of its own rather than planner actions: while a refresh
//! runs, Auto Scaling decides every launch, registration and termination;
//! there is nothing for `plan.rs` to decide step by step, only one thing
//! to start and then watch (`describe_refresh`) until it ends. The
//! planner is still what finishes a refresh that ended half-way (failed,
//! cancelled, a failed rollback): the record's phase turns to
//! `rolling-back` and the executor's rolling steps take the group back to
//! the previous image.
//!
//! Order of writes, so `kill -9` anywhere converges on a rerun:
//! 1. the roll record (strategy `instance-refresh`, phase `rolling`,
//!    from, to) in the group's tags;
//! 2. `start_refresh` (idempotent: a refresh already heading for the same
//!    version is adopted, never a second one started), then its id in
//!    the record (`kiln:roll-refresh`);
//! 3. a rollback decided by kiln (gate, alarm) is recorded (phase
//!    `rolling-back`, the reason) before `rollback_refresh`;
//! 4. at the end the record is cleared, and on success
//!    `kiln:previous-image` names the image rolled from (what `roll back`
//!    returns to, by the rolling path).
//!
//! kiln's gate on top of Auto Scaling's: every instance of the new image
//! must pass kiln's gate (`/ready`, `/version`, golden queries) and be
//! healthy in the group's target group within `--gate-timeout` of its
//! launch, and no `--alarm` may fire (they are also the refresh's
//! `AlarmSpecification`); otherwise the refresh is rolled back
//! (`rollback_refresh`: Auto Scaling restores the previous version and
//! instances).

use std::collections::BTreeMap;
use std::time::Duration;

use cloud::run::Cancel;
use cloud::{
    Cloud, GateOutcome, GateSpec, GroupInfo, ImageId, InstanceId, Lifecycle, RefreshId,
    RefreshSpec, RefreshState, RefreshStatus, Tags, TargetHealth,
};

use crate::error::RollError;
use crate::exec::{ExecOptions, Executor, Progress, Service};
use crate::plan::{Goal, Intent, Outcome};
use crate::record::{Kind, Phase, Record, Roll, Strategy, keys};
use crate::report::{RefreshReport, Report};

/// What `--strategy instance-refresh` asks of the refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions {
    /// Checkpoints (percent replaced) after which it pauses for `delay`.
    pub checkpoints: Vec<u32>,
    pub checkpoint_delay: Duration,
    pub skip_matching: bool,
    /// Watched for alarms after the last replacement (`--bake-time`).
    pub bake: Duration,
}

/// Whether this run is the refresh driver's: `roll out --strategy
/// instance-refresh`, or `roll back` of a refresh's roll.
pub fn applies(intent: &Intent, record: &Record) -> bool {
    match intent {
        Intent::Out { strategy, .. } => *strategy == Strategy::InstanceRefresh,
        Intent::Back { .. } => record
            .roll
            .as_ref()
            .is_some_and(|r| r.strategy == Strategy::InstanceRefresh),
        Intent::Scale { .. } => false,
    }
}

/// `--max-surge` and `--min-healthy` as the refresh's MaxHealthy and
/// MinHealthy percentages of `size`.
pub fn percentages(goal: &Goal, size: u32) -> (u32, u32) {
    let surge = match goal.max_surge {
        crate::plan::Surge::Count(n) => (n * 100).div_ceil(size.max(1)),
        crate::plan::Surge::Percent(p) => p,
    };
    (goal.min_healthy_pct.min(100), (100 + surge).min(200))
}

pub struct RefreshDriver<'a> {
    cloud: &'a Cloud,
    svc: Service,
    goal: Goal,
    opts: RefreshOptions,
    exec_opts: ExecOptions,
    progress: Option<Box<dyn Progress + 'a>>,
    cancel: Cancel,
    gates: BTreeMap<InstanceId, GateOutcome>,
    specs: BTreeMap<ImageId, GateSpec>,
    last_step: String,
    pub report: Report,
}

fn now() -> u64 {
    cloud::time::now_ms()
}

impl<'a> RefreshDriver<'a> {
    pub fn new(
        cloud: &'a Cloud,
        svc: Service,
        goal: Goal,
        opts: RefreshOptions,
        exec_opts: ExecOptions,
        progress: Box<dyn Progress + 'a>,
        cancel: Cancel,
    ) -> RefreshDriver<'a> {
        let report = Report {
            group: svc.group.to_string(),
            roll_id: goal.roll_id.clone(),
            strategy: Strategy::InstanceRefresh.as_str().into(),
            rollback: format!("roll back --group {}", svc.group),
            started_ms: now(),
            ..Report::default()
        };
        RefreshDriver {
            cloud,
            svc,
            goal,
            opts,
            exec_opts,
            progress: Some(progress),
            cancel,
            gates: BTreeMap::new(),
            specs: BTreeMap::new(),
            last_step: String::new(),
            report,
        }
    }

    fn step(&mut self, text: String) {
        if text != self.last_step
            && let Some(p) = &mut self.progress
        {
            p.step(&text);
            self.last_step = text;
        }
    }

    /// Sleeps up to `d`, waking as soon as the run is interrupted.
    async fn pause(&self, d: Duration) -> Result<(), RollError> {
        Ok(self.cancel.pause(d).await?)
    }

    /// Runs the roll to its end.
    pub async fn run(&mut self) -> Result<Outcome, RollError> {
        let result = self.run_inner().await;
        self.report.finished_ms = now();
        self.report.duration_ms = self
            .report
            .finished_ms
            .saturating_sub(self.report.started_ms);
        match &result {
            Ok(o) => self.report.outcome = Some(*o),
            Err(e) => self.report.error = Some(e.to_string()),
        }
        result
    }

    async fn describe(&self) -> Result<GroupInfo, RollError> {
        Ok(self.cloud.groups().describe_group(&self.svc.group).await?)
    }

    async fn write_roll(&self, roll: &Roll, extra: Option<&RefreshId>) -> Result<(), RollError> {
        let mut t = roll.to_tags();
        if let Some(id) = extra {
            t.insert(keys::REFRESH.into(), id.to_string());
        }
        self.cloud
            .groups()
            .tag_group(&self.svc.group, &t, &[])
            .await?;
        Ok(())
    }

    fn note(&mut self, r: &Roll) {
        self.report.from = Some(r.from.clone());
        self.report.to = Some(r.to.clone());
        self.report.instances = r.size;
        if r.phase != Phase::Rolling {
            self.report.reason = r.reason.clone();
        }
    }

    async fn run_inner(&mut self) -> Result<Outcome, RollError> {
        let info = self.describe().await?;
        let record = Record::from_tags(&info.tags);
        let refresh = info.tags.get(keys::REFRESH).map(RefreshId::new);
        match (&self.goal.intent.clone(), record.roll) {
            (Intent::Out { image, .. }, None) => self.begin(&info, image).await,
            (Intent::Out { image, .. }, Some(r))
                if r.kind == Kind::Out
                    && r.strategy == Strategy::InstanceRefresh
                    && &r.to == image =>
            {
                self.resume(r, refresh).await
            }
            (Intent::Out { .. }, Some(r)) => Err(RollError::Usage(format!(
                "roll {} ({} -> {}, {}) is in progress on {}: rerun it (or roll back) first",
                r.id,
                r.from,
                r.to,
                r.strategy.as_str(),
                self.svc.group
            ))),
            (Intent::Back { .. }, Some(mut r)) => {
                if r.phase == Phase::Rolling {
                    r.phase = Phase::Reverting;
                    r.reason = Some(format!(
                        "roll back requested: undoing roll {} ({} -> {})",
                        r.id, r.from, r.to
                    ));
                    self.step(format!(
                        "reverting to {}: rolling back instance refresh {}",
                        r.from,
                        refresh.as_ref().map_or("-", |i| i.as_str())
                    ));
                    self.write_roll(&r, None).await?;
                    if refresh.is_some() {
                        self.ask_rollback().await?;
                    }
                }
                self.resume(r, refresh).await
            }
            _ => Err(RollError::Failed(
                "the instance refresh driver was given a roll it does not run".into(),
            )),
        }
    }

    /// A new roll: the record, then the refresh.
    async fn begin(&mut self, info: &GroupInfo, image: &ImageId) -> Result<Outcome, RollError> {
        let settled = info.current.image == *image
            && info.instances.len() == info.desired as usize
            && info
                .instances
                .iter()
                .all(|i| i.image == *image && i.lifecycle == Lifecycle::InService);
        if settled {
            self.report.to = Some(image.clone());
            self.report.instances = info.desired;
            return Ok(Outcome::NothingToDo);
        }
        let from = if info.current.image != *image {
            info.current.image.clone()
        } else {
            info.instances
                .iter()
                .map(|i| i.image.clone())
                .find(|i| i != image)
                .unwrap_or_else(|| image.clone())
        };
        let size = info.desired.max(1);
        // Refused preferences change nothing: checked before the record.
        cloud::groups::check_refresh_spec(&self.spec(image, size))
            .map_err(|e| RollError::Usage(format!("--strategy instance-refresh: {e}")))?;
        let roll = Roll {
            id: self.goal.roll_id.clone(),
            kind: Kind::Out,
            strategy: Strategy::InstanceRefresh,
            phase: Phase::Rolling,
            from,
            to: image.clone(),
            size,
            desired: info.desired,
            desired_prev: info.desired,
            started_ms: now(),
            bake_started_ms: None,
            bake_done: false,
            reason: None,
            group: self.svc.group.clone(),
            min_orig: info.min,
            max_orig: info.max,
        };
        self.step(format!(
            "{}: {} -> {} (instance refresh, {} instances, roll {})",
            self.svc.group, roll.from, roll.to, roll.size, roll.id
        ));
        // A fresh record: no field of an earlier roll survives.
        let t = roll.to_tags();
        let stale: Vec<String> = keys::ROLL
            .iter()
            .filter(|k| !t.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        self.cloud
            .groups()
            .tag_group(&self.svc.group, &t, &stale)
            .await?;
        self.resume(roll, None).await
    }

    fn spec(&self, image: &ImageId, size: u32) -> RefreshSpec {
        let (min, max) = percentages(&self.goal, size);
        RefreshSpec {
            image: image.clone(),
            min_healthy_pct: min,
            max_healthy_pct: max,
            checkpoints: self.opts.checkpoints.clone(),
            checkpoint_delay_ms: self.opts.checkpoint_delay.as_millis() as u64,
            skip_matching: self.opts.skip_matching,
            alarms: self.svc.alarms.clone(),
            auto_rollback: true,
            warmup_ms: self.goal.warmup_ms,
            bake_ms: self.opts.bake.as_millis() as u64,
        }
    }

    /// Starts the refresh (or adopts the one a killed run started).
    async fn start(&mut self, r: &Roll) -> Result<RefreshId, RollError> {
        let spec = self.spec(&r.to, r.size);
        match self
            .cloud
            .groups()
            .start_refresh(&self.svc.group, &spec)
            .await
        {
            Ok(id) => {
                self.step(format!(
                    "{}: instance refresh {id} to {} (min healthy {}%, max healthy {}%{}{})",
                    self.svc.group,
                    r.to,
                    spec.min_healthy_pct,
                    spec.max_healthy_pct,
                    if spec.checkpoints.is_empty() {
                        String::new()
                    } else {
                        format!(", checkpoints {:?}%", spec.checkpoints)
                    },
                    if spec.skip_matching {
                        ", skipping matching instances"
                    } else {
                        ""
                    }
                ));
                self.write_roll(r, Some(&id)).await?;
                Ok(id)
            }
            Err(e) if e.is_bad_input() => {
                // Refused: nothing started, so nothing to roll back.
                let remove: Vec<String> = keys::ROLL.iter().map(|k| k.to_string()).collect();
                self.cloud
                    .groups()
                    .tag_group(&self.svc.group, &Tags::new(), &remove)
                    .await?;
                Err(RollError::Usage(format!(
                    "the instance refresh was refused: {e}"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn ask_rollback(&mut self) -> Result<(), RollError> {
        match self.cloud.groups().rollback_refresh(&self.svc.group).await {
            Ok(()) => Ok(()),
            // Ended meanwhile: what it ended as decides.
            Err(e) if e.is_bad_input() => {
                tracing::debug!("rollback_refresh: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Watches the roll's refresh (starting it if the record has none yet
    /// and the roll is on its way) to its end, and ends the roll.
    async fn resume(&mut self, mut r: Roll, id: Option<RefreshId>) -> Result<Outcome, RollError> {
        self.note(&r);
        let id = match id {
            Some(id) => id,
            None if r.phase == Phase::Rolling => self.start(&r).await?,
            // Heading back with no refresh recorded: the rolling steps.
            None => return self.by_planner().await,
        };
        self.report.refresh.get_or_insert_with(|| RefreshReport {
            id: id.to_string(),
            history: Vec::new(),
        });
        let status = loop {
            self.cancel.check()?;
            let s = self
                .cloud
                .groups()
                .describe_refresh(&self.svc.group, &id)
                .await?;
            self.saw(&s);
            if s.state.is_done() {
                break s;
            }
            if r.phase == Phase::Rolling {
                if let Some(why) = self.gate(&r).await? {
                    self.step(format!("ROLLING BACK to {}: {why}", r.from));
                    r.phase = Phase::RollingBack;
                    r.reason = Some(why);
                    self.note(&r);
                    self.write_roll(&r, None).await?;
                    self.ask_rollback().await?;
                    continue;
                }
            } else if s.state != RefreshState::RollbackInProgress
                && s.state != RefreshState::Cancelling
            {
                // Recorded as heading back, but the ask was lost (a kill
                // right after the record): ask again.
                self.ask_rollback().await?;
            }
            self.pause(self.exec_opts.poll).await?;
        };
        let reason = |s: &RefreshStatus| {
            s.reason
                .clone()
                .unwrap_or_else(|| format!("instance refresh {} ended {}", s.id, s.state.as_str()))
        };
        match (status.state, r.phase) {
            (RefreshState::Successful, Phase::Rolling) => {
                self.finish(Some(r.from.clone())).await?;
                self.step(format!(
                    "{}: instance refresh {id} successful: every instance runs {}",
                    self.svc.group, r.to
                ));
                Ok(Outcome::RolledOut)
            }
            (RefreshState::RollbackSuccessful, phase) => {
                if r.reason.is_none() {
                    r.reason = Some(reason(&status));
                }
                self.report.reason = r.reason.clone();
                if let Some(why) = &status.reason
                    && r.reason.as_deref() != Some(why)
                {
                    self.report.reason = Some(format!(
                        "{}; the refresh says: {why}",
                        r.reason.as_deref().unwrap_or_default()
                    ));
                }
                self.finish(None).await?;
                self.step(format!(
                    "{}: instance refresh {id} rolled back: every instance runs {}",
                    self.svc.group, r.from
                ));
                Ok(if phase == Phase::Reverting {
                    Outcome::Reverted
                } else {
                    Outcome::RolledBack
                })
            }
            // Ended half-way (failed, cancelled, a failed rollback), or it
            // succeeded after kiln decided against it: the rolling steps
            // take the group back to the previous image.
            (state, phase) => {
                if phase == Phase::Rolling {
                    r.phase = Phase::RollingBack;
                    r.reason = Some(reason(&status));
                }
                self.step(format!(
                    "{}: instance refresh {id} ended {state}: rolling back to {} by kiln's rolling steps",
                    self.svc.group, r.from
                ));
                self.note(&r);
                self.write_roll(&r, None).await?;
                self.by_planner().await
            }
        }
    }

    fn saw(&mut self, s: &RefreshStatus) {
        let at = now();
        if let Some(rep) = &mut self.report.refresh {
            rep.saw(at, s);
        }
        self.step(format!(
            "{}: instance refresh {} {} {}%, {} instances to update{}",
            self.svc.group,
            s.id,
            s.state,
            s.percent_complete,
            s.instances_to_update,
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }

    /// kiln's gate over the refresh's new instances and the alarms: why
    /// the refresh must go back, if it must.
    async fn gate(&mut self, r: &Roll) -> Result<Option<String>, RollError> {
        if !self.svc.alarms.is_empty() {
            let firing = self.cloud.probes().alarms_firing(&self.svc.alarms).await?;
            if let Some(a) = firing.first() {
                return Ok(Some(format!("alarm {a} is in ALARM")));
            }
        }
        let info = self.describe().await?;
        let targets = match &info.target_group {
            Some(tg) => self.cloud.lbs().targets(tg).await?,
            None => Vec::new(),
        };
        let spec = match self.specs.get(&r.to) {
            Some(s) => s.clone(),
            None => {
                let m = self.cloud.images().manifest(&r.to).await?;
                let s = GateSpec::from_manifest(&r.to, &m);
                self.specs.insert(r.to.clone(), s.clone());
                s
            }
        };
        let t = now();
        for i in info
            .instances
            .iter()
            .filter(|i| i.image == r.to && i.lifecycle != Lifecycle::Terminating)
        {
            if !self.gates.get(&i.id).is_some_and(|g| g.is_passed()) {
                let outcome = self.cloud.probes().gate(i, &spec).await?;
                self.report.gate(now(), &i.id, &i.image, &outcome);
                match &outcome {
                    GateOutcome::Passed => self.step(format!(
                        "{}: gate passed ({} golden queries)",
                        i.id,
                        spec.golden.len()
                    )),
                    GateOutcome::Failed { .. } => {
                        return Ok(Some(format!("{}: gate failed: {outcome}", i.id)));
                    }
                    GateOutcome::NotReady { .. } => {}
                }
                self.gates.insert(i.id.clone(), outcome);
            }
            let passed = self.gates.get(&i.id).is_some_and(|g| g.is_passed());
            let health = targets
                .iter()
                .find(|x| x.target.instance == i.id)
                .map(|x| &x.health);
            let healthy = info.target_group.is_none() || health == Some(&TargetHealth::Healthy);
            if passed && healthy {
                continue;
            }
            if t.saturating_sub(i.launched_ms) > self.goal.gate_timeout_ms {
                let why = match (passed, health) {
                    (false, _) => match self.gates.get(&i.id) {
                        Some(g) => format!("{g}"),
                        None => "no gate answer".into(),
                    },
                    (true, Some(h)) => format!("{h:?} in its target group"),
                    (true, None) => "not in its target group".into(),
                };
                return Ok(Some(format!(
                    "{} did not pass its gate and the balancer's health checks within {} ms \
                     of its launch: {why}",
                    i.id, self.goal.gate_timeout_ms
                )));
            }
        }
        Ok(None)
    }

    /// Clears the record; `previous`: what `roll back` returns to.
    async fn finish(&mut self, previous: Option<ImageId>) -> Result<(), RollError> {
        let mut set = Tags::new();
        if let Some(p) = previous {
            set.insert(keys::PREVIOUS.into(), p.to_string());
        }
        let remove: Vec<String> = keys::ROLL.iter().map(|k| k.to_string()).collect();
        self.cloud
            .groups()
            .tag_group(&self.svc.group, &set, &remove)
            .await?;
        Ok(())
    }

    /// The executor's rolling steps, from the record as it stands
    /// (heading back to the previous image).
    async fn by_planner(&mut self) -> Result<Outcome, RollError> {
        struct Quiet;
        impl Progress for Quiet {
            fn step(&mut self, _: &str) {}
        }
        let progress = self.progress.take().unwrap_or_else(|| Box::new(Quiet));
        let mut exec = Executor::new(
            self.cloud,
            self.svc.clone(),
            self.goal.clone(),
            self.exec_opts.clone(),
            progress,
            self.cancel.clone(),
        );
        let result = exec.run().await;
        let e = exec.report;
        self.report.timeline.extend(e.timeline);
        self.report.gates.extend(e.gates);
        self.report.traffic = e.traffic.or(self.report.traffic.take());
        if self.report.reason.is_none() {
            self.report.reason = e.reason;
        }
        result
    }
}
