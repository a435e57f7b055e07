//! `roll down --group G`: stops the balancer (in-flight requests finish),
//! then the group and its blue/green twin. The fleet daemon exits when it
//! serves no group. Running it again is a no-op.
//!
//! On aws it removes exactly what `roll up --backend aws` made for G (the
//! `kiln:roll-up=G` tag) and blue/green twins roll made for it, in
//! dependency order (`cloud::aws::setup`); a group G roll up did not make
//! (Terraform's) is refused, exit 2, before anything is touched.

use cloud::{GroupName, ListenerId};

use super::{Global, holder, open, parse_group, roll_id};
use crate::error::RollError;
use crate::exec::twin_of;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_parser = parse_group)]
    pub group: GroupName,
}

pub async fn run(global: &Global, a: Args) -> Result<u8, RollError> {
    #[cfg(feature = "aws")]
    if global.backend == "aws" {
        return aws(global, a).await;
    }
    let cloud = open(global).await?;
    let groups = cloud.groups();
    let lbs = cloud.lbs();
    // Not in the middle of someone's roll.
    let _lease = groups.acquire_lease(&a.group, &holder(&roll_id())).await?;
    let listener = ListenerId::new(a.group.as_str());
    let mut stopped = Vec::new();
    match lbs.listener(&listener).await {
        Ok(l) => {
            lbs.delete_listener(&listener).await?;
            stopped.push(format!("balancer {}", l.address));
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    for g in [twin_of(&a.group), a.group.clone()] {
        match groups.describe_group(&g).await {
            Ok(info) => {
                groups.delete_group(&g).await?;
                stopped.push(format!("group {g} ({} instances)", info.instances.len()));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if stopped.is_empty() {
        eprintln!("roll: {}: nothing to stop", a.group);
    } else {
        eprintln!("roll: {}: stopped {}", a.group, stopped.join(", "));
    }
    Ok(exit::OK)
}

#[cfg(feature = "aws")]
async fn aws(global: &Global, a: Args) -> Result<u8, RollError> {
    let cloud = open(global).await?;
    let setup = super::open_setup(global).await?;
    // Not in the middle of someone's roll: the lease, while the group is
    // there (setup.down refuses a group roll up did not make first).
    let lease = match cloud.groups().describe_group(&a.group).await {
        Ok(_) => {
            setup.check_down(&a.group).await?;
            Some(
                cloud
                    .groups()
                    .acquire_lease(&a.group, &holder(&roll_id()))
                    .await?,
            )
        }
        Err(e) if e.is_not_found() || e.is_bad_input() => None,
        Err(e) => return Err(e.into()),
    };
    let removed = setup.down(&a.group).await?;
    // The lease lived in the group's tags: its release finds none.
    drop(lease);
    if removed.removed.is_empty() {
        eprintln!("roll: {}: nothing to remove", a.group);
    } else {
        eprintln!("roll: {}: removed {}", a.group, removed.removed.join(", "));
    }
    Ok(exit::OK)
}
