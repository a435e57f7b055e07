//! `searchd query`: one query against a snapshot, printed as the server's JSON.

use std::io::Write;
use std::path::PathBuf;

use crate::exit;
use crate::index::Engine;
use crate::snapshot::Verify;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file to search.
    #[arg(long, value_name = "PATH")]
    pub snapshot: PathBuf,
    /// How many ids to return (Picky's `ids`; 0 = counts only).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
    pub ids: i64,
    /// Skip this many ids across the allocations (Picky's `offset`).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub offset: i64,
    /// The query, in Picky's query language (e.g. 'title:alan', 'hemingwai~').
    pub query: String,
}

pub fn run(args: Args) -> u8 {
    let engine = match Engine::open(&args.snapshot, Verify::Full) {
        Ok(e) => e,
        Err(e) => return super::fail(exit::USAGE, e),
    };
    let started = std::time::Instant::now();
    match engine.search(&args.query, args.ids, args.offset) {
        Ok(results) => {
            let mut out = Vec::with_capacity(1024);
            results.write_json(started.elapsed().as_secs_f64(), &mut out);
            out.push(b'\n');
            match std::io::stdout().write_all(&out) {
                Ok(()) => exit::OK,
                Err(e) => super::fail(exit::FAILURE, e),
            }
        }
        Err(e) => super::fail(exit::USAGE, e),
    }
}
