//! roll's error type: each variant knows its exit code ([`crate::exit`]).

use cloud::CloudError;

#[derive(Debug, thiserror::Error)]
pub enum RollError {
    /// Bad flags or arguments, an unknown image or group, an image that is
    /// not complete.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The roll cannot converge (the previous image fails its gate too, a
    /// group vanished mid-roll…). Rerunning resumes from the record.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "interrupted; the roll is recorded in the group and resumes when you rerun the command"
    )]
    Interrupted,
}

impl From<cloud::run::Cancelled> for RollError {
    fn from(_: cloud::run::Cancelled) -> Self {
        RollError::Interrupted
    }
}

impl RollError {
    pub fn exit_code(&self) -> u8 {
        use crate::exit;
        match self {
            RollError::Usage(_) => exit::USAGE,
            RollError::Cloud(e) if e.is_bad_input() => exit::USAGE,
            RollError::Cloud(_) | RollError::Failed(_) | RollError::Io { .. } => exit::FAILURE,
            RollError::Interrupted => exit::INTERRUPTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_documented_exit_code() {
        assert_eq!(RollError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            RollError::Cloud(CloudError::invalid("size", "0")).exit_code(),
            2
        );
        assert_eq!(
            RollError::Cloud(CloudError::Busy {
                what: "group web".into(),
                holder: "roll-1".into()
            })
            .exit_code(),
            3
        );
        // A call the IAM policy does not allow (see cloud/tests/aws/iam.rs).
        assert_eq!(
            RollError::Cloud(CloudError::Api {
                op: "ModifyListener arn:l in us-east-1".into(),
                message: "AccessDenied: not authorized to perform: \
                          elasticloadbalancing:ModifyListener"
                    .into(),
                source: None,
            })
            .exit_code(),
            3
        );
        assert_eq!(RollError::Failed("x".into()).exit_code(), 3);
        assert_eq!(RollError::Interrupted.exit_code(), 130);
    }
}
