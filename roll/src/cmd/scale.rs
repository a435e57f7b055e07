//! `roll scale --group G --size N`: more instances (each passes the gate
//! before it takes traffic) or fewer (each drained before it stops).

use std::time::Duration;

use cloud::GroupName;

use super::out::{RunSpec, run_roll};
use super::{GateArgs, Global, open, parse_group};
use crate::error::RollError;
use crate::plan::Intent;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
    /// The new number of instances (1..=1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub size: u32,
    #[command(flatten)]
    pub gate: GateArgs,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    let cloud = open(global).await?;
    let svc = crate::config::service(&global.backend, &a.group, &global.aws)?;
    run_roll(
        &cloud,
        RunSpec {
            svc,
            group: a.group,
            intent: Intent::Scale { size: a.size },
            gate: a.gate,
            bake: Duration::ZERO,
            shadow_percent: 1,
            keep: Duration::ZERO,
            poll: global.poll(),
            canary: Vec::new(),
            refresh: crate::refresh::RefreshOptions::default(),
        },
    )
    .await
}
