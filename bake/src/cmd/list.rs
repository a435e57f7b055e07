//! `bake list`: kiln's images, newest first, with how far each one's bake
//! got (`complete`, `baking`: unfinished or still running, `unmarked`:
//! made before the marker), what uses each (groups' versions in use or in
//! the rollback window, instances, roll back targets, standbys: what `bake
//! prune` keeps), its deprecation (`bake deprecate`) and, on aws, the
//! regions it was copied to.

use cloud::{BakeState, ImageInfo, image_uses, tags};
use serde::Serialize;

use super::Global;
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How many previous launch-template versions of each group count as
    /// in use (the rollback window; as `bake prune`).
    #[arg(long, value_name = "N", default_value_t = super::prune::ROLLBACK_VERSIONS)]
    pub rollback_versions: usize,
}

/// One image in `--json`: its info and its bake state.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a ImageInfo,
    bake_state: BakeState,
    /// What uses it: groups' current and rollback-window versions,
    /// instances, roll back targets, blue/green standbys.
    in_use_by: &'a [String],
    /// Regions it was copied to (aws).
    copies: Vec<&'a str>,
    /// When it is or was deprecated (`bake deprecate`), RFC 3339.
    deprecate_at: Option<String>,
    /// Deprecated by now: `bake prune` no longer keeps it.
    deprecated: bool,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let images = cloud.images().list().await?;
    let groups = cloud.groups().list_groups().await?;
    let uses = image_uses(&groups, args.rollback_versions);
    let none: Vec<String> = Vec::new();
    let used = |i: &ImageInfo| uses.get(&i.id).unwrap_or(&none);
    let now = cloud::time::now_unix();
    if args.json {
        let rows: Vec<Row> = images
            .iter()
            .map(|i| Row {
                bake_state: i.bake_state(),
                in_use_by: used(i),
                copies: copies(i),
                deprecate_at: i.deprecate_at().map(cloud::time::rfc3339),
                deprecated: i.is_deprecated(now),
                info: i,
            })
            .collect();
        super::print_json(&rows)?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    for i in &images {
        outln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            i.id,
            i.name,
            cloud::time::rfc3339(i.created_unix),
            i.digest().map_or("-", |d| &d[..d.len().min(16)]),
            i.size_bytes.map_or("-".into(), |b| b.to_string()),
            match used(i).as_slice() {
                [] => "-".to_owned(),
                u => u.join("; "),
            },
            state(i, now),
        );
    }
    super::write_stdout(&out)?;
    Ok(exit::OK)
}

/// The bake state, and the deprecation if there is one.
fn state(i: &ImageInfo, now: u64) -> String {
    match i.deprecate_at() {
        Some(t) if t <= now => format!(
            "{}, deprecated {}",
            i.bake_state().as_str(),
            cloud::time::rfc3339(t)
        ),
        Some(t) => format!(
            "{}, deprecates {}",
            i.bake_state().as_str(),
            cloud::time::rfc3339(t)
        ),
        None => i.bake_state().as_str().to_owned(),
    }
}

/// The regions an image was copied to (its `kiln:copies` tag).
fn copies(i: &ImageInfo) -> Vec<&str> {
    i.tags
        .get(tags::COPIES)
        .map(|c| c.split(',').filter(|r| !r.is_empty()).collect())
        .unwrap_or_default()
}
