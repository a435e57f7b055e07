//! Groups: a set of identical instances launched from one image, kept at a
//! desired size (aws: an Auto Scaling group with a launch template; local:
//! instances the fleet daemon supervises). `roll` drives these; `bake
//! prune` reads them to keep images in use.
//!
//! The model is Auto Scaling's, so one planner serves both backends:
//! - The group launches from its current template version until it has
//!   `desired` instances, and replaces one that dies.
//! - A new instance is [`Lifecycle::Pending`] until the group's own launch
//!   check passes, then [`Lifecycle::InService`]: registered in the group's
//!   target group. While launches are *held* ([`Groups::hold_launches`], an
//!   Auto Scaling launch lifecycle hook), new instances wait in
//!   [`Lifecycle::PendingWait`] instead, until the holder (a roll that gates
//!   them itself) calls [`Groups::put_in_service`] or terminates them.
//! - Roll keeps its state in the group's tags ([`Groups::tag_group`]), never
//!   only in its own process, and serialises itself with a lease
//!   ([`Groups::acquire_lease`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{CloudError, Result};
use crate::ids::{GroupName, ImageId, InstanceId, Tags, TargetGroupId};
use crate::instances::InstanceState;

/// One launch-template version: which image new instances boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u64,
    pub image: ImageId,
    pub created_unix: u64,
}

/// Where an instance is in its group's life cycle (Auto Scaling's states,
/// reduced to the ones a roll decides on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Launched; the group's own launch check has not passed yet. Not in
    /// the target group.
    Pending,
    /// Launches are held: waits for [`Groups::put_in_service`] (or a
    /// terminate). Not in the target group.
    PendingWait,
    /// In service: registered in the group's target group.
    InService,
    /// Being stopped; gone from [`GroupInfo::instances`] once stopped.
    Terminating,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pending => "pending",
            Lifecycle::PendingWait => "pending-wait",
            Lifecycle::InService => "in-service",
            Lifecycle::Terminating => "terminating",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInstance {
    pub id: InstanceId,
    /// The image it actually runs (on aws, compare this, not the template
    /// version the group reports).
    pub image: ImageId,
    pub state: InstanceState,
    pub lifecycle: Lifecycle,
    /// Where it serves (local: its loopback address; aws: its private IP
    /// and the service port).
    pub address: Option<SocketAddr>,
    /// When it was launched, Unix ms ([`crate::time::now_ms`]).
    pub launched_ms: u64,
    /// Why the group's own launch check refused it, if it did (it then
    /// stays `Pending`, out of service, until someone terminates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_error: Option<String>,
}

/// The group's size set to `desired` at `at_ms` (aws: a scheduled action;
/// roll uses it to stop a blue/green standby when its window ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledDesired {
    pub at_ms: u64,
    pub desired: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: GroupName,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// The version new instances launch from.
    pub current: TemplateVersion,
    /// Earlier versions, newest first (rollback targets).
    pub previous: Vec<TemplateVersion>,
    /// Every instance not yet stopped, oldest launch first.
    pub instances: Vec<GroupInstance>,
    /// Where in-service instances are registered.
    pub target_group: Option<TargetGroupId>,
    #[serde(default)]
    pub tags: Tags,
    /// New instances wait in [`Lifecycle::PendingWait`].
    #[serde(default)]
    pub hold_launches: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledDesired>,
}

impl GroupInfo {
    pub fn instance(&self, id: &InstanceId) -> Option<&GroupInstance> {
        self.instances.iter().find(|i| &i.id == id)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub name: GroupName,
    pub image: ImageId,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub target_group: Option<TargetGroupId>,
    /// Applied at creation.
    #[serde(default)]
    pub tags: Tags,
    /// Launch everything else (aws: launch template, subnets, health-check
    /// settings) like this existing group: how roll makes a blue/green
    /// twin. Backends that need nothing more ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<GroupName>,
}

impl GroupSpec {
    /// A group of `desired` instances whose limits are exactly that size.
    pub fn fixed(name: GroupName, image: ImageId, desired: u32) -> GroupSpec {
        GroupSpec {
            name,
            image,
            desired,
            min: desired,
            max: desired,
            target_group: None,
            tags: Tags::new(),
            like: None,
        }
    }
}

/// An instance refresh's id (aws: the `InstanceRefreshId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RefreshId(pub String);

impl RefreshId {
    pub fn new(s: impl Into<String>) -> RefreshId {
        RefreshId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RefreshId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`Groups::start_refresh`] asks Auto Scaling's managed replacement
/// for (aws: `StartInstanceRefresh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshSpec {
    /// The desired configuration: the group's launch template at a
    /// numeric version launching this image, made for it (as
    /// [`Groups::set_image`] makes one) but not yet named by the group:
    /// the refresh points the group there when it succeeds, and a
    /// rollback leaves (or puts) it on the version it had.
    pub image: ImageId,
    /// In service during the refresh, percent of desired (0..=100).
    pub min_healthy_pct: u32,
    /// At most, percent of desired (100..=200; above 100 new instances
    /// launch before old ones go).
    pub max_healthy_pct: u32,
    /// Pause when this share of the instances is replaced (ascending,
    /// each 1..=100).
    pub checkpoints: Vec<u32>,
    pub checkpoint_delay_ms: u64,
    /// Leave instances that already run the desired configuration.
    pub skip_matching: bool,
    /// CloudWatch alarms that fail the refresh while in ALARM.
    pub alarms: Vec<String>,
    /// On failure (or [`Groups::rollback_refresh`]), the group goes back
    /// to its previous configuration and instances by itself.
    pub auto_rollback: bool,
    /// A new instance counts as in service this long after it is.
    pub warmup_ms: u64,
    /// After the last replacement, alarms are watched this long before
    /// the refresh succeeds (`Baking`).
    pub bake_ms: u64,
}

/// Auto Scaling's instance refresh statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefreshState {
    Pending,
    InProgress,
    Baking,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

impl RefreshState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshState::Pending => "Pending",
            RefreshState::InProgress => "InProgress",
            RefreshState::Baking => "Baking",
            RefreshState::Successful => "Successful",
            RefreshState::Failed => "Failed",
            RefreshState::Cancelling => "Cancelling",
            RefreshState::Cancelled => "Cancelled",
            RefreshState::RollbackInProgress => "RollbackInProgress",
            RefreshState::RollbackSuccessful => "RollbackSuccessful",
            RefreshState::RollbackFailed => "RollbackFailed",
        }
    }

    pub fn parse(s: &str) -> Option<RefreshState> {
        use RefreshState as S;
        [
            S::Pending,
            S::InProgress,
            S::Baking,
            S::Successful,
            S::Failed,
            S::Cancelling,
            S::Cancelled,
            S::RollbackInProgress,
            S::RollbackSuccessful,
            S::RollbackFailed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Over: nothing more happens to the group because of it.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            RefreshState::Successful
                | RefreshState::Failed
                | RefreshState::Cancelled
                | RefreshState::RollbackSuccessful
                | RefreshState::RollbackFailed
        )
    }
}

impl std::fmt::Display for RefreshState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One look at an instance refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    pub id: RefreshId,
    pub state: RefreshState,
    pub percent_complete: u32,
    pub instances_to_update: u32,
    /// Why it failed, was cancelled or rolled back (Auto Scaling's
    /// `StatusReason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who holds a group's lease: enough for another process to name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// The roll id.
    pub id: String,
    pub pid: u32,
    pub host: String,
    /// The command line, shortened.
    pub command: String,
    pub since_ms: u64,
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, `{}`, since {})",
            self.id,
            self.pid,
            self.host,
            self.command,
            crate::time::rfc3339(self.since_ms / 1000)
        )
    }
}

/// A held lease. Dropping it releases the lease (a process killed with
/// `kill -9` releases it too: locally the kernel drops its lock; on aws it
/// expires).
#[async_trait]
pub trait Lease: Send + Sync {
    fn holder(&self) -> &LeaseHolder;
    /// Extends an expiring lease; a no-op where leases do not expire.
    async fn renew(&self) -> Result<()>;
}

#[async_trait]
pub trait Groups: Send + Sync {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>>;

    /// [`crate::CloudError::NotFound`] if there is no such group.
    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo>;

    /// Creates the group, which starts launching. Idempotent: a group of
    /// that name is returned as it is.
    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo>;

    /// Makes `image` the group's desired image: a new template version
    /// (aws: a new launch-template version with the full launch data,
    /// referenced by number). Running instances are not touched.
    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion>;

    /// [`crate::CloudError::Invalid`] outside `min..=max`.
    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()>;

    /// Changes the size limits (desired is clamped into them).
    async fn set_limits(&self, name: &GroupName, min: u32, max: u32) -> Result<()>;

    /// Terminates one member (deregistered from the target group first,
    /// without waiting: drain before you call this); `decrement` lowers
    /// desired with it (else the group replaces it). Idempotent.
    async fn terminate_instance(
        &self,
        name: &GroupName,
        id: &InstanceId,
        decrement: bool,
    ) -> Result<()>;

    /// Deletes the group and terminates its instances. Idempotent.
    async fn delete_group(&self, name: &GroupName) -> Result<()>;

    /// Sets the tags in `set` and removes the keys in `remove`, in one
    /// call.
    async fn tag_group(&self, name: &GroupName, set: &Tags, remove: &[String]) -> Result<()>;

    /// While held, new instances wait in [`Lifecycle::PendingWait`] for
    /// [`Groups::put_in_service`] instead of going in service on their own.
    async fn hold_launches(&self, name: &GroupName, hold: bool) -> Result<()>;

    /// Puts a waiting instance in service: it is registered in the group's
    /// target group. Idempotent for an instance already in service.
    async fn put_in_service(&self, name: &GroupName, id: &InstanceId) -> Result<()>;

    /// Sets (or with `None` cancels) a scheduled change of desired size.
    async fn schedule_desired(
        &self,
        name: &GroupName,
        scheduled: Option<ScheduledDesired>,
    ) -> Result<()>;

    /// Marks a blue/green standby (or, with `false`, a group taking
    /// traffic again): while it is one, the group launches nothing and no
    /// scaling policy moves it, so the kept set stays as it was for `roll
    /// back`; its instances stay registered and health-checked, and its
    /// scheduled stop at the window's end still runs. aws: Launch,
    /// AddToLoadBalancer, AlarmNotification and AZRebalance suspended
    /// (Terminate and ScheduledActions are not). The local fleet has no
    /// scaling policies and keeps replacing a dead standby instance, which
    /// keeps the set whole for a switch back: no-op there. Idempotent.
    async fn set_standby(&self, _name: &GroupName, _standby: bool) -> Result<()> {
        Ok(())
    }

    /// Takes the group's lease for `holder`, or fails with
    /// [`crate::CloudError::Busy`] naming the live holder. A dead holder's
    /// lease is taken over.
    async fn acquire_lease(&self, name: &GroupName, holder: &LeaseHolder)
    -> Result<Box<dyn Lease>>;

    /// Whether this backend has Auto Scaling's instance refresh (the
    /// `refresh` methods below answer `Unsupported` where it does not).
    fn has_instance_refresh(&self) -> bool {
        false
    }

    /// Starts an instance refresh of the group towards `spec.image`
    /// (making the launch-template version for it; the group keeps its
    /// own until the refresh succeeds). Idempotent: with a refresh to the
    /// same image already in progress, answers that one's id.
    async fn start_refresh(&self, _name: &GroupName, _spec: &RefreshSpec) -> Result<RefreshId> {
        Err(CloudError::Unsupported {
            // aws and the fake implement refreshes: the local fleet is
            // the backend these defaults speak for.
            backend: "local",
            op: "instance refresh (Auto Scaling's managed replacement: use --strategy rolling)",
        })
    }

    /// [`crate::CloudError::NotFound`] if the group has no such refresh.
    async fn describe_refresh(&self, _name: &GroupName, _id: &RefreshId) -> Result<RefreshStatus> {
        Err(CloudError::Unsupported {
            backend: "local",
            op: "instance refresh",
        })
    }

    /// Stops the group's refresh in progress where it is (replaced
    /// instances stay). Idempotent: no refresh in progress is `Ok`.
    async fn cancel_refresh(&self, _name: &GroupName) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: "local",
            op: "instance refresh",
        })
    }

    /// Stops the group's refresh in progress and rolls it back: the
    /// previous configuration, and instances launched from it.
    /// [`crate::CloudError::Invalid`] when none is in progress.
    async fn rollback_refresh(&self, _name: &GroupName) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: "local",
            op: "instance refresh",
        })
    }
}

/// The size rules every backend's group keeps (Auto Scaling's checks):
/// `min <= desired <= max` at creation.
pub fn check_spec_size(spec: &GroupSpec) -> Result<()> {
    if spec.min > spec.max || spec.desired < spec.min || spec.desired > spec.max {
        return Err(CloudError::invalid(
            "group size",
            format!(
                "desired {} must lie within min {} ..= max {}",
                spec.desired, spec.min, spec.max
            ),
        ));
    }
    Ok(())
}

/// A new desired size must lie within the group's limits.
pub fn check_desired(name: &GroupName, desired: u32, min: u32, max: u32) -> Result<()> {
    if desired < min || desired > max {
        return Err(CloudError::invalid(
            "desired size",
            format!("{desired} for group {name} is outside its limits {min}..={max}"),
        ));
    }
    Ok(())
}

pub fn check_limits(min: u32, max: u32) -> Result<()> {
    if min > max {
        return Err(CloudError::invalid(
            "size limits",
            format!("min {min} is above max {max}"),
        ));
    }
    Ok(())
}

/// Desired after a terminate with decrement, refused below min.
pub fn decremented(name: &GroupName, desired: u32, min: u32) -> Result<u32> {
    match desired.checked_sub(1) {
        Some(d) if d >= min => Ok(d),
        _ => Err(CloudError::invalid(
            "terminate",
            format!(
                "decrementing group {name} to {} would go below its min {min}",
                desired.saturating_sub(1)
            ),
        )),
    }
}

/// A refresh's preferences as Auto Scaling checks them (every backend
/// checks them first).
pub fn check_refresh_spec(spec: &RefreshSpec) -> Result<()> {
    let bad = |why: String| Err(CloudError::invalid("instance refresh", why));
    if spec.min_healthy_pct > 100 {
        return bad(format!(
            "MinHealthyPercentage {} is above 100",
            spec.min_healthy_pct
        ));
    }
    if !(100..=200).contains(&spec.max_healthy_pct) {
        return bad(format!(
            "MaxHealthyPercentage {} lies outside 100..=200",
            spec.max_healthy_pct
        ));
    }
    if spec.max_healthy_pct - spec.min_healthy_pct > 100 {
        return bad(format!(
            "MaxHealthyPercentage {} and MinHealthyPercentage {} are more than 100 apart",
            spec.max_healthy_pct, spec.min_healthy_pct
        ));
    }
    if spec.min_healthy_pct == 100 && spec.max_healthy_pct == 100 {
        return bad(
            "MinHealthyPercentage and MaxHealthyPercentage of 100 leave no room to replace an \
             instance"
                .into(),
        );
    }
    let mut last = 0;
    for &c in &spec.checkpoints {
        if c == 0 || c > 100 || c <= last {
            return bad(format!(
                "CheckpointPercentages {:?} must ascend within 1..=100",
                spec.checkpoints
            ));
        }
        last = c;
    }
    Ok(())
}

/// One instance as [`scale_in_victims`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct ScaleInCandidate<'a> {
    pub id: &'a InstanceId,
    pub lifecycle: Lifecycle,
    pub image: &'a ImageId,
    pub launched_ms: u64,
}

/// The `n` instances a group stops first when it has more than desired:
/// those not in service, then those not on the `current` image, then the
/// oldest (Auto Scaling's default termination policy, reduced to what a
/// roll sees). Terminating ones are not candidates. Pure; every backend's
/// group uses it.
pub fn scale_in_victims<'a>(
    candidates: impl IntoIterator<Item = ScaleInCandidate<'a>>,
    current: &ImageId,
    n: usize,
) -> Vec<InstanceId> {
    let mut order: Vec<(bool, bool, u64, &InstanceId)> = candidates
        .into_iter()
        .filter(|c| c.lifecycle != Lifecycle::Terminating)
        .map(|c| {
            (
                c.lifecycle == Lifecycle::InService,
                c.image == current,
                c.launched_ms,
                c.id,
            )
        })
        .collect();
    order.sort();
    order
        .into_iter()
        .take(n)
        .map(|(_, _, _, id)| id.clone())
        .collect()
}

/// Why each image is in use by a group roll manages: its current
/// launch-template version, its instances, the `rollback_versions`
/// versions before (the rollback window), the image `roll back` returns
/// to, and a blue/green standby. `bake prune` never deletes these; `bake
/// list` shows them.
pub fn image_uses(
    groups: &[GroupInfo],
    rollback_versions: usize,
) -> BTreeMap<ImageId, Vec<String>> {
    let mut uses: BTreeMap<ImageId, Vec<String>> = BTreeMap::new();
    let mut add = |image: &ImageId, why: String| {
        if !image.as_str().is_empty() {
            let v = uses.entry(image.clone()).or_default();
            if !v.contains(&why) {
                v.push(why);
            }
        }
    };
    for g in groups {
        let name = &g.name;
        add(
            &g.current.image,
            format!("{name}: version {} (current)", g.current.version),
        );
        let mut running: BTreeMap<&ImageId, usize> = BTreeMap::new();
        for i in &g.instances {
            *running.entry(&i.image).or_default() += 1;
        }
        for (image, n) in running {
            add(
                image,
                format!("{name}: {n} instance{}", if n == 1 { "" } else { "s" }),
            );
        }
        for v in g.previous.iter().take(rollback_versions) {
            add(
                &v.image,
                format!("{name}: version {} (rollback window)", v.version),
            );
        }
        if let Some(p) = g.tags.get(crate::tags::PREVIOUS_IMAGE) {
            add(
                &ImageId::new(p.clone()),
                format!("{name}: roll back target"),
            );
        }
        if let Some(s) = g.tags.get(crate::tags::STANDBY_IMAGE) {
            let until = g
                .tags
                .get(crate::tags::STANDBY_UNTIL)
                .and_then(|u| u.parse::<u64>().ok())
                .map(|ms| format!(" until {}", crate::time::rfc3339(ms / 1000)))
                .unwrap_or_default();
            add(
                &ImageId::new(s.clone()),
                format!("{name}: blue/green standby{until}"),
            );
        }
    }
    uses
}

/// The images [`image_uses`] names.
pub fn protected_images(groups: &[GroupInfo], rollback_versions: usize) -> BTreeSet<ImageId> {
    image_uses(groups, rollback_versions).into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64, img: &str) -> TemplateVersion {
        TemplateVersion {
            version: n,
            image: ImageId::from(img),
            created_unix: n,
        }
    }

    #[test]
    fn image_uses_name_every_reason_an_image_is_kept() {
        let inst = |id: &str, img: &str| GroupInstance {
            id: InstanceId::new(id.to_owned()),
            image: ImageId::from(img),
            lifecycle: Lifecycle::InService,
            state: crate::InstanceState::Running,
            address: None,
            launched_ms: 0,
            launch_error: None,
        };
        let mut tags = Tags::new();
        tags.insert(crate::tags::PREVIOUS_IMAGE.into(), "img-back".into());
        tags.insert(crate::tags::STANDBY_IMAGE.into(), "img-standby".into());
        tags.insert(crate::tags::STANDBY_UNTIL.into(), "86400000".into());
        let g = GroupInfo {
            name: GroupName::from("web"),
            desired: 2,
            min: 0,
            max: 3,
            current: v(5, "img-5"),
            previous: vec![v(4, "img-4"), v(3, "img-3"), v(2, "img-2")],
            instances: vec![
                inst("i-1", "img-5"),
                inst("i-2", "img-5"),
                inst("i-3", "img-odd"),
            ],
            target_group: None,
            tags,
            hold_launches: false,
            scheduled: None,
        };
        let uses = image_uses(std::slice::from_ref(&g), 2);
        let of = |img: &str| uses.get(&ImageId::from(img)).cloned().unwrap_or_default();
        assert_eq!(
            of("img-5"),
            vec!["web: version 5 (current)", "web: 2 instances"]
        );
        assert_eq!(of("img-odd"), vec!["web: 1 instance"]);
        assert_eq!(of("img-4"), vec!["web: version 4 (rollback window)"]);
        assert_eq!(of("img-3"), vec!["web: version 3 (rollback window)"]);
        assert!(of("img-2").is_empty(), "beyond the window");
        assert_eq!(of("img-back"), vec!["web: roll back target"]);
        assert_eq!(
            of("img-standby"),
            vec!["web: blue/green standby until 1970-01-02T00:00:00Z"]
        );
        assert_eq!(
            protected_images(&[g], 2).len(),
            6,
            "every image named, nothing else"
        );
    }

    #[test]
    fn scale_in_takes_the_unserving_the_outdated_then_the_oldest() {
        let ids: Vec<InstanceId> = (0..4).map(|n| InstanceId::new(format!("i-{n}"))).collect();
        let (old, new) = (ImageId::from("old"), ImageId::from("new"));
        let c = |n: usize, lifecycle, image, launched_ms| ScaleInCandidate {
            id: &ids[n],
            lifecycle,
            image,
            launched_ms,
        };
        let all = [
            c(0, Lifecycle::InService, &new, 1),
            c(1, Lifecycle::InService, &old, 5),
            c(2, Lifecycle::PendingWait, &new, 9),
            c(3, Lifecycle::Terminating, &old, 0),
        ];
        let v = scale_in_victims(all, &new, 3);
        assert_eq!(v, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    }

    #[test]
    fn keeps_current_instances_and_window() {
        let g = GroupInfo {
            name: GroupName::from("web"),
            desired: 1,
            min: 1,
            max: 1,
            current: v(4, "d"),
            previous: vec![v(3, "c"), v(2, "b"), v(1, "a")],
            instances: vec![GroupInstance {
                id: InstanceId::from("i-1"),
                image: ImageId::from("x"),
                state: InstanceState::Running,
                lifecycle: Lifecycle::InService,
                address: None,
                launched_ms: 0,
                launch_error: None,
            }],
            target_group: None,
            tags: Tags::new(),
            hold_launches: false,
            scheduled: None,
        };
        let keep: Vec<String> = protected_images(&[g], 2).into_iter().map(|i| i.0).collect();
        assert_eq!(keep, vec!["b", "c", "d", "x"]);
    }
}
