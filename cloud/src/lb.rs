//! Load balancers: a listener that forwards to one of its target groups,
//! and target groups whose members it health-checks (aws: an ELBv2
//! listener and target groups; local: the fleet daemon's balancer).
//!
//! `roll` puts an instance in service only after its own gate passed,
//! deregisters (and waits out draining) before it terminates an old one,
//! and switches a listener between two target groups for blue/green.
//! Shadow comparison and counters are capabilities only the local
//! balancer has; other backends answer `Unsupported`.

use std::net::SocketAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use balancer::{
    HealthCheck, LatencySummary, LbCounters, ShadowExample, ShadowReport, TargetCounters,
    TargetHealth, TlsFiles,
};

use crate::error::{CloudError, Result};
use crate::ids::{InstanceId, ListenerId, TargetGroupId};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub instance: InstanceId,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub target: Target,
    /// Where the balancer sends its requests.
    pub address: Option<SocketAddr>,
    pub health: TargetHealth,
    /// Since when `health` holds, Unix ms.
    pub since_ms: u64,
    /// Requests sent to it and not yet answered (where the balancer
    /// knows; 0 otherwise).
    #[serde(default)]
    pub in_flight: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupInfo {
    pub id: TargetGroupId,
    pub health_check: HealthCheck,
    /// How long a deregistered target may keep finishing requests.
    pub deregistration_delay_ms: u64,
    pub targets: Vec<TargetStatus>,
}

/// A listener and the target groups it may forward to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSpec {
    pub id: ListenerId,
    pub address: SocketAddr,
    /// Where the balancer's own `/metrics` answers (local).
    pub admin: Option<SocketAddr>,
    pub tls: Option<TlsFiles>,
    pub health_check: HealthCheck,
    pub deregistration_delay_ms: u64,
    pub target_groups: Vec<TargetGroupId>,
    /// The target group that takes traffic first.
    pub forward: TargetGroupId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    pub id: ListenerId,
    /// `host:port` clients connect to.
    pub address: String,
    pub tls: bool,
    pub admin: Option<String>,
    pub target_groups: Vec<TargetGroupId>,
    /// Where new requests go: the heaviest of `weights` (a tie: the one
    /// that had them all before, where the backend can tell).
    pub forward: TargetGroupId,
    /// Percent of new requests per target group, summing to 100: the
    /// forward at 100 unless [`LoadBalancers::set_weights`] split them.
    #[serde(default)]
    pub weights: Vec<(TargetGroupId, u32)>,
}

impl ListenerInfo {
    /// Percent of new requests `tg` gets now.
    pub fn weight_of(&self, tg: &TargetGroupId) -> u32 {
        match self.weights.iter().find(|(t, _)| t == tg) {
            Some((_, w)) => *w,
            None if self.weights.is_empty() && *tg == self.forward => 100,
            None => 0,
        }
    }

    /// `http://…` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }
}

/// Mirror a sample of live GET requests to a target group that takes no
/// traffic of its own, and compare its answers with the live ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowSpec {
    pub target_group: TargetGroupId,
    /// Share of live GETs mirrored, 1..=100.
    pub percent: u32,
}

fn unsupported(backend: &'static str, op: &'static str) -> CloudError {
    CloudError::Unsupported { backend, op }
}

#[async_trait]
pub trait LoadBalancers: Send + Sync {
    /// Every registered (or draining) target with its health.
    async fn targets(&self, tg: &TargetGroupId) -> Result<Vec<TargetStatus>>;

    async fn register(&self, tg: &TargetGroupId, targets: &[Target]) -> Result<()>;

    /// Starts draining; the target shows `Draining` until its in-flight
    /// requests finished or the deregistration delay passed, then is gone.
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

    /// Settings and targets of one target group.
    async fn target_group(&self, tg: &TargetGroupId) -> Result<TargetGroupInfo>;

    /// Creates a listener with its target groups. Idempotent: an existing
    /// listener of that id is returned as it is.
    async fn create_listener(&self, spec: &ListenerSpec) -> Result<ListenerInfo>;

    /// Removes the listener and its target groups. Idempotent.
    async fn delete_listener(&self, id: &ListenerId) -> Result<()>;

    /// [`CloudError::NotFound`] if there is no such listener.
    async fn listener(&self, id: &ListenerId) -> Result<ListenerInfo>;

    /// Sends every new request to `tg`, at once; requests in flight finish
    /// where they are.
    async fn switch(&self, id: &ListenerId, tg: &TargetGroupId) -> Result<()>;

    /// A weighted forward (a blue/green canary): `percent` (0..=100) of
    /// new requests to `tg`, the rest to the listener's other target
    /// group — the one forwarded to now, or, when that is `tg`, the one
    /// it shares traffic with. 100 is [`LoadBalancers::switch`]; any
    /// later `switch` sends everything to one target group again. An
    /// unknown target group is NotFound and changes nothing.
    async fn set_weights(
        &self,
        _id: &ListenerId,
        _tg: &TargetGroupId,
        _percent: u32,
    ) -> Result<()> {
        Err(unsupported("this", "weighted forwarding"))
    }

    /// Starts mirroring a sample of the listener's GETs to `spec`'s target
    /// group (results from zero).
    async fn start_shadow(&self, _id: &ListenerId, _spec: &ShadowSpec) -> Result<()> {
        Err(unsupported("this", "shadow comparison"))
    }

    /// Stops mirroring; returns what was seen.
    async fn stop_shadow(&self, _id: &ListenerId) -> Result<ShadowReport> {
        Err(unsupported("this", "shadow comparison"))
    }

    /// What mirroring saw so far, if it runs.
    async fn shadow(&self, _id: &ListenerId) -> Result<Option<ShadowReport>> {
        Err(unsupported("this", "shadow comparison"))
    }

    /// The listener's request counters.
    async fn counters(&self, _id: &ListenerId) -> Result<LbCounters> {
        Err(unsupported("this", "balancer counters"))
    }
}
