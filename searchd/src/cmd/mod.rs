//! Subcommands: one module each. `main.rs` parses flags into [`Cli`];
//! each module resolves its raw flags into a plan and runs it.

use clap::{Parser, Subcommand};

pub mod check;
pub mod index;
pub mod query;
pub mod serve;

pub const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  check failed: the snapshot is corrupt or a golden query answered differently
  2  bad input: wrong flags, invalid definition or data, snapshot refused
  3  environment failure: cannot bind, read or write";

/// Picky-compatible search daemon serving an mmapped index snapshot.
#[derive(Debug, Parser)]
#[command(name = "searchd", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a snapshot from an index definition and its data.
    #[command(after_help = AFTER_HELP)]
    Index(index::Args),
    /// Serve a snapshot over HTTP (Picky's API plus /live, /ready, /version, /metrics).
    #[command(after_help = AFTER_HELP)]
    Serve(serve::Args),
    /// Answer one query from a snapshot and print the JSON the server would send.
    #[command(after_help = AFTER_HELP)]
    Query(query::Args),
    /// Verify a snapshot (format, checksum) and replay its golden queries.
    #[command(after_help = AFTER_HELP)]
    Check(check::Args),
}

pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Index(a) => index::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Query(a) => query::run(a),
        Command::Check(a) => check::run(a),
    }
}

/// Prints an error the way every subcommand does, and returns `code`.
pub fn fail(code: u8, err: impl std::fmt::Display) -> u8 {
    eprintln!("searchd: error: {err}");
    code
}
