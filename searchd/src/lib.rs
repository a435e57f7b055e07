//! searchd: a Picky-compatible search daemon.
//!
//! Data flow: an index definition ([`def`]) and its data are tokenized
//! ([`tokenizer`]) and built ([`build`]) into one immutable snapshot file
//! ([`snapshot`]). At run time the snapshot is mmapped and opened as an
//! [`index::Engine`], which answers queries ([`search`]) in Picky's JSON
//! ([`ruby`] holds the Ruby conversions clients can see). The HTTP server
//! lives in [`server`]; [`params`] parses request parameters like Rack.

pub mod build;
#[cfg(feature = "daemon")]
pub mod cmd;
pub mod def;
pub mod error;
pub mod index;
pub mod params;
pub mod phonetic;
pub mod postings;
pub mod ruby;
pub mod search;
#[cfg(feature = "daemon")]
pub mod server;
pub mod snapshot;
pub mod tokenizer;

/// Exit codes shared by every subcommand. [`error::Error::exit_code`] picks
/// one per error kind; `--help` prints [`exit::TABLE`] and README's "Exit
/// codes" table says the same (`tests/exit_codes.rs` checks both).
///
/// The rule for files: an input (definition, data source, snapshot, tokens
/// file) that does not exist, or is not text where text is expected, is bad
/// input; one that exists but cannot be read, or a snapshot that cannot be
/// written, is the machine failing. bake uses the same rule when it builds
/// a snapshot.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The snapshot failed its check: refused when opened, or a golden query
    /// answered differently from the recording.
    pub const CHECK_FAILED: u8 = 1;
    /// Bad input: flags, a query, the definition, its data, a tokens file,
    /// an input file that does not exist. clap exits with this code too.
    pub const USAGE: u8 = 2;
    /// The machine failed: cannot read an existing file, write the snapshot,
    /// bind the address.
    pub const FAILURE: u8 = 3;

    /// Every code with what it means, one line each: `--help`'s "Exit
    /// codes" and README's table (searchd's column) are this text.
    pub const TABLE: [(u8, &str); 4] = [
        (
            OK,
            "success (`serve`: stopped by SIGTERM or SIGINT, after draining)",
        ),
        (
            CHECK_FAILED,
            "the snapshot failed its check: corrupt, truncated, not a snapshot, another format version, or a golden query answered differently (`check`, `query`, `serve` at start or after its background sha256)",
        ),
        (
            USAGE,
            "bad input: flags, a query, the definition or its data (a golden query below its `min_total` too), a tokens file; an input file that does not exist",
        ),
        (
            FAILURE,
            "the machine failed: an input file exists but cannot be read, the snapshot cannot be written, the address cannot be bound",
        ),
    ];
}
