//! balancer: the local fleet's load balancer, an HTTP/1.1 reverse proxy
//! built on hyper.
//!
//! One [`Balancer`] is one listener (optionally TLS) with named target
//! groups; it forwards every new request to exactly one of them
//! ([`Balancer::forward_to`] switches atomically: requests in flight finish
//! where they are), or splits new requests between two by weight
//! ([`Balancer::set_weight`], a blue/green canary: exactly the share asked
//! for, spread evenly; while split, a group whose targets are all
//! unhealthy gets none as long as the other has a healthy one). Per target
//! group:
//! - least-outstanding-requests balancing over the healthy targets,
//!   through pooled keep-alive connections;
//! - active health checks (`GET <path>`, interval, timeout, healthy and
//!   unhealthy thresholds);
//! - deregistration with draining: a deregistered target gets no new
//!   requests and is gone once its in-flight requests finished, or the
//!   deregistration delay passed;
//! - one retry of an idempotent request (GET/HEAD without a body) on
//!   another healthy target when the first attempt failed before any
//!   response byte came back (refused, reset, closed), so a crashed
//!   instance drops no request;
//! - shadow comparison: a sample of live GETs mirrored to another target
//!   group, answers compared without Picky's `duration`;
//! - counters ([`Balancer::counters`]) and Prometheus text on the admin
//!   address (`/metrics`), an access log line per request at debug level.
//!
//! The `cloud` crate's fleet daemon drives it and re-exports its value
//! types ([`types`]) as part of the load-balancer seam.
//!
//! # Layout
//!
//! - `lb`: [`Balancer`], the handle, and the state its tasks share;
//! - `server`: accepting (plain or TLS, `tls`), the admin listener, shutdown;
//! - `proxy`: one request: header rewriting, picking, the retry, local
//!   answers (503/502/504); `body`: the answer body passed through;
//! - `upstream`: connections to targets, pooled per target and driven by
//!   the request's own task (no task per connection);
//! - `pool`: target groups, targets, their health state machine, least
//!   outstanding requests, draining; `health`: the active checks;
//! - `shadow`: sampling, mirroring and comparing;
//! - `metrics`: counters and the Prometheus text.
//!
//! Everything runs as tasks on the tokio runtime [`Balancer::start`] is
//! called on.

mod body;
mod config;
mod health;
mod lb;
mod metrics;
mod pool;
mod proxy;
mod server;
mod shadow;
mod tls;
pub mod types;
mod upstream;

pub use config::{Config, Error, TargetSpec};
pub use lb::Balancer;
pub use types::{
    HealthCheck, LatencySummary, LbCounters, ShadowExample, ShadowReport, TargetCounters,
    TargetHealth, TargetView, TlsFiles, without_duration,
};
