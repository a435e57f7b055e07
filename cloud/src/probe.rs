//! The gate an instance passes before it takes traffic, as one probe:
//! `/ready` answers 200, `/version` reports the expected image id and index
//! digest, and every golden query in the image's manifest answers exactly
//! as recorded at bake time (all but Picky's `duration`). Then the
//! balancer's own health checks still have to pass (that part is the
//! target group's, see [`crate::lb`]).
//!
//! A probe is one attempt and never waits: an instance still starting is
//! [`GateOutcome::NotReady`], and the caller (roll's planner) decides how
//! long that may last (`--gate-timeout`). How an instance is reached is the
//! backend's business: locally its loopback address; on aws a test
//! listener.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::groups::GroupInstance;
use crate::ids::ImageId;
use crate::images::{GoldenRecord, ImageManifest};

/// What an instance of one image must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    pub image: ImageId,
    /// The index name: golden queries go to `GET /<index>?query=…`.
    pub index: String,
    pub index_digest: String,
    pub golden: Vec<GoldenRecord>,
}

impl GateSpec {
    pub fn from_manifest(id: &ImageId, m: &ImageManifest) -> GateSpec {
        GateSpec {
            image: id.clone(),
            index: m.index.name.clone(),
            index_digest: m.index.digest.clone(),
            golden: m.index.golden.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum GateOutcome {
    Passed,
    /// Not answering yet, or `/ready` not 200 yet.
    NotReady {
        why: String,
    },
    /// Answered, wrongly: which check, what was expected, what came back.
    Failed {
        check: String,
        expected: String,
        actual: String,
    },
}

impl GateOutcome {
    pub fn failed(
        check: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> GateOutcome {
        GateOutcome::Failed {
            check: check.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }

    pub fn is_passed(&self) -> bool {
        matches!(self, GateOutcome::Passed)
    }
}

impl std::fmt::Display for GateOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateOutcome::Passed => f.write_str("passed"),
            GateOutcome::NotReady { why } => write!(f, "not ready: {why}"),
            GateOutcome::Failed {
                check,
                expected,
                actual,
            } => write!(f, "{check}: expected {expected}, got {actual}"),
        }
    }
}

#[async_trait]
pub trait Probes: Send + Sync {
    /// Runs the gate once against `instance`. `Err` only when the backend
    /// itself failed; an instance that does not answer is `NotReady`.
    async fn gate(&self, instance: &GroupInstance, spec: &GateSpec) -> Result<GateOutcome>;

    /// The health-check path a target group must use when its health
    /// check is (part of) the gate: aws's default gate trusts `/ready`,
    /// which replays the golden queries. `None`: the probe checks
    /// everything itself.
    fn gate_health_path(&self) -> Option<&'static str> {
        None
    }

    /// Which of the alarms `names` are firing now (CloudWatch's `ALARM`
    /// state on aws). A name that does not exist is
    /// [`crate::CloudError::Invalid`] (a typo must not read as "quiet"); a
    /// backend without alarms answers [`crate::CloudError::Unsupported`]
    /// for any name.
    async fn alarms_firing(&self, names: &[String]) -> Result<Vec<String>>;

    /// Runs the gate `rounds` times through a listener at `address`
    /// (`host:port`, HTTP) in front of a whole set of instances: a test
    /// listener forwarding to the idle target group. Each round is a new
    /// connection, so the balancer spreads them over the set; every
    /// answer must be the new image's.
    async fn gate_set(&self, address: &str, spec: &GateSpec, rounds: u32) -> Result<GateOutcome> {
        Ok(gate_through(address, spec, rounds).await)
    }
}

/// [`Probes::gate_set`] over plain HTTP: the address resolved once, then
/// [`gate_http`] `rounds` times; the first round that did not pass is the
/// outcome.
pub async fn gate_through(address: &str, spec: &GateSpec, rounds: u32) -> GateOutcome {
    let addr = match tokio::net::lookup_host(address).await {
        Ok(mut a) => match a.next() {
            Some(a) => a,
            None => {
                return GateOutcome::NotReady {
                    why: format!("{address} resolves to no address"),
                };
            }
        },
        Err(e) => {
            return GateOutcome::NotReady {
                why: format!("{address}: {e}"),
            };
        }
    };
    for _ in 0..rounds.max(1) {
        let o = gate_http(addr, spec).await;
        if !o.is_passed() {
            return o;
        }
    }
    GateOutcome::Passed
}

pub use balancer::without_duration;

/// `application/x-www-form-urlencoded` for a query parameter.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The request path of a golden query.
pub fn golden_path(index: &str, g: &GoldenRecord) -> String {
    format!(
        "/{index}?query={}&ids={}&offset={}",
        form_encode(&g.query),
        g.ids,
        g.offset
    )
}

/// The gate over plain HTTP/1 against `addr` (the local backend; the aws
/// backend runs the same checks through a test listener).
pub async fn gate_http(addr: std::net::SocketAddr, spec: &GateSpec) -> GateOutcome {
    use crate::http::Http1;
    let timeout = std::time::Duration::from_secs(5);
    let mut conn = match Http1::connect(addr, timeout).await {
        Ok(c) => c,
        Err(e) => {
            return GateOutcome::NotReady {
                why: format!("{addr}: {e}"),
            };
        }
    };
    match conn.get("/ready", timeout).await {
        Ok((200, _)) => {}
        Ok((status, _)) => {
            return GateOutcome::NotReady {
                why: format!("/ready answered {status}"),
            };
        }
        Err(e) => {
            return GateOutcome::NotReady {
                why: format!("/ready: {e}"),
            };
        }
    }
    let version = match conn.get("/version", timeout).await {
        Ok((200, body)) => body,
        Ok((status, _)) => {
            return GateOutcome::failed("/version status", "200", status.to_string());
        }
        Err(e) => return GateOutcome::failed("/version", "an answer", e.to_string()),
    };
    let v: serde_json::Value = match serde_json::from_slice(&version) {
        Ok(v) => v,
        Err(_) => {
            return GateOutcome::failed(
                "/version",
                "JSON",
                String::from_utf8_lossy(&version).into_owned(),
            );
        }
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    if field("image") != spec.image.as_str() {
        return GateOutcome::failed("/version image", spec.image.as_str(), field("image"));
    }
    if field("index_digest") != spec.index_digest {
        return GateOutcome::failed(
            "/version index_digest",
            &spec.index_digest,
            field("index_digest"),
        );
    }
    for g in &spec.golden {
        let path = golden_path(&spec.index, g);
        let body = match conn.get(&path, timeout).await {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                return GateOutcome::failed(
                    format!("golden {path}"),
                    format!("200 {}", g.answer),
                    format!("{status} {}", String::from_utf8_lossy(&body)),
                );
            }
            Err(e) => {
                return GateOutcome::failed(format!("golden {path}"), &g.answer, e.to_string());
            }
        };
        let got = without_duration(&body);
        if got.as_ref() != without_duration(g.answer.as_bytes()).as_ref() {
            return GateOutcome::failed(
                format!("golden {path}"),
                &g.answer,
                String::from_utf8_lossy(&got).into_owned(),
            );
        }
    }
    GateOutcome::Passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(form_encode("title:alan p"), "title%3Aalan+p");
        assert_eq!(form_encode("hemingwai~"), "hemingwai%7E");
        assert_eq!(form_encode("ä"), "%C3%A4");
    }
}
