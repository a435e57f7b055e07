//! searchd's error type at the subcommand edge: every way `index`, `query`,
//! `check` and `serve` fail is one [`Error`], and each kind has its exit
//! code ([`Error::exit_code`], the codes and their meaning in
//! [`crate::exit`]). `cmd::run` prints the error and exits with that code;
//! no subcommand picks a number. bake maps the snapshot build's errors
//! through the same function, so both tools say the same.

use std::io;
use std::net::SocketAddr;

use crate::build::BuildError;
use crate::def::DefError;
use crate::exit;
use crate::search::SearchError;
#[cfg(feature = "daemon")]
use crate::server::LoadError;
#[cfg(feature = "daemon")]
use crate::server::auth::TokensError;
use crate::snapshot::SnapshotError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags clap accepted but the plan refused (`--workers 0`, `--log`).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Definition(#[from] DefError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// `check`, `serve`: golden queries answered differently from the
    /// recording (one message each).
    #[error("{} golden queries answered differently from the recording:\n{}", .0.len(), .0.join("\n"))]
    Golden(Vec<String>),
    /// `query`: the query cannot be answered as asked.
    #[error(transparent)]
    Query(#[from] SearchError),
    /// `serve --tokens`: the tokens file (daemon only).
    #[cfg(feature = "daemon")]
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    /// Anything else the machine refused (stdout closed, no threads).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

#[cfg(feature = "daemon")]
impl From<LoadError> for Error {
    fn from(e: LoadError) -> Error {
        match e {
            LoadError::Snapshot(e) => Error::Snapshot(e),
            LoadError::Golden(failures) => Error::Golden(failures),
        }
    }
}

impl Error {
    /// The exit code of this kind of failure. Exhaustive on purpose: a new
    /// variant of a wrapped error must be given its code here.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Query(_) => exit::USAGE,
            Error::Definition(e) => match e {
                DefError::Read { source, .. } => reading(source),
                DefError::Toml { .. } | DefError::Invalid { .. } => exit::USAGE,
            },
            Error::Build(e) => match e {
                BuildError::Read { source, .. } => reading(source),
                // The data, or its golden queries, do not fit the definition.
                BuildError::Record { .. }
                | BuildError::TooManyDocuments { .. }
                | BuildError::Ranged { .. }
                | BuildError::GoldenTooFew { .. }
                | BuildError::Golden { .. } => exit::USAGE,
                BuildError::Write { .. } => exit::FAILURE,
                BuildError::Snapshot(e) => snapshot(e),
            },
            Error::Snapshot(e) => snapshot(e),
            Error::Golden(_) => exit::CHECK_FAILED,
            #[cfg(feature = "daemon")]
            Error::Tokens(e) => match e {
                TokensError::Read { source, .. } => reading(source),
                TokensError::Empty { .. } | TokensError::Invalid { .. } => exit::USAGE,
            },
            Error::Listen { .. } | Error::Io { .. } => exit::FAILURE,
        }
    }
}

/// Reading an input file: one that is not there (or not text) is bad
/// input, one that is there but cannot be read is the machine.
fn reading(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::InvalidData => exit::USAGE,
        _ => exit::FAILURE,
    }
}

/// A snapshot searchd refused: its bytes failed the check, unless it could
/// not be read at all.
fn snapshot(e: &SnapshotError) -> u8 {
    match e {
        SnapshotError::Io { source, .. } => reading(source),
        SnapshotError::Truncated { .. }
        | SnapshotError::BadMagic { .. }
        | SnapshotError::BadVersion { .. }
        | SnapshotError::Checksum { .. }
        | SnapshotError::Corrupt { .. } => exit::CHECK_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "test")
    }

    #[test]
    fn files_missing_are_bad_input_unreadable_are_the_machine() {
        let p = PathBuf::from("x");
        let def = |kind| {
            Error::from(DefError::Read {
                path: p.clone(),
                source: io(kind),
            })
            .exit_code()
        };
        assert_eq!(def(io::ErrorKind::NotFound), exit::USAGE);
        assert_eq!(def(io::ErrorKind::InvalidData), exit::USAGE);
        assert_eq!(def(io::ErrorKind::PermissionDenied), exit::FAILURE);
        let snap = |kind| {
            Error::from(SnapshotError::Io {
                path: p.clone(),
                source: io(kind),
            })
            .exit_code()
        };
        assert_eq!(snap(io::ErrorKind::NotFound), exit::USAGE);
        assert_eq!(snap(io::ErrorKind::Other), exit::FAILURE);
        let data = Error::from(BuildError::Read {
            path: p.clone(),
            source: io(io::ErrorKind::NotFound),
        });
        assert_eq!(data.exit_code(), exit::USAGE);
        // Writing never is the user's input: even a missing directory.
        let write = Error::from(BuildError::Write {
            path: p.clone(),
            source: io(io::ErrorKind::NotFound),
        });
        assert_eq!(write.exit_code(), exit::FAILURE);
    }

    #[test]
    fn a_refused_snapshot_failed_its_check() {
        let p = PathBuf::from("x");
        for e in [
            SnapshotError::BadMagic { path: p.clone() },
            SnapshotError::BadVersion {
                path: p.clone(),
                found: 99,
            },
            SnapshotError::Corrupt {
                path: p.clone(),
                why: "test".into(),
            },
        ] {
            assert_eq!(Error::from(e).exit_code(), exit::CHECK_FAILED);
        }
        #[cfg(feature = "daemon")]
        {
            let golden = Error::from(LoadError::Golden(vec!["q".into()]));
            assert_eq!(golden.exit_code(), exit::CHECK_FAILED);
        }
    }

    #[test]
    fn the_table_lists_each_code_once() {
        let codes: Vec<u8> = exit::TABLE.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes,
            [exit::OK, exit::CHECK_FAILED, exit::USAGE, exit::FAILURE]
        );
    }
}
