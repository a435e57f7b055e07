//! roll: swaps the image behind a load balancer — health-gated rolling
//! and blue/green rollouts, automatic rollback when the new image fails
//! its gate, `roll back` in seconds — on any backend of the `cloud` seam.
//!
//! - [`plan`]: the pure planner (`plan(&Observed, &Goal) -> Action`).
//! - [`exec`]: observes the backend, asks the planner, runs one action,
//!   again, until done; the evidence goes into a [`report::Report`].
//! - [`refresh`]: `--strategy instance-refresh`, Auto Scaling's instance
//!   refresh started and watched with kiln's gate on top.
//! - [`record`]: the roll's state, kept in the group's tags.
//! - [`cmd`]: the subcommands (`up`, `out`, `back`, `status`, `scale`,
//!   `down`).

pub mod cmd;
pub mod config;
pub mod error;
pub mod exec;
pub mod plan;
pub mod record;
pub mod refresh;
pub mod report;

/// Exit codes, documented in `--help` and README.
pub mod exit {
    /// Rolled out, or nothing to do.
    pub const OK: u8 = 0;
    /// The new image failed its gate; the group is back on the previous
    /// image.
    pub const ROLLED_BACK: u8 = 1;
    /// Bad input: flags, an unknown image or group, an image that is not
    /// complete.
    pub const USAGE: u8 = 2;
    /// The cloud or the machine failed; rerunning the command converges.
    pub const FAILURE: u8 = 3;
    /// Interrupted; rerunning the command converges.
    pub const INTERRUPTED: u8 = 130;
}
