//! `bake list`: kiln's images, newest first.

use super::Global;
use crate::error::BakeError;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &Global, args: Args) -> Result<u8, BakeError> {
    let (_state, cloud) = super::open(global).await?;
    let images = cloud.images().list().await?;
    if args.json {
        super::print_json(&images)?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    for i in &images {
        outln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            i.id,
            i.name,
            cloud::time::rfc3339(i.created_unix),
            i.digest().map_or("-", |d| &d[..d.len().min(16)]),
            i.size_bytes.map_or("-".into(), |b| b.to_string()),
        );
    }
    super::write_stdout(&out)?;
    Ok(exit::OK)
}
