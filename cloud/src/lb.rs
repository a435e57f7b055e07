//! Load balancers: the target set a group's instances join, with health as
//! the balancer sees it. `roll` registers a new instance only after its own
//! gate passed, and deregisters (then waits out draining) before it
//! terminates an old one.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{InstanceId, TargetGroupId};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub instance: InstanceId,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TargetHealth {
    /// Registered, health checks not yet passed.
    Initial,
    Healthy,
    Unhealthy {
        reason: String,
    },
    /// Deregistered, in-flight requests finishing.
    Draining,
    /// Not registered / not in use.
    Unused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub target: Target,
    pub health: TargetHealth,
}

#[async_trait]
pub trait LoadBalancers: Send + Sync {
    /// Every registered target with its health.
    async fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>>;

    async fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()>;

    /// Starts draining; the target shows `Draining` until it is gone.
    async fn deregister(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()>;

    async fn health(&self, tg: &TargetGroupId, target: &Target) -> Result<TargetHealth> {
        Ok(self
            .targets(tg)
            .await?
            .into_iter()
            .find(|t| &t.target == target)
            .map(|t| t.health)
            .unwrap_or(TargetHealth::Unused))
    }
}
