//! Value types the balancer reports and is configured with. The `cloud`
//! crate re-exports them as part of its load-balancer seam, so they are
//! serde types with stable, snake_case JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Active health checks of a target group (ELBv2's settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive successes before an initial or unhealthy target is
    /// healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures before a healthy target is unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    /// `/ready` every 5 s, 2 s timeout, 2 up / 2 down: fast enough for a
    /// fleet whose instances are ready in milliseconds.
    fn default() -> Self {
        HealthCheck {
            path: "/ready".into(),
            interval_ms: 5_000,
            timeout_ms: 2_000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
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

impl TargetHealth {
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetHealth::Initial => "initial",
            TargetHealth::Healthy => "healthy",
            TargetHealth::Unhealthy { .. } => "unhealthy",
            TargetHealth::Draining => "draining",
            TargetHealth::Unused => "unused",
        }
    }
}

/// One target of a target group as [`crate::Balancer::targets`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    /// Instance id.
    pub id: String,
    pub addr: SocketAddr,
    pub health: TargetHealth,
    /// When `health` last changed, Unix ms (wall clock).
    pub since_ms: u64,
    /// Requests sent to it whose answers are not finished yet.
    pub in_flight: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Latency of a set of answers, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One request whose mirrored answer differed from the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowExample {
    /// Path and query.
    pub request: String,
    /// Target ids (instance ids).
    pub live_target: String,
    pub live_status: u16,
    /// Bodies truncated to 1 KiB.
    pub live_body: String,
    pub shadow_target: String,
    /// 0 when the mirrored request got no answer at all.
    pub shadow_status: u16,
    pub shadow_body: String,
}

/// What shadowing saw so far. Bodies are compared without Picky's
/// `duration`, which differs on every answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The target group mirrored to.
    pub target_group: String,
    /// Requests mirrored.
    pub mirrored: u64,
    /// Pairs of answers compared.
    pub compared: u64,
    /// Compared pairs whose status or body differed.
    pub differing: u64,
    /// Mirrored requests that failed or answered an error status where
    /// the live answer was 200.
    pub errors: u64,
    /// Samples not mirrored (too many in flight, body too large, no
    /// healthy shadow target).
    pub skipped: u64,
    /// The first few differences (at most 5).
    pub examples: Vec<ShadowExample>,
    pub live_latency: LatencySummary,
    pub shadow_latency: LatencySummary,
}

/// Requests a target answered, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounters {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
}

/// The balancer's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbCounters {
    /// Requests received from clients.
    pub requests: u64,
    /// Answers sent to clients, by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Answers with a 5xx status, whether the balancer made them (502,
    /// 503, 504: no target answered) or a target did: what a client saw
    /// fail. Plus requests whose answer broke off mid-body.
    pub failed: u64,
    /// Idempotent requests retried on another target after the first
    /// failed before any response byte.
    pub retries: u64,
    /// By target id (instance id).
    pub per_target: BTreeMap<String, TargetCounters>,
}

impl LbCounters {
    /// What happened between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &LbCounters) -> LbCounters {
        let sub = |a: &BTreeMap<u16, u64>, b: &BTreeMap<u16, u64>| {
            a.iter()
                .map(|(k, v)| (*k, v.saturating_sub(*b.get(k).unwrap_or(&0))))
                .filter(|(_, v)| *v > 0)
                .collect::<BTreeMap<_, _>>()
        };
        LbCounters {
            requests: self.requests.saturating_sub(earlier.requests),
            by_status: sub(&self.by_status, &earlier.by_status),
            failed: self.failed.saturating_sub(earlier.failed),
            retries: self.retries.saturating_sub(earlier.retries),
            per_target: self
                .per_target
                .iter()
                .filter_map(|(id, c)| {
                    let before = earlier.per_target.get(id).cloned().unwrap_or_default();
                    let d = TargetCounters {
                        requests: c.requests.saturating_sub(before.requests),
                        by_status: sub(&c.by_status, &before.by_status),
                    };
                    (d.requests > 0).then(|| (id.clone(), d))
                })
                .collect(),
        }
    }
}

/// A Picky answer without its `duration` value (written `0`), so answers
/// of the same query compare equal byte for byte. `duration` is the
/// second-to-last key searchd writes; anything else is returned as is.
pub fn without_duration(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const KEY: &[u8] = b",\"duration\":";
    let Some(at) = body.windows(KEY.len()).rposition(|w| w == KEY) else {
        return body.into();
    };
    let start = at + KEY.len();
    let len = body[start..]
        .iter()
        .position(|b| !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+')))
        .unwrap_or(body.len() - start);
    if len == 0 || &body[start..start + len] == b"0" {
        return body.into();
    }
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..start]);
    out.push(b'0');
    out.extend_from_slice(&body[start + len..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_is_zeroed_and_nothing_else() {
        let a = br#"{"allocations":[],"offset":0,"duration":0.000123,"total":0}"#;
        let b = br#"{"allocations":[],"offset":0,"duration":0,"total":0}"#;
        assert_eq!(without_duration(a).as_ref(), b.as_slice());
        assert_eq!(without_duration(b).as_ref(), b.as_slice());
        let c = br#"{"allocations":[],"offset":0,"duration":1.5e-05,"total":7}"#;
        assert_eq!(
            without_duration(c).as_ref(),
            br#"{"allocations":[],"offset":0,"duration":0,"total":7}"#.as_slice()
        );
        assert_eq!(without_duration(b"no key here").as_ref(), b"no key here");
    }

    #[test]
    fn counters_subtract() {
        let a = LbCounters {
            requests: 10,
            by_status: BTreeMap::from([(200, 10)]),
            ..LbCounters::default()
        };
        let mut b = a.clone();
        b.requests = 15;
        b.by_status.insert(200, 14);
        b.by_status.insert(502, 1);
        b.failed = 1;
        let d = b.since(&a);
        assert_eq!(d.requests, 5);
        assert_eq!(d.by_status.get(&200), Some(&4));
        assert_eq!(d.by_status.get(&502), Some(&1));
        assert_eq!(d.failed, 1);
    }
}
