//! The local fleet: groups of instances (searchd processes started from
//! images), load balancers in front of them, and the daemon that keeps
//! both running — the local backend's Auto Scaling and ELB.
//!
//! ```text
//! .kiln/fleet/
//!   daemon.lock        flock: held by the one running daemon
//!   daemon.sock        its unix socket (proto.rs)
//!   daemon.log         its stderr
//!   daemon.pid         its pid (informational; liveness is the lock)
//!   state.json         groups, listeners, targets (model.rs), atomic writes
//!   leases/<group>.lock  a roll's lease (held by the roll process)
//!   instances/<id>/    root/ (the image unpacked), instance.lock, pgid, console.log
//! ```
//!
//! - `daemon.rs`: the daemon (requests, reconciliation, adoption).
//! - `supervisor.rs`: an instance as processes (unit, lock, stop).
//! - `client.rs`: the seam's `Groups`, `LoadBalancers` and `Probes` for
//!   [`crate::local::LocalCloud`], as calls to the daemon; leases.
//! - The balancer itself is the `balancer` crate.

pub mod client;
pub mod daemon;
pub mod model;
pub mod proto;
pub mod supervisor;

pub use client::{DaemonCommand, FleetClient};
pub use daemon::{Paths, run};
