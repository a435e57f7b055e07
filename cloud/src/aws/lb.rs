//! Load balancers as ELBv2: a listener (id = its ARN) whose default action
//! forwards to target groups (id = ARN), targets = EC2 instances.
//!
//! **Which target groups a listener has.** Those its default `forward`
//! action names: the one `TargetGroupArn`, or every entry of a weighted
//! forward (`ForwardConfig.TargetGroups`, weight 0 included), in the
//! order the listener lists them. [`ListenerInfo::forward`] is the entry
//! with the highest weight (the first listed of equals). So the blue/green
//! pair is a weighted forward with the idle group at weight 0 — in
//! Terraform `default_action { type = "forward" forward { target_group {
//! arn = blue, weight = 1 } target_group { arn = green, weight = 0 } } }`
//! (with `lifecycle { ignore_changes = [default_action] }`, since roll
//! moves the weights). A listener that forwards to one target group
//! names only that one; roll must then know the idle one from its own
//! configuration, and the first [`LoadBalancers::switch`] writes both.
//! No tags and no extra call: the action is what ELB routes by.
//!
//! **Health since when.** ELBv2 reports a state, not since when it holds.
//! [`TargetStatus::since_ms`] is when *this process* first saw the
//! current state (an in-process map keyed by target group and instance):
//! a restarted roll starts the clock again, which only makes its waits
//! ("healthy for N polls", "draining at least one interval") longer,
//! never shorter. `in_flight` is always 0 (ELBv2 does not say).
//!
//! Ids that are not ARNs name nothing: NotFound without a call (ELBv2
//! itself answers a malformed ARN with a ValidationError).
//!
//! Listeners are not created or deleted here yet (`roll up --backend aws`,
//! a later slice): they come from Terraform. Shadow comparison and
//! counters are the local balancer's only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, ProtocolEnum, TargetDescription,
    TargetGroup, TargetGroupTuple, TargetHealthDescription, TargetHealthStateEnum,
};

use super::error::{call_error, code, is_missing, sdk_error};
use super::sdk::Ctx;
use crate::error::{CloudError, Result};
use crate::ids::{InstanceId, ListenerId, TargetGroupId};
use crate::lb::{
    HealthCheck, ListenerInfo, ListenerSpec, LoadBalancers, Target, TargetGroupInfo, TargetHealth,
    TargetStatus,
};
use crate::time::now_ms;

/// Target-group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

pub(crate) struct AwsLoadBalancers {
    ctx: Arc<Ctx>,
}

impl AwsLoadBalancers {
    pub fn new(ctx: Arc<Ctx>) -> AwsLoadBalancers {
        AwsLoadBalancers { ctx }
    }

    fn tg_not_found(&self, tg: &TargetGroupId) -> CloudError {
        CloudError::not_found("target group", tg, &self.ctx.region)
    }

    fn listener_not_found(&self, id: &ListenerId) -> CloudError {
        CloudError::not_found("listener", id, &self.ctx.region)
    }

    /// DescribeTargetGroups of one ARN.
    async fn describe_tg(&self, tg: &TargetGroupId) -> Result<TargetGroup> {
        describe_target_group(&self.ctx, tg)
            .await?
            .ok_or_else(|| self.tg_not_found(tg))
    }

    async fn describe_listener(&self, id: &ListenerId) -> Result<Listener> {
        if !is_arn(id.as_str()) {
            return Err(self.listener_not_found(id));
        }
        let ctx = &self.ctx;
        let out = match ctx
            .elb
            .describe_listeners()
            .listener_arns(id.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Err(self.listener_not_found(id)),
            Err(e) => {
                return Err(sdk_error(
                    "DescribeListeners",
                    format!("{id} {}", ctx.place()),
                    e,
                ));
            }
        };
        out.listeners
            .unwrap_or_default()
            .into_iter()
            .find(|l| l.listener_arn.as_deref() == Some(id.as_str()))
            .ok_or_else(|| self.listener_not_found(id))
    }

    /// One target group's targets with their health (and since when this
    /// process sees it).
    async fn target_statuses(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        if !is_arn(tg.as_str()) {
            return Err(self.tg_not_found(tg));
        }
        let ctx = &self.ctx;
        let out = match ctx
            .elb
            .describe_target_health()
            .target_group_arn(tg.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Err(self.tg_not_found(tg)),
            Err(e) => {
                return Err(sdk_error(
                    "DescribeTargetHealth",
                    format!("{tg} {}", ctx.place()),
                    e,
                ));
            }
        };
        let descriptions = out.target_health_descriptions.unwrap_or_default();
        let instances: Vec<String> = descriptions
            .iter()
            .filter_map(|d| d.target.as_ref()?.id.clone())
            .filter(|id| id.starts_with("i-"))
            .collect();
        let ips = private_ips(ctx, &instances).await?;
        let now = now_ms();
        let mut since = ctx.health_since.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        let statuses = descriptions
            .into_iter()
            .filter_map(|d| {
                let (target, health) = status_of(d)?;
                let key = (tg.0.clone(), target.instance.0.clone());
                let kind = health.as_str().to_owned();
                let first = match since.get(&key) {
                    Some((k, at)) if *k == kind => *at,
                    _ => {
                        since.insert(key.clone(), (kind, now));
                        now
                    }
                };
                seen.push(key);
                let address = ips
                    .get(target.instance.as_str())
                    .copied()
                    .or_else(|| target.instance.as_str().parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, target.port));
                Some(TargetStatus {
                    target,
                    address,
                    health,
                    since_ms: first,
                    in_flight: 0,
                })
            })
            .collect();
        // Forget targets that left this group: one registered again later
        // starts from its new state.
        since.retain(|(g, i), _| g != &tg.0 || seen.iter().any(|(_, s)| s == i));
        Ok(statuses)
    }

    fn targets_of(&self, targets: &[Target]) -> Vec<TargetDescription> {
        targets
            .iter()
            .map(|t| {
                TargetDescription::builder()
                    .id(t.instance.as_str())
                    .set_port((t.port != 0).then_some(i32::from(t.port)))
                    .build()
            })
            .collect()
    }
}

/// Whether `s` is an ARN at all.
pub(crate) fn is_arn(s: &str) -> bool {
    s.starts_with("arn:")
}

/// DescribeTargetGroups of one ARN; `None` if there is no such target
/// group. Remembers its port.
pub(crate) async fn describe_target_group(
    ctx: &Ctx,
    tg: &TargetGroupId,
) -> Result<Option<TargetGroup>> {
    if !is_arn(tg.as_str()) {
        return Ok(None);
    }
    let out = match ctx
        .elb
        .describe_target_groups()
        .target_group_arns(tg.as_str())
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => {
            return Err(sdk_error(
                "DescribeTargetGroups",
                format!("{tg} {}", ctx.place()),
                e,
            ));
        }
    };
    let found = out
        .target_groups
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.target_group_arn.as_deref() == Some(tg.as_str()));
    if let (Some(t), Ok(mut ports)) = (&found, ctx.tg_ports.lock())
        && let Some(port) = t.port.and_then(|p| u16::try_from(p).ok())
    {
        ports.insert(tg.0.clone(), port);
    }
    Ok(found)
}

/// A target group's port (ELBv2 cannot change it, so it is read once per
/// process); `None` if the target group is gone.
pub(crate) async fn target_group_port(ctx: &Ctx, tg: &TargetGroupId) -> Result<Option<u16>> {
    if let Some(p) = ctx.tg_ports.lock().ok().and_then(|m| m.get(&tg.0).copied()) {
        return Ok(Some(p));
    }
    Ok(describe_target_group(ctx, tg)
        .await?
        .and_then(|t| t.port)
        .and_then(|p| u16::try_from(p).ok()))
}

/// Private IPs of EC2 instances, by id (DescribeInstances with an
/// `instance-id` filter, 100 at a time: an id EC2 does not list yet is
/// simply absent rather than failing the call).
pub(crate) async fn private_ips(ctx: &Ctx, ids: &[String]) -> Result<HashMap<String, IpAddr>> {
    let mut ips = HashMap::new();
    for i in super::groups::describe_instances(ctx, ids).await? {
        if let (Some(id), Some(ip)) = (
            i.instance_id.as_deref(),
            i.private_ip_address.as_deref().and_then(|a| a.parse().ok()),
        ) {
            ips.insert(id.to_owned(), ip);
        }
    }
    Ok(ips)
}

/// A target and its health as the seam says it; `None` for a description
/// without a target id.
fn status_of(d: TargetHealthDescription) -> Option<(Target, TargetHealth)> {
    let t = d.target?;
    let target = Target {
        instance: InstanceId::new(t.id?),
        port: t.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
    };
    let h = d
        .target_health
        .unwrap_or_else(|| aws_sdk_elasticloadbalancingv2::types::TargetHealth::builder().build());
    let reason = || {
        let r = h.reason.as_ref().map(|r| r.as_str().to_owned());
        match (r, h.description.as_deref()) {
            (Some(r), Some(d)) => format!("{r}: {d}"),
            (Some(r), None) => r,
            (None, Some(d)) => d.to_owned(),
            (None, None) => "unhealthy".to_owned(),
        }
    };
    let health = match &h.state {
        Some(TargetHealthStateEnum::Initial) => TargetHealth::Initial,
        Some(TargetHealthStateEnum::Healthy) => TargetHealth::Healthy,
        Some(TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining) => {
            TargetHealth::Draining
        }
        Some(TargetHealthStateEnum::Unused) => TargetHealth::Unused,
        // unhealthy, unavailable (health checks off), and any state a
        // newer ELBv2 adds: not healthy is all a roll may assume.
        _ => TargetHealth::Unhealthy { reason: reason() },
    };
    Some((target, health))
}

/// The target groups a listener's default action forwards to, in its
/// order, and the one with the highest weight.
pub(crate) fn forwards(l: &Listener) -> Option<(Vec<TargetGroupId>, TargetGroupId)> {
    let a = l
        .default_actions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))?;
    let tuples: Vec<(String, i32)> = match a
        .forward_config
        .as_ref()
        .and_then(|f| f.target_groups.as_ref())
    {
        Some(t) if !t.is_empty() => t
            .iter()
            .filter_map(|t| Some((t.target_group_arn.clone()?, t.weight.unwrap_or(1))))
            .collect(),
        _ => vec![(a.target_group_arn.clone()?, 1)],
    };
    let mut best: Option<(i32, &String)> = None;
    for (arn, w) in &tuples {
        if best.is_none_or(|(bw, _)| *w > bw) {
            best = Some((*w, arn));
        }
    }
    let forward = TargetGroupId::new(best?.1.clone());
    Some((
        tuples
            .into_iter()
            .map(|(a, _)| TargetGroupId::new(a))
            .collect(),
        forward,
    ))
}

/// Every target group of the forward with its percent of new requests
/// (weights over their sum; a plain forward: 100), in their order.
pub(crate) fn weights_of(l: &Listener) -> Vec<(TargetGroupId, u32)> {
    let Some(a) = l
        .default_actions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
    else {
        return Vec::new();
    };
    let tuples: Vec<(TargetGroupId, u64)> = match a
        .forward_config
        .as_ref()
        .and_then(|f| f.target_groups.as_ref())
    {
        Some(t) if !t.is_empty() => t
            .iter()
            .filter_map(|t| {
                let w = t.weight.unwrap_or(1).max(0) as u64;
                Some((TargetGroupId::new(t.target_group_arn.clone()?), w))
            })
            .collect(),
        _ => match &a.target_group_arn {
            Some(arn) => vec![(TargetGroupId::new(arn.clone()), 1)],
            None => Vec::new(),
        },
    };
    let sum: u64 = tuples.iter().map(|(_, w)| w).sum();
    if sum == 0 {
        return tuples.into_iter().map(|(t, _)| (t, 0)).collect();
    }
    let mut out: Vec<(TargetGroupId, u32)> = tuples
        .iter()
        .map(|(t, w)| (t.clone(), (w * 100 / sum) as u32))
        .collect();
    // Rounding down loses at most one per group: the heaviest gets it.
    let lost = 100 - out.iter().map(|(_, p)| p).sum::<u32>();
    if let Some(i) = (0..tuples.len()).max_by_key(|&i| (tuples[i].1, std::cmp::Reverse(i))) {
        out[i].1 += lost;
    }
    out
}

/// The default action for `percent` (1..=99) of new requests to `to` and
/// the rest to the listener's other target group: the one it forwards to
/// now, or (`to` is that one) the other one with a weight. Every group
/// it named stays named, in its order; the stickiness setting is kept.
/// `None`: there is no other target group to split with.
pub(crate) fn split(l: &Listener, to: &TargetGroupId, percent: u32) -> Option<Action> {
    let (mut groups, forward) = forwards(l)?;
    let weights = weights_of(l);
    let other = if forward != *to {
        forward
    } else {
        weights
            .iter()
            .find(|(t, w)| t != to && *w > 0)
            .map(|(t, _)| t.clone())?
    };
    if !groups.contains(to) {
        groups.push(to.clone());
    }
    let stickiness = l
        .default_actions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .and_then(|a| a.forward_config.as_ref())
        .and_then(|f| f.target_group_stickiness_config.clone());
    let weight = |g: &TargetGroupId| match g {
        g if g == to => percent as i32,
        g if *g == other => 100 - percent as i32,
        _ => 0,
    };
    Some(
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        groups
                            .iter()
                            .map(|g| {
                                TargetGroupTuple::builder()
                                    .target_group_arn(g.as_str())
                                    .weight(weight(g))
                                    .build()
                            })
                            .collect(),
                    ))
                    .set_target_group_stickiness_config(stickiness)
                    .build(),
            )
            .build(),
    )
}

/// The default action after a switch to `to`: a weighted forward naming
/// every target group it named before (in their order) plus `to`, all
/// traffic (weight 1) to `to`, weight 0 to the others; the stickiness
/// setting kept.
pub(crate) fn switched(l: &Listener, to: &TargetGroupId) -> Action {
    let mut groups = forwards(l).map(|(g, _)| g).unwrap_or_default();
    if !groups.contains(to) {
        groups.push(to.clone());
    }
    let stickiness = l
        .default_actions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|a| a.r#type == Some(ActionTypeEnum::Forward))
        .and_then(|a| a.forward_config.as_ref())
        .and_then(|f| f.target_group_stickiness_config.clone());
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .set_target_groups(Some(
                    groups
                        .iter()
                        .map(|g| {
                            TargetGroupTuple::builder()
                                .target_group_arn(g.as_str())
                                .weight(i32::from(g == to))
                                .build()
                        })
                        .collect(),
                ))
                .set_target_group_stickiness_config(stickiness)
                .build(),
        )
        .build()
}

#[async_trait]
impl LoadBalancers for AwsLoadBalancers {
    async fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>> {
        self.target_statuses(tg).await
    }

    async fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        if !is_arn(tg.as_str()) {
            return Err(self.tg_not_found(tg));
        }
        let ctx = &self.ctx;
        match ctx
            .elb
            .register_targets()
            .target_group_arn(tg.as_str())
            .set_targets(Some(self.targets_of(targets)))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.tg_not_found(tg)),
            Err(e) => Err(call_error(
                "RegisterTargets",
                format!("{tg} {}", ctx.place()),
                e,
            )),
        }
    }

    async fn deregister(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()> {
        if !is_arn(tg.as_str()) {
            return Err(self.tg_not_found(tg));
        }
        let ctx = &self.ctx;
        match ctx
            .elb
            .deregister_targets()
            .target_group_arn(tg.as_str())
            .set_targets(Some(self.targets_of(targets)))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.tg_not_found(tg)),
            // Not registered (any more): nothing to drain.
            Err(e) if code(&e) == Some("InvalidTarget") => Ok(()),
            Err(e) => Err(call_error(
                "DeregisterTargets",
                format!("{tg} {}", ctx.place()),
                e,
            )),
        }
    }

    async fn target_group(&self, tg: &TargetGroupId) -> Result<TargetGroupInfo> {
        let t = self.describe_tg(tg).await?;
        let ctx = &self.ctx;
        let attrs = match ctx
            .elb
            .describe_target_group_attributes()
            .target_group_arn(tg.as_str())
            .send()
            .await
        {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if is_missing(&e) => return Err(self.tg_not_found(tg)),
            Err(e) => {
                return Err(sdk_error(
                    "DescribeTargetGroupAttributes",
                    format!("{tg} {}", ctx.place()),
                    e,
                ));
            }
        };
        let delay_s = attrs
            .iter()
            .find(|a| a.key.as_deref() == Some(DEREGISTRATION_DELAY))
            .and_then(|a| a.value.as_deref()?.parse::<u64>().ok())
            // ELBv2's default.
            .unwrap_or(300);
        let secs = |s: Option<i32>, default: u64| {
            s.and_then(|s| u64::try_from(s).ok()).unwrap_or(default) * 1000
        };
        let count =
            |c: Option<i32>, default: u32| c.and_then(|c| u32::try_from(c).ok()).unwrap_or(default);
        let health_check = HealthCheck {
            path: t.health_check_path.clone().unwrap_or_else(|| "/".into()),
            interval_ms: secs(t.health_check_interval_seconds, 30),
            timeout_ms: secs(t.health_check_timeout_seconds, 5),
            healthy_threshold: count(t.healthy_threshold_count, 5),
            unhealthy_threshold: count(t.unhealthy_threshold_count, 2),
        };
        Ok(TargetGroupInfo {
            id: tg.clone(),
            health_check,
            deregistration_delay_ms: delay_s * 1000,
            targets: self.target_statuses(tg).await?,
        })
    }

    async fn create_listener(&self, _spec: &ListenerSpec) -> Result<ListenerInfo> {
        Err(CloudError::Unsupported {
            backend: super::BACKEND,
            op: "creating listeners (they come from Terraform; `roll up --backend aws` is a later slice)",
        })
    }

    async fn delete_listener(&self, _id: &ListenerId) -> Result<()> {
        Err(CloudError::Unsupported {
            backend: super::BACKEND,
            op: "deleting listeners (they come from Terraform; `roll down --backend aws` is a later slice)",
        })
    }

    async fn listener(&self, id: &ListenerId) -> Result<ListenerInfo> {
        let l = self.describe_listener(id).await?;
        let (target_groups, forward) = forwards(&l).ok_or_else(|| {
            CloudError::invalid(
                "listener",
                format!(
                    "{id}: its default action does not forward to a target group, \
                     so there is nothing to roll behind it"
                ),
            )
        })?;
        let ctx = &self.ctx;
        let lb = l.load_balancer_arn.clone().unwrap_or_default();
        let dns = match ctx
            .elb
            .describe_load_balancers()
            .load_balancer_arns(&lb)
            .send()
            .await
        {
            Ok(out) => out
                .load_balancers
                .unwrap_or_default()
                .into_iter()
                .find_map(|b| b.dns_name),
            Err(e) if is_missing(&e) => return Err(self.listener_not_found(id)),
            Err(e) => {
                return Err(sdk_error(
                    "DescribeLoadBalancers",
                    format!("{lb} {}", ctx.place()),
                    e,
                ));
            }
        }
        .unwrap_or_default();
        let tls = matches!(l.protocol, Some(ProtocolEnum::Https | ProtocolEnum::Tls));
        Ok(ListenerInfo {
            id: id.clone(),
            address: format!("{dns}:{}", l.port.unwrap_or(if tls { 443 } else { 80 })),
            tls,
            admin: None,
            target_groups,
            forward,
            weights: weights_of(&l),
        })
    }

    async fn switch(&self, id: &ListenerId, tg: &TargetGroupId) -> Result<()> {
        let l = self.describe_listener(id).await?;
        // ELBv2 would refuse an unknown target group; moto accepts
        // anything, so look first.
        self.describe_tg(tg).await?;
        let ctx = &self.ctx;
        match ctx
            .elb
            .modify_listener()
            .listener_arn(id.as_str())
            .default_actions(switched(&l, tg))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.listener_not_found(id)),
            Err(e) => Err(call_error(
                "ModifyListener",
                format!("{id} (forward to {tg}) {}", ctx.place()),
                e,
            )),
        }
    }

    async fn set_weights(&self, id: &ListenerId, tg: &TargetGroupId, percent: u32) -> Result<()> {
        let l = self.describe_listener(id).await?;
        // ELBv2 would refuse an unknown target group; moto accepts
        // anything, so look first.
        self.describe_tg(tg).await?;
        let action = match percent.min(100) {
            100 => switched(&l, tg),
            p => {
                let Some(a) = split(&l, tg, p) else {
                    return Err(CloudError::invalid(
                        "weights",
                        format!(
                            "{tg} takes every request of {id}: a weight needs a second target group"
                        ),
                    ));
                };
                a
            }
        };
        let ctx = &self.ctx;
        match ctx
            .elb
            .modify_listener()
            .listener_arn(id.as_str())
            .default_actions(action)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(self.listener_not_found(id)),
            Err(e) => Err(call_error(
                "ModifyListener",
                format!("{id} ({percent}% to {tg}) {}", ctx.place()),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(action: Action) -> Listener {
        Listener::builder()
            .listener_arn("arn:l")
            .default_actions(action)
            .build()
    }

    fn weighted(w: &[(&str, i32)]) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        w.iter()
                            .map(|(a, w)| {
                                TargetGroupTuple::builder()
                                    .target_group_arn(*a)
                                    .weight(*w)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build(),
            )
            .build()
    }

    fn tg(s: &str) -> TargetGroupId {
        TargetGroupId::from(s)
    }

    #[test]
    fn a_weighted_forward_names_both_and_forwards_to_the_heaviest() {
        let l = listener(weighted(&[("arn:a", 0), ("arn:b", 1)]));
        assert_eq!(
            forwards(&l),
            Some((vec![tg("arn:a"), tg("arn:b")], tg("arn:b")))
        );
        let l = listener(weighted(&[("arn:a", 5), ("arn:b", 5)]));
        assert_eq!(
            forwards(&l).map(|f| f.1),
            Some(tg("arn:a")),
            "ties: the first"
        );
        let single = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("arn:a")
            .build();
        assert_eq!(
            forwards(&listener(single)),
            Some((vec![tg("arn:a")], tg("arn:a")))
        );
        let redirect = Action::builder().r#type(ActionTypeEnum::Redirect).build();
        assert_eq!(forwards(&listener(redirect)), None);
    }

    #[test]
    fn a_switch_keeps_the_order_and_moves_the_weight() {
        let l = listener(weighted(&[("arn:a", 1), ("arn:b", 0)]));
        let after = listener(switched(&l, &tg("arn:b")));
        assert_eq!(
            forwards(&after),
            Some((vec![tg("arn:a"), tg("arn:b")], tg("arn:b")))
        );
        let single = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("arn:a")
            .build();
        let after = listener(switched(&listener(single), &tg("arn:b")));
        assert_eq!(
            forwards(&after),
            Some((vec![tg("arn:a"), tg("arn:b")], tg("arn:b"))),
            "the first switch of a one-group listener names both"
        );
    }

    #[test]
    fn weights_read_as_percent_and_split_keeps_the_order() {
        let l = listener(weighted(&[("arn:a", 1), ("arn:b", 0)]));
        assert_eq!(weights_of(&l), [(tg("arn:a"), 100), (tg("arn:b"), 0)]);
        let ten = listener(split(&l, &tg("arn:b"), 10).expect("a split"));
        assert_eq!(weights_of(&ten), [(tg("arn:a"), 90), (tg("arn:b"), 10)]);
        assert_eq!(forwards(&ten).map(|f| f.1), Some(tg("arn:a")));
        // The forward's own weight: the rest to the one it splits with.
        let back = listener(split(&ten, &tg("arn:a"), 70).expect("a split"));
        assert_eq!(weights_of(&back), [(tg("arn:a"), 70), (tg("arn:b"), 30)]);
        // Nothing to split with.
        assert!(split(&l, &tg("arn:a"), 50).is_none());
        // A switch after a split sends everything to one.
        let after = listener(switched(&ten, &tg("arn:b")));
        assert_eq!(weights_of(&after), [(tg("arn:a"), 0), (tg("arn:b"), 100)]);
        // Weights that are not percent: by their share, summing to 100.
        let odd = listener(weighted(&[("arn:a", 2), ("arn:b", 1)]));
        assert_eq!(weights_of(&odd), [(tg("arn:a"), 67), (tg("arn:b"), 33)]);
    }

    #[test]
    fn health_states_map_with_their_reasons() {
        use aws_sdk_elasticloadbalancingv2::types::{TargetHealth as H, TargetHealthReasonEnum};
        let d = |state: TargetHealthStateEnum, reason: Option<TargetHealthReasonEnum>| {
            TargetHealthDescription::builder()
                .target(TargetDescription::builder().id("i-1").port(8080).build())
                .target_health(
                    H::builder()
                        .state(state)
                        .set_reason(reason)
                        .description("Health checks failed")
                        .build(),
                )
                .build()
        };
        let (t, h) = status_of(d(TargetHealthStateEnum::Initial, None)).expect("a target");
        assert_eq!((t.instance.as_str(), t.port), ("i-1", 8080));
        assert_eq!(h, TargetHealth::Initial);
        let (_, h) = status_of(d(
            TargetHealthStateEnum::Unhealthy,
            Some(TargetHealthReasonEnum::FailedHealthChecks),
        ))
        .expect("a target");
        assert_eq!(
            h,
            TargetHealth::Unhealthy {
                reason: "Target.FailedHealthChecks: Health checks failed".into()
            }
        );
        let (_, h) = status_of(d(TargetHealthStateEnum::Unavailable, None)).expect("a target");
        assert!(matches!(h, TargetHealth::Unhealthy { .. }));
        let (_, h) = status_of(d(TargetHealthStateEnum::Draining, None)).expect("a target");
        assert_eq!(h, TargetHealth::Draining);
        let (_, h) = status_of(d(TargetHealthStateEnum::Unused, None)).expect("a target");
        assert_eq!(h, TargetHealth::Unused);
    }
}
