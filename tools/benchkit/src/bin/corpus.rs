//! `corpus`: writes a synthetic corpus for the scale benchmark.
//!
//! Into `--out DIR`: the documents (`corpus.csv` with a header row, or
//! `corpus.jsonl`), `index.toml` (an index definition for them modelled on
//! `images/books/index.toml`, so `searchd index --def DIR/index.toml` builds
//! it) and `queries.lua` (a wrk script with a 20-query mix shaped like the
//! books mix). Deterministic: the same flags give the same bytes.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use benchkit::corpus::{self, Config, Corpus, Doc, Format};
use clap::Parser;

/// Generate a synthetic corpus, its index definition and a query mix.
#[derive(Debug, Parser)]
#[command(name = "corpus", version)]
struct Args {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of documents.
    #[arg(long, default_value_t = 1_000_000)]
    docs: u64,
    /// Seed: the same seed gives the same corpus.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Data format.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Title vocabulary size (distinct words).
    #[arg(long, default_value_t = 50_000)]
    vocabulary: usize,
    /// Zipf exponent of title words.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Index name (the URL path of its queries).
    #[arg(long, default_value = "corpus")]
    name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.docs > 0, "--docs must be at least 1");
    anyhow::ensure!(
        args.vocabulary > 0 && args.zipf > 0.0,
        "--vocabulary and --zipf must be positive"
    );
    anyhow::ensure!(
        !args.name.is_empty()
            && args
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "--name must be letters, digits, '_' or '-'"
    );
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cfg = Config {
        vocabulary: args.vocabulary,
        zipf: args.zipf,
        seed: args.seed,
        ..Config::default()
    };
    let corpus = Corpus::new(&cfg);

    let data_name = format!("corpus.{}", args.format.extension());
    let data_path = args.out.join(&data_name);
    let file = File::create(&data_path)
        .with_context(|| format!("cannot create {}", data_path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let bytes = corpus::write_documents(&mut w, args.format, corpus.documents(args.docs))
        .with_context(|| format!("cannot write {}", data_path.display()))?;
    let file = w.into_inner().context("cannot flush the corpus")?;
    file.sync_all().context("cannot sync the corpus")?;

    let sample: Vec<Doc> = corpus.documents(args.docs.min(1000)).collect();
    let golden = corpus::golden_queries(&sample);
    let def = corpus::index_definition(&args.name, &data_name, args.format, &golden);
    let def_path = args.out.join("index.toml");
    std::fs::write(&def_path, def)
        .with_context(|| format!("cannot write {}", def_path.display()))?;
    let paths = corpus::query_paths(&args.name, &corpus, &sample);
    let lua_path = args.out.join("queries.lua");
    std::fs::write(&lua_path, corpus::wrk_script(&paths))
        .with_context(|| format!("cannot write {}", lua_path.display()))?;

    eprintln!(
        "corpus: {} documents ({} bytes, vocabulary {}) -> {}, {}, {} in {:.2}s",
        args.docs,
        bytes,
        corpus.words.len(),
        data_path.display(),
        def_path.display(),
        lua_path.display(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "documents": args.docs,
            "data": data_path,
            "data_bytes": bytes,
            "definition": def_path,
            "queries": lua_path,
            "seed": args.seed,
        })
    );
    Ok(())
}
