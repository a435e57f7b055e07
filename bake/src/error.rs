//! bake's error type: each variant knows its exit code.

use std::path::PathBuf;

use cloud::CloudError;

use crate::exit;
use crate::recipe::RecipeError;

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The builder reported a failing step (install or `searchd check`).
    #[error("the builder failed at step `{step}`:\n{output}")]
    BuilderFailed { step: String, output: String },
    /// `searchd index`'s work failed inside bake; `source` knows the code
    /// searchd would exit with.
    #[error("cannot build the snapshot from {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: searchd::error::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The cloud or the machine did something unexpected.
    #[error("{0}")]
    Failed(String),
    #[error("interrupted; everything this run created was removed")]
    Interrupted,
}

impl From<cloud::run::Cancelled> for BakeError {
    fn from(_: cloud::run::Cancelled) -> Self {
        BakeError::Interrupted
    }
}

impl BakeError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BakeError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            // The rule both tools document (README "Exit codes"): failing
            // to read an existing file or to write the snapshot is the
            // machine; anything else is the recipe's input.
            BakeError::Snapshot { source, .. } if source.exit_code() == searchd::exit::FAILURE => {
                exit::FAILURE
            }
            BakeError::Recipe(_) | BakeError::Usage(_) | BakeError::Snapshot { .. } => exit::USAGE,
            BakeError::Cloud(e) if e.is_bad_input() => exit::USAGE,
            BakeError::Cloud(_) | BakeError::Io { .. } | BakeError::Failed(_) => exit::FAILURE,
            BakeError::BuilderFailed { .. } => exit::CHECK_FAILED,
            BakeError::Interrupted => exit::INTERRUPTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;

    /// Building the snapshot inside bake exits as `searchd index` would for
    /// the same failure: an input that does not exist is bad input (2), a
    /// snapshot that cannot be written is the machine (3).
    #[test]
    fn snapshot_failures_exit_as_searchd_index_does() {
        let books = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/books");
        let t = tempfile::tempdir().unwrap();
        for f in ["searchd", "searchd.env", "install.sh"] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        std::fs::copy(books.join("index.toml"), t.path().join("index.toml")).unwrap();
        let recipe = t.path().join("r.toml");
        let text = "name = \"searchd\"\n[base]\nlocal = \"scratch\"\n[install]\n\
                    searchd = \"searchd\"\nindex = \"index.toml\"\nconfig = \"searchd.env\"\n";
        let r = Recipe::parse(&recipe, text, None).unwrap();
        let scratch = t.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let gather = |tmp: &std::path::Path| {
            crate::cmd::build::gather(&r, tmp)
                .err()
                .expect("gathering fails")
        };

        // The definition's data source is not there.
        let missing = gather(&scratch);
        assert!(missing.to_string().contains("books.csv"), "{missing}");
        assert_eq!(missing.exit_code(), exit::USAGE, "{missing}");

        // Tests run as root, so permission bits stop nothing: a scratch
        // "directory" that is a regular file makes the write fail.
        std::fs::copy(books.join("books.csv"), t.path().join("books.csv")).unwrap();
        let file = t.path().join("searchd.env");
        let unwritable = gather(&file);
        assert!(
            unwritable.to_string().contains("cannot write snapshot"),
            "{unwritable}"
        );
        assert_eq!(unwritable.exit_code(), exit::FAILURE, "{unwritable}");
    }
}
