//! `searchd check`: verify a snapshot and replay its golden queries.

use std::path::PathBuf;

use crate::error::Error;
use crate::index::Engine;
use crate::snapshot::Verify;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file to verify.
    #[arg(long, value_name = "PATH")]
    pub snapshot: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    ok: bool,
    snapshot: &'a std::path::Path,
    index: Option<&'a str>,
    digest: Option<&'a str>,
    documents: Option<u64>,
    golden: usize,
    failures: &'a [String],
}

/// Prints the report (`--json`: also on failure, for bake's builder), then
/// fails with the snapshot's refusal or the golden queries' differences.
pub fn run(args: Args) -> Result<(), Error> {
    let engine = Engine::open(&args.snapshot, Verify::Full);
    let failures = match &engine {
        Ok(e) => e.check_golden(),
        Err(refused) => vec![refused.to_string()],
    };
    if args.json {
        let e = engine.as_ref().ok();
        let report = Report {
            ok: failures.is_empty(),
            snapshot: &args.snapshot,
            index: e.map(Engine::name),
            digest: e.map(Engine::digest),
            documents: e.map(Engine::documents),
            golden: e.map_or(0, |e| e.meta().golden.len()),
            failures: &failures,
        };
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    let engine = engine?;
    if !failures.is_empty() {
        return Err(Error::Golden(failures));
    }
    if !args.json {
        println!("{}", engine.digest());
    }
    eprintln!(
        "searchd: {} ok: index {}, {} documents, {} golden queries answered as recorded",
        args.snapshot.display(),
        engine.name(),
        engine.documents(),
        engine.meta().golden.len()
    );
    Ok(())
}
