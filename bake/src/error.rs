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
    #[error("cannot build the snapshot from {path}: {message}")]
    Snapshot { path: PathBuf, message: String },
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
            BakeError::Recipe(_) | BakeError::Usage(_) | BakeError::Snapshot { .. } => exit::USAGE,
            BakeError::Cloud(e) if e.is_bad_input() => exit::USAGE,
            BakeError::Cloud(_) | BakeError::Io { .. } | BakeError::Failed(_) => exit::FAILURE,
            BakeError::BuilderFailed { .. } => exit::CHECK_FAILED,
            BakeError::Interrupted => exit::INTERRUPTED,
        }
    }
}
