//! Instance refreshes: Auto Scaling's managed replacement of a group's
//! instances (`roll out --strategy instance-refresh`).
//!
//! The desired configuration is the group's launch template at the
//! numeric version made for the new image (as `set_image` makes one, but
//! without pointing the group there): Auto Scaling points the group at it
//! when the refresh succeeds, and with auto rollback restores the version
//! the group named before by itself. So the group never names `$Latest`
//! and is pinned, whatever the outcome, to a version of the image it runs.
//!
//! Idempotent: `InstanceRefreshInProgress` (a rerun after `kill -9`
//! between the start and the roll record's refresh id) adopts the refresh
//! in progress when it heads for the same template version, and is
//! refused naming it otherwise.
//!
//! moto answers every call here with a 500 (not emulated): the calls are
//! tested against the scripted fake (`cloud::fake`, `roll/tests/refresh.rs`)
//! and on moto only as far as reaching StartInstanceRefresh.

use aws_sdk_autoscaling::types::{
    AlarmSpecification, DesiredConfiguration, InstanceRefresh, LaunchTemplateSpecification,
    RefreshPreferences, RefreshStrategy,
};

use super::error::{call_error, code, is_missing, message};
use super::sdk::Ctx;
use crate::error::{CloudError, Result};
use crate::groups::{RefreshId, RefreshSpec, RefreshState, RefreshStatus};
use crate::ids::GroupName;

fn secs(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000)).unwrap_or(i32::MAX)
}

fn on(ctx: &Ctx, name: &GroupName) -> String {
    format!("{name} {}", ctx.place())
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// StartInstanceRefresh towards launch template `lt` version `version`.
pub(super) async fn start(
    ctx: &Ctx,
    name: &GroupName,
    lt: &str,
    version: u64,
    spec: &RefreshSpec,
) -> Result<RefreshId> {
    let mut prefs = RefreshPreferences::builder()
        .min_healthy_percentage(int(spec.min_healthy_pct))
        .max_healthy_percentage(int(spec.max_healthy_pct))
        .skip_matching(spec.skip_matching)
        .auto_rollback(spec.auto_rollback)
        .instance_warmup(secs(spec.warmup_ms));
    if spec.bake_ms > 0 {
        prefs = prefs.bake_time(secs(spec.bake_ms));
    }
    for c in &spec.checkpoints {
        prefs = prefs.checkpoint_percentages(int(*c));
    }
    if !spec.checkpoints.is_empty() {
        prefs = prefs.checkpoint_delay(secs(spec.checkpoint_delay_ms));
    }
    if !spec.alarms.is_empty() {
        prefs = prefs.alarm_specification(
            AlarmSpecification::builder()
                .set_alarms(Some(spec.alarms.clone()))
                .build(),
        );
    }
    let desired = DesiredConfiguration::builder()
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version(version.to_string())
                .build(),
        )
        .build();
    let sent = ctx
        .autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name(name.as_str())
        .strategy(RefreshStrategy::Rolling)
        .desired_configuration(desired)
        .preferences(prefs.build())
        .send()
        .await;
    match sent {
        Ok(out) => out
            .instance_refresh_id
            .map(RefreshId::new)
            .ok_or_else(|| CloudError::Api {
                op: format!("StartInstanceRefresh {}", on(ctx, name)),
                message: "the answer had no InstanceRefreshId".into(),
                source: None,
            }),
        Err(e) if code(&e) == Some("InstanceRefreshInProgress") => {
            let active = list(ctx, name, None).await?.into_iter().find(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| RefreshState::parse(s.as_str()))
                    .is_some_and(|s| !s.is_done())
            });
            let Some(r) = active else {
                return Err(call_error(
                    "StartInstanceRefresh",
                    format!("{} (launch template {lt} version {version})", on(ctx, name)),
                    e,
                ));
            };
            let heads_to = r
                .desired_configuration
                .as_ref()
                .and_then(|d| d.launch_template.as_ref())
                .and_then(|l| l.version.clone());
            let id = r.instance_refresh_id.clone().unwrap_or_default();
            if heads_to.as_deref() == Some(version.to_string().as_str()) {
                Ok(RefreshId::new(id))
            } else {
                Err(CloudError::invalid(
                    "instance refresh",
                    format!(
                        "group {name} has instance refresh {id} in progress (to launch template \
                         version {}); let it finish or cancel it first",
                        heads_to.as_deref().unwrap_or("unknown")
                    ),
                ))
            }
        }
        Err(e) if is_missing(&e) => Err(CloudError::not_found("group", name, &ctx.region)),
        Err(e) => Err(call_error(
            "StartInstanceRefresh",
            format!("{} (launch template {lt} version {version})", on(ctx, name)),
            e,
        )),
    }
}

/// The group's refreshes, newest first (or just `id`).
async fn list(ctx: &Ctx, name: &GroupName, id: Option<&RefreshId>) -> Result<Vec<InstanceRefresh>> {
    let mut req = ctx
        .autoscaling
        .describe_instance_refreshes()
        .auto_scaling_group_name(name.as_str());
    if let Some(id) = id {
        req = req.instance_refresh_ids(id.as_str());
    }
    match req.send().await {
        Ok(out) => Ok(out.instance_refreshes.unwrap_or_default()),
        Err(e) if is_missing(&e) => Err(CloudError::not_found("group", name, &ctx.region)),
        Err(e) => Err(call_error("DescribeInstanceRefreshes", on(ctx, name), e)),
    }
}

pub(super) async fn describe(ctx: &Ctx, name: &GroupName, id: &RefreshId) -> Result<RefreshStatus> {
    let found = list(ctx, name, Some(id))
        .await?
        .into_iter()
        .find(|r| r.instance_refresh_id.as_deref() == Some(id.as_str()))
        .ok_or_else(|| CloudError::not_found("instance refresh", id, on(ctx, name)))?;
    let status = found
        .status
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or("Pending");
    let state = RefreshState::parse(status).ok_or_else(|| CloudError::Api {
        op: format!("DescribeInstanceRefreshes {id} {}", on(ctx, name)),
        message: format!("status {status} is newer than kiln"),
        source: None,
    })?;
    let n = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    Ok(RefreshStatus {
        id: id.clone(),
        state,
        percent_complete: n(found.percentage_complete),
        instances_to_update: n(found.instances_to_update),
        reason: found.status_reason.filter(|r| !r.is_empty()),
    })
}

pub(super) async fn cancel(ctx: &Ctx, name: &GroupName) -> Result<()> {
    match ctx
        .autoscaling
        .cancel_instance_refresh()
        .auto_scaling_group_name(name.as_str())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("ActiveInstanceRefreshNotFound") => Ok(()),
        Err(e) if is_missing(&e) => Err(CloudError::not_found("group", name, &ctx.region)),
        Err(e) => Err(call_error("CancelInstanceRefresh", on(ctx, name), e)),
    }
}

pub(super) async fn rollback(ctx: &Ctx, name: &GroupName) -> Result<()> {
    match ctx
        .autoscaling
        .rollback_instance_refresh()
        .auto_scaling_group_name(name.as_str())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                code(&e),
                Some("ActiveInstanceRefreshNotFound" | "IrreversibleInstanceRefresh")
            ) =>
        {
            Err(CloudError::invalid(
                format!("RollbackInstanceRefresh {}", on(ctx, name)),
                format!(
                    "{}: {}",
                    code(&e).unwrap_or_default(),
                    message(&e).unwrap_or_default()
                ),
            ))
        }
        Err(e) if is_missing(&e) => Err(CloudError::not_found("group", name, &ctx.region)),
        Err(e) => Err(call_error("RollbackInstanceRefresh", on(ctx, name), e)),
    }
}
