//! `bake gc`: remove what crashed runs left (found by run id, see
//! [`cloud::Janitor`]), including images whose bake never completed
//! (`kiln:state=baking`) and, on aws, their copies in the regions the
//! image names (`kiln:copies`). Live runs are never touched: locally a run
//! holds a lock while it lives; on aws only resources older than
//! `--older-than` are considered (a run's resources are as old as its
//! unfinished image). `--region` adds regions to scan; what is found there
//! is removed there.

use std::time::Duration;

use cloud::{Leftover, Region};
use serde::Serialize;

use super::{Global, parse_duration};
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only remove leftovers at least this old (30s, 10m, 2h, 1d).
    /// Default: 0 on local (liveness is known), 1h on aws.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// aws: also scan REGION for image copies a crashed run left;
    /// repeatable. The configured region (AWS_REGION) is always scanned,
    /// and so are the regions an unfinished image names in its
    /// `kiln:copies` tag; REGION is needed only for copies of images
    /// baked before that tag existed.
    #[arg(long = "region", value_name = "REGION", value_parser = parse_region)]
    pub regions: Vec<Region>,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    removed: Vec<Leftover>,
    errors: Vec<String>,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let older_than = args.older_than.unwrap_or(match cloud.backend() {
        "local" => Duration::ZERO,
        _ => Duration::from_secs(3600),
    });
    let found = cloud.janitor().leftovers(older_than, &args.regions).await?;
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for item in found {
        if !args.dry_run
            && let Err(e) = cloud.janitor().remove(&item).await
        {
            let place = item
                .region
                .as_ref()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default();
            errors.push(format!("{:?} {}{place}: {e}", item.kind, item.id));
            continue;
        }
        removed.push(item);
    }
    if args.json {
        super::print_json(&Report {
            dry_run: args.dry_run,
            removed,
            errors: errors.clone(),
        })?;
    } else {
        let mut out = String::new();
        for l in &removed {
            let kind = serde_json::to_value(l.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match &l.region {
                Some(r) => outln!(out, "{kind}@{r}\t{}", l.id),
                None => outln!(out, "{kind}\t{}", l.id),
            }
        }
        super::write_stdout(&out)?;
    }
    for e in &errors {
        eprintln!("bake: error: {e}");
    }
    Ok(if errors.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn parse_region(s: &str) -> Result<Region, String> {
    if crate::recipe::is_region(s) {
        Ok(Region::new(s))
    } else {
        Err(format!("{s:?} is not a region like \"eu-west-1\""))
    }
}
