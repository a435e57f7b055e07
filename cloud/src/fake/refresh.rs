//! The fake's instance refresh: Auto Scaling's managed replacement on the
//! fake's clock, as small as roll's tests need it to be real.
//!
//! - Which instances it replaces is fixed at the start: every live one,
//!   or with `skip_matching` those not running the desired image.
//! - A batch at a time. With `max_healthy_pct` above 100 the group grows
//!   by `desired * (max - 100)%` (at least 1) of new instances first, and
//!   once they are ready as many old ones are terminated with decrement;
//!   at 100 it terminates `desired - ceil(desired * min%)` (at least 1) old
//!   ones and the group replaces them. Old ones go as the group's
//!   scale-in would pick them (not in service, other images, oldest).
//! - New instances launch from the desired version (the group keeps
//!   naming its own until the refresh succeeds). One is ready when it is
//!   in service, healthy in the group's target group and has been so for
//!   the warmup; the next batch starts only then.
//! - It fails when a new instance fails the group's launch check, turns
//!   unhealthy, or is not ready within [`HEALTH_TIMEOUT_MS`], or when one
//!   of its alarms fires (the fake's scripted alarms) while it is in
//!   progress or baking.
//! - A checkpoint below 100% pauses it for the checkpoint delay once that
//!   share is replaced; after the last batch it bakes for `bake_ms`
//!   (alarms still fail it), then succeeds: the group names the desired
//!   version from then on.
//! - Failing with `auto_rollback` (or `rollback_refresh`) turns it around:
//!   `RollbackInProgress`, the instances not on the previous image
//!   replaced the same way from the previous version, then
//!   `RollbackSuccessful`; the group never stopped naming that version.
//!   Without, it is `Failed` where it stood. `cancel_refresh`: `Cancelled`
//!   where it stood (the fake skips `Cancelling`).

use std::collections::BTreeSet;

use super::{Group, World, not_found};
use crate::error::{CloudError, Result};
use crate::groups::{
    Lifecycle, RefreshId, RefreshSpec, RefreshState, RefreshStatus, ScaleInCandidate,
    TemplateVersion, scale_in_victims,
};
use crate::ids::{GroupName, InstanceId};
use crate::lb::TargetHealth;

/// A new instance not ready this long after its launch fails the refresh.
pub const HEALTH_TIMEOUT_MS: u64 = 600_000;

pub(super) struct Refresh {
    pub id: RefreshId,
    pub group: GroupName,
    pub spec: RefreshSpec,
    pub state: RefreshState,
    pub reason: Option<String>,
    /// The version the group named at the start, and the desired one.
    pub from: TemplateVersion,
    pub to: TemplateVersion,
    /// Desired at the start (the group returns to it after a surge).
    pub desired: u32,
    /// The instances to replace (the start's, or the rollback's).
    pub replace: BTreeSet<InstanceId>,
    pub total: u32,
    pub checkpoints_passed: usize,
    pub paused_until: Option<u64>,
    pub bake_until: Option<u64>,
    /// When it next needs a look without anything else happening.
    pub wake_ms: u64,
    /// Its last look (alarms firing after it are due events).
    pub looked_ms: u64,
}

impl Refresh {
    pub fn active(&self) -> bool {
        !self.state.is_done()
    }

    fn rolling_back(&self) -> bool {
        self.state == RefreshState::RollbackInProgress
    }

    /// The version instances launch from now.
    pub fn launch_from(&self) -> &TemplateVersion {
        if self.rolling_back() {
            &self.from
        } else {
            &self.to
        }
    }

    pub fn status(&self, w: &World) -> RefreshStatus {
        let left = self.left(w).len() as u32;
        let percent = match self.state {
            RefreshState::Successful | RefreshState::Baking => 100,
            _ if self.total == 0 => 100,
            _ => (self.total - left.min(self.total)) * 100 / self.total,
        };
        RefreshStatus {
            id: self.id.clone(),
            state: self.state,
            percent_complete: percent,
            instances_to_update: if self.state.is_done() { 0 } else { left },
            reason: self.reason.clone(),
        }
    }

    /// Instances still to replace (live ones of `replace`).
    fn left(&self, w: &World) -> Vec<InstanceId> {
        let Some(g) = w.groups.get(&self.group) else {
            return Vec::new();
        };
        g.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating && self.replace.contains(&i.id))
            .map(|i| i.id.clone())
            .collect()
    }

    /// When its next due look is (for [`World::next_due`]).
    pub fn due(&self, w: &World) -> u64 {
        if !self.active() {
            return u64::MAX;
        }
        let alarm = self
            .spec
            .alarms
            .iter()
            .filter_map(|a| w.alarms.get(a).copied().flatten())
            .filter(|t| *t > self.looked_ms)
            .min()
            .unwrap_or(u64::MAX);
        self.wake_ms.min(alarm)
    }
}

impl World {
    pub(super) fn refresh_mut(&mut self, name: &GroupName) -> Option<&mut Refresh> {
        self.refreshes
            .iter_mut()
            .rev()
            .find(|r| &r.group == name && r.active())
    }

    pub(super) fn start_refresh(
        &mut self,
        name: &GroupName,
        spec: &RefreshSpec,
        now: u64,
    ) -> Result<RefreshId> {
        crate::groups::check_refresh_spec(spec)?;
        if !self.images.contains_key(&spec.image) {
            return Err(not_found("image", &spec.image));
        }
        for a in &spec.alarms {
            if !self.alarms.contains_key(a) {
                return Err(CloudError::invalid("alarm", format!("{a}: no such alarm")));
            }
        }
        let g = self.group(name)?;
        if let Some(r) = self
            .refreshes
            .iter()
            .rev()
            .find(|r| &r.group == name && r.active())
        {
            if r.to.image == spec.image {
                return Ok(r.id.clone());
            }
            return Err(CloudError::invalid(
                "instance refresh",
                format!(
                    "InstanceRefreshInProgress: refresh {} of group {name} (to {}) is in progress",
                    r.id, r.to.image
                ),
            ));
        }
        let newest = g
            .previous
            .iter()
            .map(|v| v.version)
            .chain([g.current.version])
            .max()
            .unwrap_or(0);
        let to = if g.current.image == spec.image {
            g.current.clone()
        } else {
            TemplateVersion {
                version: newest + 1,
                image: spec.image.clone(),
                created_unix: now / 1000,
            }
        };
        let replace: BTreeSet<InstanceId> = g
            .instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .filter(|i| !spec.skip_matching || i.image != spec.image)
            .map(|i| i.id.clone())
            .collect();
        let (from, desired) = (g.current.clone(), g.desired);
        self.next_refresh += 1;
        let id = RefreshId::new(format!(
            "{:08x}-fake-refresh-{:04}",
            self.next_refresh, self.next_refresh
        ));
        let r = Refresh {
            id: id.clone(),
            group: name.clone(),
            spec: spec.clone(),
            state: RefreshState::InProgress,
            reason: None,
            from,
            to,
            desired,
            total: replace.len() as u32,
            replace,
            checkpoints_passed: 0,
            paused_until: None,
            bake_until: None,
            wake_ms: now,
            looked_ms: now.saturating_sub(1),
        };
        self.refreshes.push(r);
        Ok(id)
    }

    pub(super) fn describe_refresh(
        &self,
        name: &GroupName,
        id: &RefreshId,
    ) -> Result<RefreshStatus> {
        self.group(name)?;
        self.refreshes
            .iter()
            .find(|r| &r.group == name && &r.id == id)
            .map(|r| r.status(self))
            .ok_or_else(|| not_found("instance refresh", id))
    }

    pub(super) fn cancel_refresh(&mut self, name: &GroupName) -> Result<()> {
        self.group(name)?;
        let Some(r) = self.refresh_mut(name) else {
            return Ok(());
        };
        r.state = RefreshState::Cancelled;
        r.reason = Some("cancelled (CancelInstanceRefresh)".into());
        let desired = r.desired;
        if let Some(g) = self.groups.get_mut(name) {
            g.desired = desired.clamp(g.min, g.max);
        }
        Ok(())
    }

    pub(super) fn rollback_refresh(&mut self, name: &GroupName, now: u64) -> Result<()> {
        self.group(name)?;
        let Some(r) = self.refresh_mut(name) else {
            return Err(CloudError::invalid(
                "instance refresh",
                format!("ActiveInstanceRefreshNotFound: group {name} has no refresh in progress"),
            ));
        };
        if r.rolling_back() {
            return Ok(());
        }
        let id = r.id.clone();
        self.turn_back(
            &id,
            "rollback requested (RollbackInstanceRefresh)".into(),
            now,
        );
        Ok(())
    }

    /// The refresh fails: rolls back (auto rollback, or asked), or stops
    /// where it stands.
    fn fail_refresh(&mut self, id: &RefreshId, reason: String, now: u64) {
        let Some(r) = self.refreshes.iter_mut().find(|r| &r.id == id) else {
            return;
        };
        if r.spec.auto_rollback && !r.rolling_back() {
            self.turn_back(id, reason, now);
            return;
        }
        r.state = if r.rolling_back() {
            RefreshState::RollbackFailed
        } else {
            RefreshState::Failed
        };
        r.reason = Some(reason);
        let (name, desired) = (r.group.clone(), r.desired);
        if let Some(g) = self.groups.get_mut(&name) {
            g.desired = desired.clamp(g.min, g.max);
        }
    }

    fn turn_back(&mut self, id: &RefreshId, reason: String, now: u64) {
        let Some(r) = self.refreshes.iter().find(|r| &r.id == id) else {
            return;
        };
        let from = r.from.image.clone();
        let replace: BTreeSet<InstanceId> = self
            .groups
            .get(&r.group)
            .map(|g| {
                g.instances
                    .iter()
                    .filter(|i| i.lifecycle != Lifecycle::Terminating && i.image != from)
                    .map(|i| i.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let Some(r) = self.refreshes.iter_mut().find(|r| &r.id == id) else {
            return;
        };
        r.state = RefreshState::RollbackInProgress;
        r.reason = Some(reason);
        r.total = replace.len() as u32;
        r.replace = replace;
        r.paused_until = None;
        r.bake_until = None;
        r.wake_ms = now;
    }

    /// Moves every active refresh on as far as it can go at `now`.
    pub(super) fn refresh_tick(&mut self, now: u64) {
        let ids: Vec<RefreshId> = self
            .refreshes
            .iter()
            .filter(|r| r.active())
            .map(|r| r.id.clone())
            .collect();
        for id in ids {
            self.tick_one(&id, now);
        }
    }

    fn tick_one(&mut self, id: &RefreshId, now: u64) {
        let Some(pos) = self.refreshes.iter().position(|r| &r.id == id) else {
            return;
        };
        let name = {
            let r = &mut self.refreshes[pos];
            r.wake_ms = u64::MAX;
            r.looked_ms = now;
            r.group.clone()
        };
        let Some(g) = self.groups.get(&name) else {
            let r = &mut self.refreshes[pos];
            r.state = RefreshState::Failed;
            r.reason = Some(format!("group {name} is gone"));
            return;
        };
        let r = &self.refreshes[pos];
        // Alarms fail a refresh on its way (not one rolling back).
        if !r.rolling_back()
            && let Some(a) = r.spec.alarms.iter().find(|a| {
                self.alarms
                    .get(*a)
                    .copied()
                    .flatten()
                    .is_some_and(|t| t <= now)
            })
        {
            let why = format!("alarm {a} is in ALARM");
            self.fail_refresh(id, why, now);
            return self.tick_again(id, now);
        }
        if r.state == RefreshState::Baking {
            match r.bake_until {
                Some(until) if now < until => self.refreshes[pos].wake_ms = until,
                _ => self.succeed(id),
            }
            return;
        }
        if let Some(until) = r.paused_until {
            if now < until {
                self.refreshes[pos].wake_ms = until;
                return;
            }
            let r = &mut self.refreshes[pos];
            r.paused_until = None;
            r.reason = None;
        }
        let r = &self.refreshes[pos];
        let target = r.launch_from().image.clone();
        let tg = g.target_group.clone();
        // The new instances: launched for this refresh (not to replace).
        let mut waiting_until = u64::MAX;
        for i in g
            .instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating && !r.replace.contains(&i.id))
        {
            let health = tg.as_ref().and_then(|tg| {
                self.target_statuses(tg)
                    .ok()?
                    .into_iter()
                    .find(|t| t.target.instance == i.id)
            });
            if let Some(e) = &i.launch_error {
                let why = format!("instance {} failed its launch check: {e}", i.id);
                self.fail_refresh(id, why, now);
                return self.tick_again(id, now);
            }
            if let Some(TargetHealth::Unhealthy { reason }) = health.as_ref().map(|t| &t.health) {
                let why = format!("instance {} failed its health checks: {reason}", i.id);
                self.fail_refresh(id, why, now);
                return self.tick_again(id, now);
            }
            let healthy_since = match (&tg, &health) {
                _ if i.lifecycle != Lifecycle::InService => None,
                (None, _) => Some(i.launched_ms),
                (Some(_), Some(t)) if t.health == TargetHealth::Healthy => Some(t.since_ms),
                _ => None,
            };
            match healthy_since {
                Some(s) if s.saturating_add(r.spec.warmup_ms) <= now => {}
                Some(s) => waiting_until = waiting_until.min(s.saturating_add(r.spec.warmup_ms)),
                None => {
                    let deadline = i.launched_ms.saturating_add(HEALTH_TIMEOUT_MS);
                    if deadline <= now {
                        let why = format!(
                            "instance {} was not healthy within {} s of its launch",
                            i.id,
                            HEALTH_TIMEOUT_MS / 1000
                        );
                        self.fail_refresh(id, why, now);
                        return self.tick_again(id, now);
                    }
                    waiting_until = waiting_until.min(deadline);
                }
            }
        }
        if waiting_until != u64::MAX {
            self.refreshes[pos].wake_ms = waiting_until;
            return;
        }
        let left = r.left(self);
        let done = r.total - (left.len() as u32).min(r.total);
        let percent = (done * 100).checked_div(r.total).unwrap_or(100);
        if !r.rolling_back()
            && let Some(&c) = r.spec.checkpoints.get(r.checkpoints_passed)
            && c < 100
            && percent >= c
        {
            let until = now.saturating_add(r.spec.checkpoint_delay_ms).max(now + 1);
            let r = &mut self.refreshes[pos];
            r.checkpoints_passed += 1;
            r.paused_until = Some(until);
            r.reason = Some(format!(
                "paused at checkpoint {c}% ({percent}% replaced) for {} s",
                r.spec.checkpoint_delay_ms / 1000
            ));
            r.wake_ms = until;
            return;
        }
        let live = g.live();
        let desired = r.desired;
        let surge = r.spec.max_healthy_pct > 100;
        if left.is_empty() {
            // Done once the replaced ones are gone too (drained, stopped).
            if g.instances.iter().any(|i| r.replace.contains(&i.id)) {
                return;
            }
            if live > desired
                && let Some(g) = self.groups.get_mut(&name)
            {
                g.desired = desired;
            }
            if self.refreshes[pos].rolling_back() {
                let r = &mut self.refreshes[pos];
                r.state = RefreshState::RollbackSuccessful;
            } else if r.spec.bake_ms > 0 {
                let until = now.saturating_add(r.spec.bake_ms);
                let r = &mut self.refreshes[pos];
                r.state = RefreshState::Baking;
                r.bake_until = Some(until);
                r.wake_ms = until;
            } else {
                self.succeed(id);
            }
            return;
        }
        let victims = |g: &Group, n: usize| {
            scale_in_victims(
                g.instances
                    .iter()
                    .filter(|i| r.replace.contains(&i.id))
                    .map(|i| ScaleInCandidate {
                        id: &i.id,
                        lifecycle: i.lifecycle,
                        image: &i.image,
                        launched_ms: i.launched_ms,
                    }),
                &target,
                n,
            )
        };
        if surge && live > desired {
            // The surge is ready: as many old ones go.
            let out = victims(g, (live - desired) as usize);
            if let Some(g) = self.groups.get_mut(&name) {
                g.desired = desired;
            }
            for v in out {
                self.terminate(&name, &v, now);
            }
        } else if surge {
            let b = (desired * (r.spec.max_healthy_pct - 100) / 100).max(1);
            let b = b.min(left.len() as u32);
            if let Some(g) = self.groups.get_mut(&name) {
                g.desired = desired + b;
            }
        } else {
            let keep = (desired * r.spec.min_healthy_pct).div_ceil(100);
            let b = desired.saturating_sub(keep).max(1).min(left.len() as u32);
            for v in victims(g, b as usize) {
                self.terminate(&name, &v, now);
            }
        }
    }

    /// After a failure turned it around: look again at once.
    fn tick_again(&mut self, id: &RefreshId, now: u64) {
        if let Some(r) = self.refreshes.iter_mut().find(|r| &r.id == id)
            && r.active()
        {
            r.wake_ms = now;
        }
    }

    fn succeed(&mut self, id: &RefreshId) {
        let Some(r) = self.refreshes.iter_mut().find(|r| &r.id == id) else {
            return;
        };
        r.state = RefreshState::Successful;
        r.reason = None;
        let (name, to) = (r.group.clone(), r.to.clone());
        if let Some(g) = self.groups.get_mut(&name)
            && g.current != to
        {
            let old = std::mem::replace(&mut g.current, to);
            g.previous.insert(0, old);
            g.failed_launches = 0;
        }
    }

    /// The version `name` launches from now: an active refresh's, else
    /// its own.
    pub(super) fn launch_version(&self, name: &GroupName) -> Option<TemplateVersion> {
        self.refreshes
            .iter()
            .rev()
            .find(|r| &r.group == name && r.active())
            .map(|r| r.launch_from().clone())
    }
}
