//! Groups as Auto Scaling groups (`GroupName` = the group's name) with a
//! launch template, instances as EC2 instances.
//!
//! **Versions by number.** A group must name a numeric launch-template
//! version: `$Latest` and `$Default` change meaning whenever anyone makes a
//! version, so a rollback to "the previous version" could silently launch
//! the wrong image. [`GroupInfo::current`] is the version the group names,
//! [`GroupInfo::previous`] the template's earlier versions (up to
//! [`PREVIOUS`], newest first). `set_image` makes a new version carrying
//! the full launch data of the current one with the image replaced (see
//! `template.rs`) and points the group at its number. Versions never
//! change once made, so each is read once per process.
//!
//! **What an instance runs** is its EC2 `ImageId` (DescribeInstances),
//! never the template version Auto Scaling reports for it (moto reports
//! the group's, not the one it launched from). An instance EC2 does not
//! list yet is reported `pending`, on the current version's image, launched
//! now.
//!
//! **Lifecycle states.** `Pending`, `Pending:Proceed` → Pending;
//! `Pending:Wait` → PendingWait (kiln's launch hook holds it);
//! `InService` → InService; `Terminating*`, `Detaching` → Terminating
//! (leaving the group: not counted); `Terminated`, `Detached` and warm-pool
//! states → not a member. `Standby`, `EnteringStandby` and any other
//! state (`Quarantined`, root-volume replacement, a state newer than this
//! code) → Pending *with a `launch_error`* naming the state: out of
//! service and not coming back by itself, so a roll never counts it as
//! serving, nor waits for it to pass a gate (it fails a roll that launched
//! it, and anything else is the group's business).
//!
//! **Creating.** On aws groups come from Terraform; roll creates one only
//! as a blue/green twin of an existing group (`GroupSpec::like`): the same
//! launch template (the twin names its own numeric version, made for its
//! image), subnets, health-check settings and termination policies, its
//! own target group, tagged at creation with the spec's tags plus
//! `kiln:roll-created=true` and `kiln:roll-group` (the spec's, else the
//! model group's, else its name). **Deleting** is refused for any group
//! without `kiln:roll-created=true`: roll never deletes a group Terraform
//! made, whatever its caller asks.
//!
//! **Holding launches** is a launch lifecycle hook ([`HOOK`], heartbeat
//! [`HEARTBEAT_S`], default result ABANDON, so a held instance nobody
//! gates is not left running forever); `put_in_service` completes its
//! action with CONTINUE. moto stores hooks but never fires them (its
//! instances go InService at once) and answers CompleteLifecycleAction
//! with a 500; real Auto Scaling holds new instances in `Pending:Wait`.
//!
//! **Scheduled size** is one scheduled action per group ([`SCHEDULE`]);
//! one due within [`DUE_WITHIN_MS`] (or past: Auto Scaling refuses a
//! start time in the past) is applied at once instead.
//!
//! moto checks none of `min <= desired <= max`, so the size rules are
//! checked here first (`crate::groups`), as on every backend. Terminated
//! members stay registered ("healthy") in their target groups on moto, so
//! terminating and deleting deregister first, as real Auto Scaling does
//! itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_autoscaling::primitives::DateTime;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, Filter, LaunchTemplateSpecification, LifecycleState, Tag,
};
use aws_sdk_ec2::types::LaunchTemplateVersion;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use sha2::{Digest, Sha256};

use super::error::{call_error, code, is_gone, is_missing, sdk_error};
use super::lb::{describe_target_group, target_group_port};
use super::sdk::Ctx;
use super::{lease, refresh, template};
use crate::error::{CloudError, Result};
use crate::groups::{
    GroupInfo, GroupInstance, GroupSpec, Groups, Lease, LeaseHolder, Lifecycle, RefreshId,
    RefreshSpec, RefreshStatus, ScheduledDesired, TemplateVersion, check_desired, check_limits,
    check_refresh_spec, check_spec_size, decremented,
};
use crate::ids::{GroupName, ImageId, InstanceId, Tags, TargetGroupId, tags};
use crate::instances::InstanceState;
use crate::time::now_ms;
use crate::wait::wait_until;

/// kiln's launch lifecycle hook.
pub const HOOK: &str = "kiln-gate";
/// kiln's scheduled action (a blue/green standby's stop).
pub const SCHEDULE: &str = "kiln-standby-stop";
/// On groups roll created (the only ones it deletes).
pub const ROLL_CREATED: &str = "kiln:roll-created";
/// How many earlier template versions a group reports.
pub const PREVIOUS: u64 = 20;
/// How long a held launch waits for `put_in_service` before Auto Scaling
/// abandons it.
pub const HEARTBEAT_S: i32 = 3600;
/// What a blue/green standby has suspended ([`Groups::set_standby`]):
/// nothing launched, nothing registered, no scaling policy, no
/// rebalancing; Terminate and ScheduledActions keep running so the
/// standby's stop at the end of its window happens.
pub const STANDBY_SUSPENDED: [&str; 4] = [
    "Launch",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
];
/// A scheduled size change due sooner than this is applied at once.
pub const DUE_WITHIN_MS: u64 = 10_000;

const RESOURCE_TYPE: &str = "auto-scaling-group";
const DELETING: &str = "Delete in progress";
/// Instance ids per DescribeInstances filter.
const INSTANCE_BATCH: usize = 100;

pub(crate) struct AwsGroups {
    ctx: Arc<Ctx>,
}

impl AwsGroups {
    pub fn new(ctx: Arc<Ctx>) -> AwsGroups {
        AwsGroups { ctx }
    }

    fn not_found(&self, name: &GroupName) -> CloudError {
        CloudError::not_found("group", name, &self.ctx.region)
    }

    fn on(&self, name: &GroupName) -> String {
        format!("{name} {}", self.ctx.place())
    }

    /// The group, also while it is being deleted.
    async fn raw_any(&self, name: &GroupName) -> Result<Option<AutoScalingGroup>> {
        let ctx = &self.ctx;
        let out = ctx
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name.as_str())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeAutoScalingGroups", self.on(name), e))?;
        Ok(out
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.auto_scaling_group_name.as_deref() == Some(name.as_str())))
    }

    /// The group; `None` if there is none (or it is being deleted: gone
    /// as far as a roll is concerned).
    async fn raw(&self, name: &GroupName) -> Result<Option<AutoScalingGroup>> {
        Ok(self
            .raw_any(name)
            .await?
            .filter(|g| g.status.as_deref() != Some(DELETING)))
    }

    async fn require(&self, name: &GroupName) -> Result<AutoScalingGroup> {
        self.raw(name).await?.ok_or_else(|| self.not_found(name))
    }

    /// The template's versions `lo..=hi` that exist, newest first, each
    /// read from EC2 at most once per process.
    async fn versions(&self, lt: &str, lo: u64, hi: u64) -> Result<Vec<LaunchTemplateVersion>> {
        let ctx = &self.ctx;
        let missing: Vec<u64> = {
            let cache = ctx.versions.lock().unwrap_or_else(|p| p.into_inner());
            (lo..=hi)
                .filter(|n| !cache.contains_key(&(lt.to_owned(), *n)))
                .collect()
        };
        if let (Some(&from), Some(&to)) = (missing.first(), missing.last()) {
            let mut got = Vec::new();
            let mut token = None;
            loop {
                let out = match ctx
                    .ec2
                    .describe_launch_template_versions()
                    .launch_template_id(lt)
                    .min_version(from.to_string())
                    .max_version(to.to_string())
                    .set_next_token(token.take())
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) if is_gone(&e) => {
                        return Err(CloudError::not_found("launch template", lt, &ctx.region));
                    }
                    Err(e) => {
                        return Err(sdk_error(
                            "DescribeLaunchTemplateVersions",
                            format!("{lt} versions {from}..={to} {}", ctx.place()),
                            e,
                        ));
                    }
                };
                got.extend(out.launch_template_versions.unwrap_or_default());
                match out.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
            let mut cache = ctx.versions.lock().unwrap_or_else(|p| p.into_inner());
            for v in got {
                if let Some(n) = v.version_number.and_then(|n| u64::try_from(n).ok()) {
                    cache.insert((lt.to_owned(), n), Some(v));
                }
            }
            // Older versions that are not there were deleted (and stay
            // so); the newest may just not be visible yet.
            for n in missing.into_iter().filter(|n| *n < hi) {
                cache.entry((lt.to_owned(), n)).or_insert(None);
            }
        }
        let cache = ctx.versions.lock().unwrap_or_else(|p| p.into_inner());
        Ok((lo..=hi)
            .rev()
            .filter_map(|n| cache.get(&(lt.to_owned(), n)).cloned().flatten())
            .collect())
    }

    async fn version(&self, lt: &str, n: u64) -> Result<LaunchTemplateVersion> {
        self.versions(lt, n, n)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                CloudError::not_found(
                    "launch template version",
                    format!("{lt} version {n}"),
                    &self.ctx.region,
                )
            })
    }

    /// kiln's launch hook is on the group.
    async fn holds(&self, name: &GroupName) -> Result<bool> {
        let out = self
            .ctx
            .autoscaling
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(name.as_str())
            .lifecycle_hook_names(HOOK)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeLifecycleHooks", self.on(name), e))?;
        Ok(out
            .lifecycle_hooks
            .unwrap_or_default()
            .iter()
            .any(|h| h.lifecycle_hook_name.as_deref() == Some(HOOK)))
    }

    async fn scheduled(&self, name: &GroupName) -> Result<Option<ScheduledDesired>> {
        let out = self
            .ctx
            .autoscaling
            .describe_scheduled_actions()
            .auto_scaling_group_name(name.as_str())
            .scheduled_action_names(SCHEDULE)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeScheduledActions", self.on(name), e))?;
        Ok(out
            .scheduled_update_group_actions
            .unwrap_or_default()
            .into_iter()
            // moto keys scheduled actions by name alone: check the group.
            .filter(|a| {
                a.scheduled_action_name.as_deref() == Some(SCHEDULE)
                    && a.auto_scaling_group_name.as_deref() == Some(name.as_str())
            })
            .find_map(|a| {
                Some(ScheduledDesired {
                    at_ms: ms(a.start_time.as_ref()?)?,
                    desired: u32::try_from(a.desired_capacity?).ok()?,
                })
            }))
    }

    /// The seam's view of groups: their instances' EC2 details fetched in
    /// one batch.
    async fn infos(&self, groups: Vec<AutoScalingGroup>) -> Result<Vec<GroupInfo>> {
        let ids: Vec<String> = groups
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| lifecycle(i.lifecycle_state.as_ref()).is_some())
            .filter_map(|i| i.instance_id.clone())
            .collect();
        let ec2: HashMap<String, aws_sdk_ec2::types::Instance> =
            describe_instances(&self.ctx, &ids)
                .await?
                .into_iter()
                .filter_map(|i| Some((i.instance_id.clone()?, i)))
                .collect();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            out.push(self.info(g, &ec2).await?);
        }
        Ok(out)
    }

    async fn info(
        &self,
        g: AutoScalingGroup,
        ec2: &HashMap<String, aws_sdk_ec2::types::Instance>,
    ) -> Result<GroupInfo> {
        let name = GroupName::new(g.auto_scaling_group_name.clone().unwrap_or_default());
        let (lt, n) = pinned(&g)?;
        let mut versions = self
            .versions(&lt, n.saturating_sub(PREVIOUS).max(1), n)
            .await?
            .into_iter()
            .map(|v| template_version(&v));
        let current = match versions.next() {
            Some(v) if v.version == n => v,
            _ => {
                return Err(CloudError::not_found(
                    "launch template version",
                    format!("{lt} version {n} (named by group {name})"),
                    &self.ctx.region,
                ));
            }
        };
        let previous: Vec<TemplateVersion> = versions.collect();
        let target_group = g
            .target_group_arns
            .as_deref()
            .unwrap_or_default()
            .first()
            .map(|a| TargetGroupId::new(a.clone()));
        let port = match &target_group {
            Some(tg) if !g.instances().is_empty() => target_group_port(&self.ctx, tg).await?,
            _ => None,
        };
        let now = now_ms();
        let mut instances: Vec<GroupInstance> = g
            .instances()
            .iter()
            .filter_map(|i| {
                let (lifecycle, launch_error) = lifecycle(i.lifecycle_state.as_ref())?;
                let id = i.instance_id.clone()?;
                let e = ec2.get(&id);
                let address = e
                    .and_then(|e| e.private_ip_address.as_deref()?.parse().ok())
                    .zip(port)
                    .map(|(ip, port)| SocketAddr::new(ip, port));
                Some(GroupInstance {
                    image: e
                        .and_then(|e| e.image_id.clone())
                        .map_or_else(|| current.image.clone(), ImageId::new),
                    state: e
                        .and_then(|e| e.state.as_ref()?.name.as_ref())
                        .map_or(InstanceState::Pending, super::builders::instance_state),
                    launched_ms: e.and_then(|e| ms(e.launch_time.as_ref()?)).unwrap_or(now),
                    id: InstanceId::new(id),
                    lifecycle,
                    address,
                    launch_error,
                })
            })
            .collect();
        instances.sort_by(|a, b| (a.launched_ms, &a.id).cmp(&(b.launched_ms, &b.id)));
        let tags: Tags = g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default())))
            .collect();
        let size = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        Ok(GroupInfo {
            desired: size(g.desired_capacity),
            min: size(g.min_size),
            max: size(g.max_size),
            current,
            previous,
            instances,
            target_group,
            tags,
            hold_launches: self.holds(&name).await?,
            scheduled: self.scheduled(&name).await?,
            name,
        })
    }

    async fn image_exists(&self, image: &ImageId) -> Result<()> {
        let ctx = &self.ctx;
        match super::images::describe_in(&ctx.ec2, image, &ctx.region).await? {
            Some(_) => Ok(()),
            None => Err(CloudError::not_found("image", image, &ctx.region)),
        }
    }

    /// A version of `lt` that launches `image` with everything else as
    /// `from` has it: `from` itself if it already does, else a new one.
    async fn pin(
        &self,
        lt: &str,
        from: &LaunchTemplateVersion,
        image: &ImageId,
    ) -> Result<TemplateVersion> {
        let was = template_version(from);
        if was.image == *image {
            return Ok(was);
        }
        let data = template::request_data(from, image)?;
        let ctx = &self.ctx;
        let description = format!(
            "kiln: image {image}, launch data of version {}",
            was.version
        );
        // Made already (its answer lost, or a rerun after kill -9 once the
        // client token below has expired): read back, not made again.
        if let Some(v) = self.made(lt, was.version, &description, image).await? {
            return Ok(v);
        }
        // The same copy asked again (an answer lost, a rerun after kill -9)
        // is the same version, not another one.
        let token = {
            let mut h = Sha256::new();
            h.update(format!("kiln set-image {lt} {} {image}", was.version));
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            format!("kiln-{}", &hex[..40])
        };
        let out = match ctx
            .ec2
            .create_launch_template_version()
            .launch_template_id(lt)
            .version_description(description)
            .client_token(token)
            .launch_template_data(data)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_gone(&e) => {
                return Err(CloudError::not_found("launch template", lt, &ctx.region));
            }
            Err(e) => {
                return Err(call_error(
                    "CreateLaunchTemplateVersion",
                    format!("{lt} (image {image}) {}", ctx.place()),
                    e,
                ));
            }
        };
        let v = out.launch_template_version.ok_or_else(|| CloudError::Api {
            op: format!("CreateLaunchTemplateVersion {lt}"),
            message: "the answer had no version".into(),
            source: None,
        })?;
        if let Some(n) = v.version_number.and_then(|n| u64::try_from(n).ok())
            && let Ok(mut cache) = ctx.versions.lock()
        {
            cache.insert((lt.to_owned(), n), Some(v.clone()));
        }
        Ok(template_version(&v))
    }

    /// The newest version after `after` that kiln made with `description`
    /// and launches `image`, if any (DescribeLaunchTemplateVersions from
    /// `after + 1` on).
    async fn made(
        &self,
        lt: &str,
        after: u64,
        description: &str,
        image: &ImageId,
    ) -> Result<Option<TemplateVersion>> {
        let ctx = &self.ctx;
        let mut found = None;
        let mut token = None;
        loop {
            let out = ctx
                .ec2
                .describe_launch_template_versions()
                .launch_template_id(lt)
                .min_version((after + 1).to_string())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "DescribeLaunchTemplateVersions",
                        format!("{lt} versions after {after} {}", ctx.place()),
                        e,
                    )
                })?;
            for v in out.launch_template_versions() {
                let t = template_version(v);
                if v.version_description() == Some(description)
                    && t.image == *image
                    && found
                        .as_ref()
                        .is_none_or(|f: &TemplateVersion| t.version > f.version)
                {
                    found = Some(t);
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Deregisters `ids` from each of the group's target groups (moto
    /// leaves a terminated member registered and "healthy").
    async fn deregister_members(&self, g: &AutoScalingGroup, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        for tg in g.target_group_arns.as_deref().unwrap_or_default() {
            deregister_instances(&ctx.elb, tg, ids, &ctx.place()).await?;
        }
        Ok(())
    }

    async fn update_size(
        &self,
        name: &GroupName,
        min: u32,
        max: Option<u32>,
        desired: u32,
    ) -> Result<()> {
        match self
            .ctx
            .autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .min_size(int(min))
            .set_max_size(max.map(int))
            .desired_capacity(int(desired))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.not_found(name)),
            Err(e) => Err(call_error("UpdateAutoScalingGroup", self.on(name), e)),
        }
    }

    async fn delete_schedule(&self, name: &GroupName) -> Result<()> {
        match self
            .ctx
            .autoscaling
            .delete_scheduled_action()
            .auto_scaling_group_name(name.as_str())
            .scheduled_action_name(SCHEDULE)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(call_error(
                "DeleteScheduledAction",
                format!("{SCHEDULE} of {}", self.on(name)),
                e,
            )),
        }
    }

    /// A failed tag call: NotFound if the group is not there (moto answers
    /// a missing group with a 500, Auto Scaling with a ValidationError),
    /// else the call's own error.
    async fn tag_error<E, R>(
        &self,
        op: &str,
        name: &GroupName,
        e: aws_sdk_autoscaling::error::SdkError<E, R>,
    ) -> CloudError
    where
        E: aws_sdk_autoscaling::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match self.raw(name).await {
            Ok(None) => self.not_found(name),
            _ => call_error(op, self.on(name), e),
        }
    }
}

/// DeregisterTargets of instances from one target group; ones that are
/// not registered (any more), or a target group that is gone, are fine.
/// `place` says where, for the error.
pub(crate) async fn deregister_instances(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    tg: &str,
    ids: &[String],
    place: &str,
) -> Result<()> {
    let targets = ids
        .iter()
        .map(|i| TargetDescription::builder().id(i).build())
        .collect();
    match elb
        .deregister_targets()
        .target_group_arn(tg)
        .set_targets(Some(targets))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) || code(&e) == Some("InvalidTarget") => Ok(()),
        Err(e) => Err(call_error(
            "DeregisterTargets",
            format!("{} from {tg} {place}", ids.join(",")),
            e,
        )),
    }
}

/// Tags as Auto Scaling takes them for `group`.
pub(crate) fn asg_tags(group: &GroupName, tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .resource_id(group.as_str())
                .resource_type(RESOURCE_TYPE)
                .key(k)
                .value(v)
                .propagate_at_launch(false)
                .build()
        })
        .collect()
}

/// Auto Scaling's tag limits, checked before a call: keys up to 128
/// characters, values up to 256, no `aws:` keys.
pub(crate) fn check_tags(tags: &Tags) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(CloudError::invalid(
                "group tag",
                format!("key {k:?}: 1 to 128 characters, not starting with aws:"),
            ));
        }
        if v.chars().count() > 256 {
            return Err(CloudError::invalid(
                "group tag",
                format!(
                    "the value of {k} has {} characters; Auto Scaling takes 256",
                    v.chars().count()
                ),
            ));
        }
    }
    Ok(())
}

/// Names kiln gives groups: letters, digits, `-`, `_`, `.` (a stricter
/// subset of Auto Scaling's), at most 255.
fn check_name(name: &GroupName) -> Result<()> {
    let ok = !name.as_str().is_empty()
        && name.as_str().len() <= 255
        && name
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CloudError::invalid(
            "group name",
            format!("{name:?}: use 1 to 255 letters, digits, '-', '_' or '.'"),
        ))
    }
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn ms(t: &DateTime) -> Option<u64> {
    u64::try_from(t.to_millis().ok()?).ok()
}

/// The launch template and numeric version a group launches from.
/// [`CloudError::Invalid`] for anything else, saying why.
fn pinned(g: &AutoScalingGroup) -> Result<(String, u64)> {
    let name = g.auto_scaling_group_name.as_deref().unwrap_or_default();
    let Some(lt) = g.launch_template.as_ref() else {
        let why = if g.mixed_instances_policy.is_some() {
            "it launches from a mixed instances policy; kiln rolls groups with one launch template"
                .to_owned()
        } else if let Some(lc) = &g.launch_configuration_name {
            format!(
                "it launches from launch configuration {lc}; kiln needs a launch template \
                 (launch configurations cannot be versioned)"
            )
        } else {
            "it has no launch template".to_owned()
        };
        return Err(CloudError::invalid("group", format!("{name}: {why}")));
    };
    let id = lt.launch_template_id.clone().ok_or_else(|| {
        CloudError::invalid("group", format!("{name}: its launch template has no id"))
    })?;
    let version = lt.version.as_deref().unwrap_or("$Default");
    match version.parse::<u64>() {
        Ok(n) => Ok((id, n)),
        Err(_) => Err(CloudError::invalid(
            "group",
            format!(
                "{name} launches launch template {id} version {version}: kiln needs a numeric \
                 version. `$Latest` and `$Default` change meaning whenever someone makes or \
                 promotes a version, so a rollback could silently launch the wrong image; pin \
                 the number (Terraform: `version = aws_launch_template.<name>.latest_version`)"
            ),
        )),
    }
}

fn template_version(v: &LaunchTemplateVersion) -> TemplateVersion {
    TemplateVersion {
        version: v
            .version_number
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        image: ImageId::new(
            v.launch_template_data
                .as_ref()
                .and_then(|d| d.image_id.clone())
                .unwrap_or_default(),
        ),
        created_unix: v
            .create_time
            .as_ref()
            .and_then(|t| u64::try_from(t.secs()).ok())
            .unwrap_or(0),
    }
}

/// The seam's lifecycle of an Auto Scaling lifecycle state (see the module
/// doc); `None`: not a member (any more).
fn lifecycle(s: Option<&LifecycleState>) -> Option<(Lifecycle, Option<String>)> {
    use LifecycleState as S;
    let s = s?;
    Some(match s {
        S::Pending | S::PendingProceed => (Lifecycle::Pending, None),
        S::PendingWait => (Lifecycle::PendingWait, None),
        S::InService => (Lifecycle::InService, None),
        S::Terminating
        | S::TerminatingWait
        | S::TerminatingProceed
        | S::TerminatingRetained
        | S::Detaching => (Lifecycle::Terminating, None),
        S::Terminated | S::Detached => return None,
        other if other.as_str().starts_with("Warmed") => return None,
        other => (
            Lifecycle::Pending,
            Some(format!(
                "in Auto Scaling state {}: out of service until someone outside kiln \
                 brings it back (or it is terminated)",
                other.as_str()
            )),
        ),
    })
}

/// EC2 instances by id, 100 per DescribeInstances (an `instance-id`
/// filter, so an id EC2 does not list yet is absent rather than failing
/// the call).
pub(crate) async fn describe_instances(
    ctx: &Ctx,
    ids: &[String],
) -> Result<Vec<aws_sdk_ec2::types::Instance>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(INSTANCE_BATCH) {
        let mut token = None;
        loop {
            let page = ctx
                .ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "DescribeInstances",
                        format!("{} {}", chunk.join(","), ctx.place()),
                        e,
                    )
                })?;
            out.extend(
                page.reservations
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|r| r.instances.unwrap_or_default()),
            );
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Groups for AwsGroups {
    async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let ctx = &self.ctx;
        let mut groups = Vec::new();
        let mut token = None;
        loop {
            let page = ctx
                .autoscaling
                .describe_auto_scaling_groups()
                .filters(
                    Filter::builder()
                        .name("tag-key")
                        .values(tags::ROLL_GROUP)
                        .build(),
                )
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    sdk_error(
                        "DescribeAutoScalingGroups",
                        format!("tagged {} {}", tags::ROLL_GROUP, ctx.place()),
                        e,
                    )
                })?;
            groups.extend(
                page.auto_scaling_groups
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|g| g.status.as_deref() != Some(DELETING)),
            );
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        self.infos(groups).await
    }

    async fn describe_group(&self, name: &GroupName) -> Result<GroupInfo> {
        let g = self.require(name).await?;
        Ok(self.infos(vec![g]).await?.remove(0))
    }

    async fn create_group(&self, spec: &GroupSpec) -> Result<GroupInfo> {
        check_name(&spec.name)?;
        check_spec_size(spec)?;
        let ctx = &self.ctx;
        let name = &spec.name;
        if let Some(g) = self.raw_any(name).await? {
            if g.status.as_deref() != Some(DELETING) {
                return Ok(self.infos(vec![g]).await?.remove(0));
            }
            // Auto Scaling keeps a deleted group's name until its
            // instances are gone (minutes): a twin replaced right after
            // its deletion waits for that.
            wait_until(
                ctx.wait,
                &format!("group {name} to finish deleting"),
                || async { Ok(self.raw_any(name).await?.is_none().then_some(())) },
            )
            .await?;
        }
        self.image_exists(&spec.image).await?;
        if let Some(tg) = &spec.target_group
            && describe_target_group(ctx, tg).await?.is_none()
        {
            return Err(CloudError::not_found("target group", tg, &ctx.region));
        }
        let Some(like) = &spec.like else {
            return Err(CloudError::invalid(
                "group",
                format!(
                    "{name}: on aws, groups come from Terraform (or, later, `roll up --backend \
                     aws`); roll creates a group only as the blue/green twin of an existing one"
                ),
            ));
        };
        let model = self.raw(like).await?.ok_or_else(|| self.not_found(like))?;
        let (lt, n) = pinned(&model)?;
        let from = self.version(&lt, n).await?;
        let v = self.pin(&lt, &from, &spec.image).await?;
        let mut t = spec.tags.clone();
        t.insert(ROLL_CREATED.into(), "true".into());
        let service = model
            .tags()
            .iter()
            .find(|t| t.key.as_deref() == Some(tags::ROLL_GROUP))
            .and_then(|t| t.value.clone())
            .unwrap_or_else(|| like.to_string());
        t.entry(tags::ROLL_GROUP.into()).or_insert(service);
        check_tags(&t)?;
        let mut req = ctx
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&lt)
                    .version(v.version.to_string())
                    .build(),
            )
            .min_size(int(spec.min))
            .max_size(int(spec.max))
            .desired_capacity(int(spec.desired))
            .set_target_group_arns(spec.target_group.as_ref().map(|t| vec![t.0.clone()]))
            .set_tags(Some(asg_tags(name, &t)))
            .set_health_check_type(model.health_check_type.clone())
            .set_health_check_grace_period(model.health_check_grace_period)
            .set_termination_policies(model.termination_policies.clone())
            .set_default_cooldown(model.default_cooldown)
            .set_default_instance_warmup(model.default_instance_warmup)
            .set_new_instances_protected_from_scale_in(model.new_instances_protected_from_scale_in)
            .set_capacity_rebalance(model.capacity_rebalance)
            .set_max_instance_lifetime(model.max_instance_lifetime)
            .set_placement_group(model.placement_group.clone());
        req = match model
            .vpc_zone_identifier
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            Some(subnets) => req.vpc_zone_identifier(subnets),
            None => req.set_availability_zones(model.availability_zones.clone()),
        };
        match req.send().await {
            Ok(_) => {}
            // Someone (a racing rerun) made it meanwhile: it is returned.
            Err(e) if code(&e) == Some("AlreadyExists") => {}
            Err(e) if is_missing(&e) => {
                return Err(call_error("CreateAutoScalingGroup", self.on(name), e));
            }
            Err(e) => return Err(call_error("CreateAutoScalingGroup", self.on(name), e)),
        }
        self.describe_group(name).await
    }

    async fn set_image(&self, name: &GroupName, image: &ImageId) -> Result<TemplateVersion> {
        let g = self.require(name).await?;
        let (lt, n) = pinned(&g)?;
        let from = self.version(&lt, n).await?;
        if template_version(&from).image == *image {
            return Ok(template_version(&from));
        }
        self.image_exists(image).await?;
        let v = self.pin(&lt, &from, image).await?;
        match self
            .ctx
            .autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&lt)
                    .version(v.version.to_string())
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => Ok(v),
            Err(e) if is_missing(&e) => Err(self.not_found(name)),
            Err(e) => Err(call_error(
                "UpdateAutoScalingGroup",
                format!(
                    "{} (launch template {lt} version {})",
                    self.on(name),
                    v.version
                ),
                e,
            )),
        }
    }

    async fn set_desired(&self, name: &GroupName, desired: u32) -> Result<()> {
        let g = self.require(name).await?;
        let size = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        check_desired(name, desired, size(g.min_size), size(g.max_size))?;
        match self
            .ctx
            .autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(name.as_str())
            .desired_capacity(int(desired))
            .honor_cooldown(false)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.not_found(name)),
            Err(e) => Err(call_error("SetDesiredCapacity", self.on(name), e)),
        }
    }

    async fn set_limits(&self, name: &GroupName, min: u32, max: u32) -> Result<()> {
        check_limits(min, max)?;
        let g = self.require(name).await?;
        let desired = g
            .desired_capacity
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
            .clamp(min, max);
        self.update_size(name, min, Some(max), desired).await
    }

    async fn terminate_instance(
        &self,
        name: &GroupName,
        id: &InstanceId,
        decrement: bool,
    ) -> Result<()> {
        let g = self.require(name).await?;
        let member = g
            .instances()
            .iter()
            .find(|i| i.instance_id.as_deref() == Some(id.as_str()))
            .and_then(|i| lifecycle(i.lifecycle_state.as_ref()));
        match member {
            None | Some((Lifecycle::Terminating, _)) => return Ok(()),
            Some(_) => {}
        }
        if decrement {
            let size = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
            decremented(name, size(g.desired_capacity), size(g.min_size))?;
        }
        self.deregister_members(&g, std::slice::from_ref(&id.0))
            .await?;
        match self
            .ctx
            .autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id.as_str())
            .should_decrement_desired_capacity(decrement)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Gone meanwhile.
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(call_error(
                "TerminateInstanceInAutoScalingGroup",
                format!("{id} of {}", self.on(name)),
                e,
            )),
        }
    }

    async fn delete_group(&self, name: &GroupName) -> Result<()> {
        let Some(g) = self.raw(name).await? else {
            return Ok(());
        };
        let created = g
            .tags()
            .iter()
            .any(|t| t.key.as_deref() == Some(ROLL_CREATED) && t.value.as_deref() == Some("true"));
        if !created {
            return Err(CloudError::invalid(
                "group",
                format!(
                    "{name} was not created by roll (no {ROLL_CREATED}=true tag): roll never \
                     deletes a group it did not create; remove it where it was made (Terraform)"
                ),
            ));
        }
        let members: Vec<String> = g
            .instances()
            .iter()
            .filter(|i| lifecycle(i.lifecycle_state.as_ref()).is_some())
            .filter_map(|i| i.instance_id.clone())
            .collect();
        self.deregister_members(&g, &members).await?;
        match self
            .ctx
            .autoscaling
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .force_delete(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(call_error("DeleteAutoScalingGroup", self.on(name), e)),
        }
    }

    async fn tag_group(&self, name: &GroupName, set: &Tags, remove: &[String]) -> Result<()> {
        check_tags(set)?;
        let ctx = &self.ctx;
        if set.is_empty() && remove.is_empty() {
            self.require(name).await?;
            return Ok(());
        }
        if !set.is_empty()
            && let Err(e) = ctx
                .autoscaling
                .create_or_update_tags()
                .set_tags(Some(asg_tags(name, set)))
                .send()
                .await
        {
            return Err(self.tag_error("CreateOrUpdateTags", name, e).await);
        }
        if !remove.is_empty() {
            let keys = remove
                .iter()
                .map(|k| {
                    Tag::builder()
                        .resource_id(name.as_str())
                        .resource_type(RESOURCE_TYPE)
                        .key(k)
                        .build()
                })
                .collect();
            if let Err(e) = ctx
                .autoscaling
                .delete_tags()
                .set_tags(Some(keys))
                .send()
                .await
            {
                return Err(self.tag_error("DeleteTags", name, e).await);
            }
        }
        Ok(())
    }

    async fn hold_launches(&self, name: &GroupName, hold: bool) -> Result<()> {
        // moto stores a hook for a group that does not exist: look first.
        self.require(name).await?;
        let asg = &self.ctx.autoscaling;
        let r = if hold {
            asg.put_lifecycle_hook()
                .auto_scaling_group_name(name.as_str())
                .lifecycle_hook_name(HOOK)
                .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
                .heartbeat_timeout(HEARTBEAT_S)
                .default_result("ABANDON")
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        is_missing(&e),
                        call_error("PutLifecycleHook", self.on(name), e),
                    )
                })
        } else {
            match asg
                .delete_lifecycle_hook()
                .auto_scaling_group_name(name.as_str())
                .lifecycle_hook_name(HOOK)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err((false, call_error("DeleteLifecycleHook", self.on(name), e))),
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err((true, _)) => Err(self.not_found(name)),
            Err((false, e)) => Err(e),
        }
    }

    async fn put_in_service(&self, name: &GroupName, id: &InstanceId) -> Result<()> {
        let g = self.require(name).await?;
        let state = g
            .instances()
            .iter()
            .find(|i| i.instance_id.as_deref() == Some(id.as_str()))
            .and_then(|i| i.lifecycle_state.clone())
            .ok_or_else(|| CloudError::not_found("instance", id, format!("group {name}")))?;
        let waiting = match state {
            LifecycleState::InService => return Ok(()),
            LifecycleState::PendingWait => true,
            LifecycleState::Pending | LifecycleState::PendingProceed => false,
            other => {
                return Err(CloudError::invalid(
                    "instance",
                    format!("{id} is {}; it cannot go in service", other.as_str()),
                ));
            }
        };
        match self
            .ctx
            .autoscaling
            .complete_lifecycle_action()
            .auto_scaling_group_name(name.as_str())
            .lifecycle_hook_name(HOOK)
            .instance_id(id.as_str())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Still `Pending`, its hook's wait not begun (or no hook): Auto
            // Scaling puts it in service itself, or the caller sees it
            // `PendingWait` on its next look and asks again.
            Err(e) if !waiting && code(&e) == Some("ValidationError") => Ok(()),
            Err(e) => Err(call_error(
                "CompleteLifecycleAction",
                format!("{id} ({HOOK}) of {}", self.on(name)),
                e,
            )),
        }
    }

    async fn schedule_desired(
        &self,
        name: &GroupName,
        scheduled: Option<ScheduledDesired>,
    ) -> Result<()> {
        let g = self.require(name).await?;
        let Some(s) = scheduled else {
            return self.delete_schedule(name).await;
        };
        let size = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        let (min, max) = (size(g.min_size), size(g.max_size));
        let desired = s.desired.min(max);
        if s.at_ms <= now_ms() + DUE_WITHIN_MS {
            self.update_size(name, min.min(desired), None, desired)
                .await?;
            return self.delete_schedule(name).await;
        }
        let at = DateTime::from_secs(i64::try_from(s.at_ms / 1000).unwrap_or(i64::MAX));
        match self
            .ctx
            .autoscaling
            .put_scheduled_update_group_action()
            .auto_scaling_group_name(name.as_str())
            .scheduled_action_name(SCHEDULE)
            .start_time(at)
            .desired_capacity(int(desired))
            .min_size(int(min.min(desired)))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.not_found(name)),
            Err(e) => Err(call_error(
                "PutScheduledUpdateGroupAction",
                format!("{SCHEDULE} of {}", self.on(name)),
                e,
            )),
        }
    }

    async fn set_standby(&self, name: &GroupName, standby: bool) -> Result<()> {
        let asg = &self.ctx.autoscaling;
        let processes = STANDBY_SUSPENDED.iter().map(|p| p.to_string()).collect();
        let r = if standby {
            asg.suspend_processes()
                .auto_scaling_group_name(name.as_str())
                .set_scaling_processes(Some(processes))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        is_missing(&e),
                        call_error("SuspendProcesses", self.on(name), e),
                    )
                })
        } else {
            asg.resume_processes()
                .auto_scaling_group_name(name.as_str())
                .set_scaling_processes(Some(processes))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        is_missing(&e),
                        call_error("ResumeProcesses", self.on(name), e),
                    )
                })
        };
        match r {
            Ok(()) => Ok(()),
            Err((true, _)) => Err(self.not_found(name)),
            Err((false, e)) => Err(e),
        }
    }

    async fn acquire_lease(
        &self,
        name: &GroupName,
        holder: &LeaseHolder,
    ) -> Result<Box<dyn Lease>> {
        lease::acquire(self.ctx.clone(), name, holder).await
    }

    fn has_instance_refresh(&self) -> bool {
        true
    }

    /// The version for the image is made as `set_image` makes it (same
    /// client token: a rerun makes no second one), and handed to the
    /// refresh as its desired configuration; the group keeps naming its
    /// own version until the refresh succeeds (see `refresh.rs`).
    async fn start_refresh(&self, name: &GroupName, spec: &RefreshSpec) -> Result<RefreshId> {
        check_refresh_spec(spec)?;
        let g = self.require(name).await?;
        let (lt, n) = pinned(&g)?;
        let from = self.version(&lt, n).await?;
        let v = if template_version(&from).image == spec.image {
            template_version(&from)
        } else {
            self.image_exists(&spec.image).await?;
            self.pin(&lt, &from, &spec.image).await?
        };
        refresh::start(&self.ctx, name, &lt, v.version, spec).await
    }

    async fn describe_refresh(&self, name: &GroupName, id: &RefreshId) -> Result<RefreshStatus> {
        refresh::describe(&self.ctx, name, id).await
    }

    async fn cancel_refresh(&self, name: &GroupName) -> Result<()> {
        refresh::cancel(&self.ctx, name).await
    }

    async fn rollback_refresh(&self, name: &GroupName) -> Result<()> {
        refresh::rollback(&self.ctx, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(version: Option<&str>) -> AutoScalingGroup {
        let mut b = AutoScalingGroup::builder().auto_scaling_group_name("web");
        if let Some(v) = version {
            b = b.launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id("lt-1")
                    .version(v)
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn only_numeric_versions_are_pinned() {
        assert_eq!(pinned(&group(Some("7"))).ok(), Some(("lt-1".to_owned(), 7)));
        for v in ["$Latest", "$Default"] {
            let e = pinned(&group(Some(v))).expect_err("refused");
            assert!(e.is_bad_input(), "{e}");
            let s = e.to_string();
            assert!(
                s.contains(v) && s.contains("numeric") && s.contains("latest_version"),
                "{s}"
            );
        }
        let e = pinned(&group(None)).expect_err("no template");
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn lifecycle_states_map_as_documented() {
        use LifecycleState as S;
        let l = |s: S| lifecycle(Some(&s));
        assert_eq!(l(S::Pending), Some((Lifecycle::Pending, None)));
        assert_eq!(l(S::PendingProceed), Some((Lifecycle::Pending, None)));
        assert_eq!(l(S::PendingWait), Some((Lifecycle::PendingWait, None)));
        assert_eq!(l(S::InService), Some((Lifecycle::InService, None)));
        for s in [
            S::Terminating,
            S::TerminatingWait,
            S::TerminatingProceed,
            S::Detaching,
        ] {
            assert_eq!(l(s), Some((Lifecycle::Terminating, None)));
        }
        for s in [S::Terminated, S::Detached, S::WarmedRunning] {
            assert_eq!(l(s), None);
        }
        for s in [S::Standby, S::EnteringStandby, S::Quarantined] {
            let (lc, why) = l(s.clone()).expect("a member");
            assert_eq!(lc, Lifecycle::Pending);
            assert!(why.is_some_and(|w| w.contains(s.as_str())));
        }
    }

    #[test]
    fn names_and_tags_are_checked_before_any_call() {
        assert!(check_name(&GroupName::from("web--b")).is_ok());
        assert!(check_name(&GroupName::from("not a group name")).is_err());
        assert!(check_name(&GroupName::from("")).is_err());
        let mut t = Tags::new();
        t.insert("kiln:x".into(), "y".repeat(256));
        assert!(check_tags(&t).is_ok());
        t.insert("kiln:x".into(), "y".repeat(257));
        assert!(check_tags(&t).unwrap_err().is_bad_input());
        let mut t = Tags::new();
        t.insert("aws:x".into(), String::new());
        assert!(check_tags(&t).is_err());
    }
}
