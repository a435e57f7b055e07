//! `searchd index`: definition + data -> snapshot file.

use std::path::PathBuf;

use crate::build;
use crate::def::Definition;
use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Index definition (TOML; its data source path is relative to this
    /// file), or a search definition: one search over several indexes
    /// (`indexes = ["books.toml", "films.toml"]`, relative to this file),
    /// which builds one snapshot holding all of them.
    #[arg(long, value_name = "PATH")]
    pub def: PathBuf,
    /// Where to write the snapshot (written atomically: temp file + rename).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Print the build report as JSON on stdout instead of the digest.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<(), Error> {
    let def = Definition::load(&args.def)?;
    let started = std::time::Instant::now();
    let report = build::build_definition(&def, &args.out)?;
    eprintln!(
        "searchd: indexed {} documents into {} ({} bytes, {} golden queries) in {:.2}s",
        report.documents,
        report.snapshot.display(),
        report.bytes,
        report.golden,
        started.elapsed().as_secs_f64()
    );
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!("{}", report.digest);
    }
    Ok(())
}
