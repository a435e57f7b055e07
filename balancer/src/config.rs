//! What a balancer is started with, and the errors its API returns.

use std::net::SocketAddr;
use std::time::Duration;

use crate::types::{HealthCheck, TargetHealth, TlsFiles};

/// One listener and the settings its target groups share.
#[derive(Debug, Clone)]
pub struct Config {
    /// A name for logs and metric labels (the listener id, e.g. "web").
    pub name: String,
    /// Where clients connect; port 0 picks a free port
    /// ([`crate::Balancer::address`] tells which).
    pub listen: SocketAddr,
    /// Where `/metrics` and `/live` answer; port 0 allowed.
    pub admin: Option<SocketAddr>,
    /// PEM certificate chain and key: the listener speaks TLS.
    pub tls: Option<TlsFiles>,
    pub health: HealthCheck,
    /// How long a deregistered target may keep finishing requests.
    pub deregistration_delay: Duration,
}

/// A target to register in a target group.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Instance id, e.g. "i-0123abcd".
    pub id: String,
    pub addr: SocketAddr,
    /// Health it starts with: `Initial` for a new target; `Healthy` for one
    /// re-adopted after a daemon restart that was healthy before (so
    /// traffic continues at once).
    pub initial: TargetHealth,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The certificate or key could not be used; names the file and the
    /// problem.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("unknown target group {0:?}")]
    UnknownTargetGroup(String),
    /// The target group takes traffic or is mirrored to, so it cannot be
    /// removed.
    #[error("target group {target_group:?} is {role}")]
    TargetGroupInUse {
        target_group: String,
        role: &'static str,
    },
    /// A weight for the only target group requests go to: there is no
    /// other one to give the rest.
    #[error("target group {0:?} takes every request: a weight needs a second one to split with")]
    NothingToSplit(String),
    /// `start` was not called on a tokio runtime.
    #[error("the balancer needs a tokio runtime")]
    NoRuntime,
}
