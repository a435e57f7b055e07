//! `corpus`: writes a synthetic corpus for the scale benchmark.
//!
//! Into `--out DIR`: the documents (`corpus.csv` with a header row, or
//! `corpus.jsonl`), `index.toml` (an index definition for them modelled on
//! `images/books/index.toml`, so `searchd index --def DIR/index.toml` builds
//! it) and `queries.lua` (a wrk script with a 20-query mix shaped like the
//! books mix). Deterministic: the same flags give the same bytes.
//!
//! With `--stream N`: also `stream-searchd.txt` and `stream-tantivy.txt`, N
//! distinct queries as request paths for searchd and for `tantivy serve`
//! (the same queries, line by line), and `stream-searchd.lua` and
//! `stream-tantivy.lua`, wrk scripts walking them. With `--tantivy DIR`:
//! also `DIR/docs.jsonl` (the documents as JSON Lines, what `tantivy index`
//! reads on stdin) and `DIR/index/meta.json` (their schema: an empty index).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
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
    /// Also write a stream of this many distinct queries for both engines
    /// (0: none).
    #[arg(long, default_value_t = 0, value_name = "N")]
    stream: usize,
    /// Also write tantivy's input (`docs.jsonl`) and schema
    /// (`index/meta.json`) into this directory.
    #[arg(long, value_name = "DIR")]
    tantivy: Option<PathBuf>,
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

    let mut report = serde_json::json!({
        "documents": args.docs,
        "data": data_path,
        "data_bytes": bytes,
        "definition": def_path,
        "queries": lua_path,
        "seed": args.seed,
    });
    if args.stream > 0 {
        let n = write_stream(&args.out, &args.name, &corpus, args.docs, args.stream)?;
        report["stream_queries"] = n.into();
    }
    if let Some(dir) = &args.tantivy {
        let (docs, bytes) = write_tantivy(dir, &corpus, args.docs)?;
        report["tantivy_docs"] = docs.into();
        report["tantivy_docs_bytes"] = bytes.into();
    }

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
    println!("{report}");
    Ok(())
}

/// The query stream: paths files and wrk scripts for both engines. Returns
/// the number of queries (fewer than asked when the corpus runs out).
fn write_stream(
    out: &Path,
    index: &str,
    corpus: &Corpus,
    docs: u64,
    n: usize,
) -> anyhow::Result<usize> {
    let stream = corpus.query_stream(docs, n);
    anyhow::ensure!(!stream.is_empty(), "the corpus yields no stream queries");
    let searchd = stream
        .iter()
        .map(|q| corpus::searchd_stream_path(index, q))
        .collect::<Vec<_>>();
    let tantivy = stream
        .iter()
        .map(corpus::tantivy_stream_path)
        .collect::<Vec<_>>();
    let engines = [
        ("searchd", "searchd (Picky's query language)", searchd),
        (
            "tantivy",
            "tantivy-cli serve (+ marks required terms)",
            tantivy,
        ),
    ];
    for (engine, what, paths) in engines {
        let paths_path = out.join(format!("stream-{engine}.txt"));
        let mut text = String::with_capacity(stream.len() * 48);
        for p in &paths {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(&paths_path, text)
            .with_context(|| format!("cannot write {}", paths_path.display()))?;
        let abs = std::path::absolute(&paths_path)
            .with_context(|| format!("no absolute path for {}", paths_path.display()))?;
        let lua_path = out.join(format!("stream-{engine}.lua"));
        std::fs::write(
            &lua_path,
            corpus::stream_script(&abs.to_string_lossy(), what),
        )
        .with_context(|| format!("cannot write {}", lua_path.display()))?;
    }
    Ok(stream.len())
}

/// tantivy's input and schema; returns the documents and bytes written.
fn write_tantivy(dir: &Path, corpus: &Corpus, docs: u64) -> anyhow::Result<(u64, u64)> {
    let index = dir.join("index");
    std::fs::create_dir_all(&index)
        .with_context(|| format!("cannot create {}", index.display()))?;
    let meta = index.join("meta.json");
    std::fs::write(&meta, corpus::tantivy_meta())
        .with_context(|| format!("cannot write {}", meta.display()))?;
    let path = dir.join("docs.jsonl");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let bytes = corpus::write_documents(&mut w, Format::Jsonl, corpus.documents(docs))
        .with_context(|| format!("cannot write {}", path.display()))?;
    w.into_inner()
        .context("cannot flush tantivy's documents")?
        .sync_all()
        .context("cannot sync tantivy's documents")?;
    Ok((docs, bytes))
}
