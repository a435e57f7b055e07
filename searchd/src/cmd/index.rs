//! `searchd index`: definition + data -> snapshot file.

use std::path::PathBuf;

use crate::build::{self, BuildError};
use crate::def::IndexDef;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Index definition (TOML). Its data source path is relative to this file.
    #[arg(long, value_name = "PATH")]
    pub def: PathBuf,
    /// Where to write the snapshot (written atomically: temp file + rename).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Print the build report as JSON on stdout instead of the digest.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> u8 {
    let def = match IndexDef::load(&args.def) {
        Ok(d) => d,
        Err(e) => return super::fail(exit::USAGE, e),
    };
    let started = std::time::Instant::now();
    match build::build(&def, &args.out) {
        Ok(report) => {
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
            exit::OK
        }
        Err(e @ BuildError::Write { .. }) => super::fail(exit::FAILURE, e),
        Err(e) => super::fail(exit::USAGE, e),
    }
}
