//! SDK errors → [`CloudError`], naming the operation and the resource
//! ("DescribeImages ami-123 in us-east-1 failed: UnauthorizedOperation: …").
//! The SDK's own Display says only "service error"; the useful part is the
//! code and message inside, or for transport failures the source chain.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::CloudError;

/// The AWS error code of a service error (`InvalidAMIID.NotFound`…).
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(_) => e.code(),
        _ => None,
    }
}

/// Maps any SDK error. `resource` says what the call was about and where
/// (`"ami-123 in us-east-1"`).
pub fn sdk_error<E, R>(op: &str, resource: impl AsRef<str>, e: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let message = match &e {
        SdkError::ServiceError(_) => match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            (None, Some(m)) => m.to_owned(),
            (None, None) => DisplayErrorContext(&e).to_string(),
        },
        SdkError::TimeoutError(_) => "timed out (no answer within the SDK timeout)".to_owned(),
        // Connection refused, DNS, TLS, credentials: the chain says which.
        _ => DisplayErrorContext(&e).to_string(),
    };
    let resource = resource.as_ref();
    let op = if resource.is_empty() {
        op.to_owned()
    } else {
        format!("{op} {resource}")
    };
    CloudError::Api {
        op,
        message,
        source: Some(Box::new(e)),
    }
}

/// Whether a service error says the thing does not exist (deletes treat
/// that as success; describes turn it into [`CloudError::NotFound`]).
pub fn is_gone<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    code(e).is_some_and(|c| {
        c.ends_with(".NotFound")
            || c.ends_with(".Malformed")
            || matches!(
                c,
                "NoSuchKey" | "NoSuchBucket" | "ParameterNotFound" | "NotFound"
            )
    })
}

/// The message of a service error.
pub fn message<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(_) => e.message(),
        _ => None,
    }
}

/// Whether an Auto Scaling or ELBv2 error says the thing named does not
/// exist: ELBv2's `*NotFound` codes, Auto Scaling's `ValidationError`
/// with "not found" in its message (a group, a scheduled action, a
/// lifecycle hook, an instance id), and EC2's own codes ([`is_gone`]).
pub fn is_missing<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match code(e) {
        Some(
            "TargetGroupNotFound" | "ListenerNotFound" | "LoadBalancerNotFound" | "RuleNotFound",
        ) => true,
        Some("ValidationError") => {
            message(e).is_some_and(|m| m.to_ascii_lowercase().contains("not found"))
        }
        _ => is_gone(e),
    }
}

/// Whether the service refused the request's parameters: the caller's
/// input is at fault ([`CloudError::Invalid`]), not the cloud.
pub fn is_refused<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        code(e),
        Some(
            "ValidationError"
                | "InvalidParameterValue"
                | "InvalidParameterCombination"
                | "InvalidParameter"
                | "InvalidTarget"
                | "InvalidConfigurationRequest"
                | "IncompatibleProtocols"
                | "TargetGroupAssociationLimit"
        )
    )
}

/// Maps an SDK error of an Auto Scaling or ELBv2 call: refused parameters
/// become [`CloudError::Invalid`] (naming the call, the resource and the
/// service's reason), everything else [`sdk_error`]. Callers check
/// [`is_missing`] first where "not found" has a meaning of its own.
pub fn call_error<E, R>(op: &str, resource: impl AsRef<str>, e: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    if is_refused(&e) {
        let why = match (code(&e), message(&e)) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            _ => "refused".to_owned(),
        };
        return CloudError::invalid(format!("{op} {}", resource.as_ref()), why);
    }
    sdk_error(op, resource, e)
}
