//! The gate on aws. Instances have no public address and roll usually
//! runs outside the VPC (in CI), so how a new instance is checked before
//! it takes traffic is a choice ([`AwsGate`]):
//!
//! - [`AwsGate::Health`] (the default): the target group's health check
//!   *is* the gate. Its path is `/ready`, which searchd answers 200 only
//!   after it verified its snapshot and replayed the image's golden
//!   queries byte for byte; the image an instance runs is checked from
//!   EC2 (its actual `ImageId`), and roll waits until the instance has
//!   been healthy in the target group for the warm-up before any old one
//!   leaves. So the probe itself passes at once, saying so in the report.
//! - [`AwsGate::PrivateIp`]: roll runs inside the VPC (a CI runner there,
//!   a bastion): the full gate over HTTP against the instance's private
//!   address while Auto Scaling holds it in `Pending:Wait` (kiln's launch
//!   hook), exactly as the local backend does — `/ready`, `/version`
//!   (image id and index digest), every golden query — before it is ever
//!   registered in a target group.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{AlarmType, StateValue};

use super::error::sdk_error;
use super::sdk::Ctx;

use crate::error::{CloudError, Result};
use crate::groups::GroupInstance;
use crate::probe::{GateOutcome, GateSpec, Probes, gate_http};

/// How new instances are gated on aws (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AwsGate {
    /// The target group's `/ready` health check (roll outside the VPC).
    #[default]
    Health,
    /// The full gate against the instance's private IP (roll inside the
    /// VPC).
    PrivateIp,
}

impl AwsGate {
    pub const NAMES: [&'static str; 2] = ["health", "private-ip"];

    pub fn as_str(self) -> &'static str {
        match self {
            AwsGate::Health => "health",
            AwsGate::PrivateIp => "private-ip",
        }
    }
}

impl std::str::FromStr for AwsGate {
    type Err = CloudError;
    fn from_str(s: &str) -> Result<AwsGate> {
        match s {
            "health" => Ok(AwsGate::Health),
            "private-ip" => Ok(AwsGate::PrivateIp),
            other => Err(CloudError::invalid(
                "gate",
                format!("{other:?}: use health or private-ip"),
            )),
        }
    }
}

pub(crate) struct AwsProbes {
    ctx: Arc<Ctx>,
    how: AwsGate,
}

impl AwsProbes {
    pub fn new(ctx: Arc<Ctx>, how: AwsGate) -> AwsProbes {
        AwsProbes { ctx, how }
    }
}

/// Alarm names per DescribeAlarms.
const ALARM_BATCH: usize = 100;

/// What a [`AwsGate::Health`] gate reports instead of probing.
pub const HEALTH_GATE: &str = "gated by the target group's /ready health check \
(searchd's /ready replays the golden queries; the image is checked from EC2)";

#[async_trait]
impl Probes for AwsProbes {
    async fn gate(&self, instance: &GroupInstance, spec: &GateSpec) -> Result<GateOutcome> {
        if instance.image != spec.image {
            return Ok(GateOutcome::failed(
                "image (EC2 ImageId)",
                spec.image.as_str(),
                instance.image.as_str(),
            ));
        }
        match self.how {
            AwsGate::Health => {
                tracing::info!(instance = %instance.id, "{HEALTH_GATE}");
                Ok(GateOutcome::Passed)
            }
            AwsGate::PrivateIp => match instance.address {
                Some(addr) => Ok(gate_http(addr, spec).await),
                None => Ok(GateOutcome::NotReady {
                    why: "no private address yet".into(),
                }),
            },
        }
    }

    fn gate_health_path(&self) -> Option<&'static str> {
        (self.how == AwsGate::Health).then_some("/ready")
    }

    /// DescribeAlarms of the names (metric and composite alarms, 100 per
    /// call): those in `ALARM`. `INSUFFICIENT_DATA` is not firing (a new
    /// alarm, or a metric nobody has sent yet).
    async fn alarms_firing(&self, names: &[String]) -> Result<Vec<String>> {
        let ctx = &self.ctx;
        let mut seen = Vec::new();
        let mut firing = Vec::new();
        for chunk in names.chunks(ALARM_BATCH) {
            let mut token = None;
            loop {
                let out = ctx
                    .cloudwatch
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_error(
                            "DescribeAlarms",
                            format!("{} {}", chunk.join(","), ctx.place()),
                            e,
                        )
                    })?;
                let all = out
                    .metric_alarms()
                    .iter()
                    .map(|a| (a.alarm_name(), a.state_value()))
                    .chain(
                        out.composite_alarms()
                            .iter()
                            .map(|a| (a.alarm_name(), a.state_value())),
                    );
                for (name, state) in all {
                    let Some(name) = name else { continue };
                    seen.push(name.to_owned());
                    if state == Some(&StateValue::Alarm) {
                        firing.push(name.to_owned());
                    }
                }
                match out.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
        }
        if let Some(missing) = names.iter().find(|n| !seen.contains(n)) {
            return Err(CloudError::invalid(
                "alarm",
                format!("{missing}: no such CloudWatch alarm {}", ctx.place()),
            ));
        }
        firing.sort();
        firing.dedup();
        Ok(firing)
    }
}
