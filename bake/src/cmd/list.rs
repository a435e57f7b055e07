//! `bake list`: kiln's images, newest first, with how far each one's bake
//! got (`complete`, `baking`: unfinished or still running, `unmarked`:
//! made before the marker).

use cloud::{BakeState, ImageInfo};
use serde::Serialize;

use super::Global;
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One image in `--json`: its info and its bake state.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a ImageInfo,
    bake_state: BakeState,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let images = cloud.images().list().await?;
    if args.json {
        let rows: Vec<Row> = images
            .iter()
            .map(|i| Row {
                bake_state: i.bake_state(),
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
            "{}\t{}\t{}\t{}\t{}\t{}",
            i.id,
            i.name,
            cloud::time::rfc3339(i.created_unix),
            i.digest().map_or("-", |d| &d[..d.len().min(16)]),
            i.size_bytes.map_or("-".into(), |b| b.to_string()),
            i.bake_state().as_str(),
        );
    }
    super::write_stdout(&out)?;
    Ok(exit::OK)
}
