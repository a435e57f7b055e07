//! `roll down --group G`: stops the balancer (in-flight requests finish),
//! then the group and its blue/green twin. The fleet daemon exits when it
//! serves no group. Running it again is a no-op.

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
