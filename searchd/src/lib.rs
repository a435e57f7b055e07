//! searchd: a Picky-compatible search daemon.
//!
//! Data flow: an index definition ([`def`]) and its data are tokenized
//! ([`tokenizer`]) and built ([`build`]) into one immutable snapshot file
//! ([`snapshot`]). At run time the snapshot is mmapped and opened as an
//! [`index::Engine`], which answers queries ([`search`]) in Picky's JSON
//! ([`ruby`] holds the Ruby conversions clients can see). The HTTP server
//! lives in [`server`]; [`params`] parses request parameters like Rack.

pub mod build;
pub mod cmd;
pub mod def;
pub mod index;
pub mod params;
pub mod phonetic;
pub mod ruby;
pub mod search;
pub mod server;
pub mod snapshot;
pub mod tokenizer;

/// Exit codes shared by every subcommand (documented in `--help` and README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `check`: the snapshot is corrupt or a golden query answered differently.
    pub const CHECK_FAILED: u8 = 1;
    /// Bad input: flags, definition, data or snapshot refused.
    pub const USAGE: u8 = 2;
    /// The environment failed: cannot bind, cannot write, I/O errors.
    pub const FAILURE: u8 = 3;
}
