//! `roll back --group G [--to ID]`: back to the image before the current
//! one. While a blue/green standby is kept and healthy, that is one
//! switch of the listener (well under a second); otherwise a rolling,
//! gated roll to that image. A roll in progress is rolled back.

use std::time::Duration;

use cloud::{GroupName, ImageId};

use super::out::{RunSpec, run_roll};
use super::{GateArgs, Global, check_image, open, parse_duration, parse_group, parse_image};
use crate::error::RollError;
use crate::plan::Intent;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
    /// The image to go back to (default: the one before the current one).
    #[arg(long, value_parser = parse_image)]
    pub to: Option<ImageId>,
    #[command(flatten)]
    pub gate: GateArgs,
    /// After a switch back, how long the set switched away from is kept
    /// as the new standby.
    #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_duration)]
    pub keep: Duration,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    let cloud = open(global).await?;
    let svc = crate::config::service(&global.backend, &a.group, &global.aws)?;
    if let Some(to) = &a.to {
        check_image(&cloud, to).await?;
    }
    run_roll(
        &cloud,
        RunSpec {
            svc,
            group: a.group,
            intent: Intent::Back { to: a.to },
            gate: a.gate,
            bake: Duration::ZERO,
            shadow_percent: 1,
            keep: a.keep,
            poll: global.poll(),
            canary: Vec::new(),
            refresh: crate::refresh::RefreshOptions::default(),
        },
    )
    .await
}
