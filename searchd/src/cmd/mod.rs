//! Subcommands: one module each. `main.rs` parses flags into [`Cli`];
//! each module resolves its raw flags into a plan and runs it, failing with
//! a [`crate::error::Error`] whose kind decides the exit code ([`run`]).

use clap::{Parser, Subcommand};

use crate::exit;

pub mod check;
pub mod index;
pub mod query;
pub mod serve;

/// `--help`'s "Exit codes" section, from [`exit::TABLE`] (wrapped to 78
/// columns).
pub fn after_help() -> String {
    let mut out = String::from("Exit codes:");
    for (code, meaning) in exit::TABLE {
        let mut line = format!("\n  {code:>3}  ");
        let indent = line.len() - 1;
        for word in meaning.split(' ') {
            if line.len() + word.len() > 78 && line.len() > indent + 1 {
                out.push_str(&line);
                line = format!("\n{:indent$}", "");
            } else if line.len() > indent + 1 {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(&line);
    }
    out
}

/// Picky-compatible search daemon serving an mmapped index snapshot.
#[derive(Debug, Parser)]
#[command(name = "searchd", version, after_help = after_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a snapshot from an index definition and its data (or from a
    /// search definition: one search over several indexes).
    #[command(after_help = after_help())]
    Index(index::Args),
    /// Serve a snapshot over HTTP (Picky's API: search at /<index>, facets at
    /// /<index>/facets/<category>; plus /live, /ready, /version, /metrics).
    #[command(after_help = after_help())]
    Serve(serve::Args),
    /// Answer one query from a snapshot and print the JSON the server would send.
    #[command(after_help = after_help())]
    Query(query::Args),
    /// Verify a snapshot (format, checksum) and replay its golden queries.
    #[command(after_help = after_help())]
    Check(check::Args),
}

/// Runs the subcommand; the one place an error becomes an exit code.
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Index(a) => index::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Query(a) => query::run(a),
        Command::Check(a) => check::run(a),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("searchd: error: {e}");
            e.exit_code()
        }
    }
}
