//! The one error type every backend returns. Variants carry what a user needs
//! to act ("image ami-123 not found in us-east-1"), and classify the failure
//! so callers map it to an exit code without string matching.

use std::path::PathBuf;
use std::time::Duration;

pub type Result<T, E = CloudError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The thing does not exist (where: region, state dir…).
    #[error("{kind} {id} not found{}", fmt_where(.place))]
    NotFound {
        kind: &'static str,
        id: String,
        place: String,
    },
    /// The request was refused as invalid (bad selector, bad parameter).
    /// Callers treat this as bad input.
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    /// The backend cannot do this at all (e.g. copying a local image to a
    /// region). Bad input from the caller's point of view.
    #[error("the {backend} backend does not support {op}")]
    Unsupported {
        backend: &'static str,
        op: &'static str,
    },
    /// The provider's API refused or failed (aws SDK errors land here, with
    /// the operation and resource named).
    #[error("{op} failed: {message}")]
    Api {
        op: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Local file system trouble (state dir, builder roots, payloads).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds a lock we need right now.
    #[error("{what} is locked by another process ({path})")]
    Locked { what: &'static str, path: PathBuf },
    /// Someone else holds this for a while (a roll's lease on a group);
    /// `holder` names them (roll id, pid, host, command, since when).
    #[error("{what} is held by {holder}")]
    Busy { what: String, holder: String },
    /// A wait ran out of time.
    #[error("timed out after {:.1}s waiting for {what}", .after.as_secs_f64())]
    Timeout { what: String, after: Duration },
    /// Stored state is unreadable (a manifest that does not parse…).
    #[error("corrupt state {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
}

fn fmt_where(place: &str) -> String {
    if place.is_empty() {
        String::new()
    } else {
        format!(" in {place}")
    }
}

impl CloudError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CloudError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn not_found(kind: &'static str, id: impl ToString, place: impl ToString) -> Self {
        CloudError::NotFound {
            kind,
            id: id.to_string(),
            place: place.to_string(),
        }
    }

    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        CloudError::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }

    /// Whether the caller's input is at fault (exit code "bad input") rather
    /// than the cloud or the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CloudError::Invalid { .. } | CloudError::Unsupported { .. }
        )
    }
}
