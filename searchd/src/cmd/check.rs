//! `searchd check`: verify a snapshot and replay its golden queries.

use std::path::PathBuf;

use crate::exit;
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
    failures: Vec<String>,
}

pub fn run(args: Args) -> u8 {
    let engine = Engine::open(&args.snapshot, Verify::Full);
    let (failures, golden) = match &engine {
        Ok(e) => (e.check_golden(), e.meta().golden.len()),
        Err(err) => (vec![err.to_string()], 0),
    };
    let ok = failures.is_empty();
    let e = engine.as_ref().ok();
    let report = Report {
        ok,
        snapshot: &args.snapshot,
        index: e.map(Engine::name),
        digest: e.map(Engine::digest),
        documents: e.map(Engine::documents),
        golden,
        failures,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    if ok {
        if !args.json {
            println!("{}", report.digest.unwrap_or_default());
        }
        eprintln!(
            "searchd: {} ok: index {}, {} documents, {} golden queries answered as recorded",
            args.snapshot.display(),
            report.index.unwrap_or_default(),
            report.documents.unwrap_or_default(),
            golden
        );
        exit::OK
    } else {
        for f in &report.failures {
            eprintln!("searchd: check failed: {f}");
        }
        exit::CHECK_FAILED
    }
}
