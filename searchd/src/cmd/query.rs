//! `searchd query`: one query against a snapshot, printed as the server's JSON.

use std::io::Write;
use std::path::PathBuf;

use crate::error::Error;
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

pub fn run(args: Args) -> Result<(), Error> {
    let engine = Engine::open(&args.snapshot, Verify::Full)?;
    let started = std::time::Instant::now();
    let results = engine.search(&args.query, args.ids, args.offset)?;
    let mut out = Vec::with_capacity(1024);
    results.write_json(started.elapsed().as_secs_f64(), &mut out);
    out.push(b'\n');
    std::io::stdout()
        .write_all(&out)
        .map_err(|source| Error::Io {
            what: "cannot write the answer to stdout",
            source,
        })
}
