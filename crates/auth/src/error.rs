//! The crate's error type, carrying AWS's error codes and message texts.

use std::time::{Duration, SystemTime};

use crate::time::format_amz_date;

/// AWS's text for a signature that does not match (SigV4 troubleshooting guide and the
/// responses of every AWS JSON service).
pub const SIGNATURE_MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// AWS's text for a request without any authentication.
pub const MISSING_AUTHENTICATION_TOKEN_MESSAGE: &str = "Missing Authentication Token";

/// AWS's text for an access key id it does not know.
pub const UNRECOGNIZED_CLIENT_MESSAGE: &str =
    "The security token included in the request is invalid.";

/// How far a request's timestamp may be from the server's clock (AWS uses 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request was refused.
///
/// Every variant maps to the error code (`__type`), message and HTTP status that AWS's JSON
/// services return for the same condition; see [`AuthError::code`], [`AuthError::message`]
/// and [`AuthError::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Neither an `Authorization` header nor presigned query parameters were present.
    #[error("{}", MISSING_AUTHENTICATION_TOKEN_MESSAGE)]
    MissingAuthenticationToken,

    /// The access key id in the credential scope is unknown.
    #[error("{}", UNRECOGNIZED_CLIENT_MESSAGE)]
    UnrecognizedClient,

    /// The signature does not match the one computed with the key's secret.
    #[error("{}", SIGNATURE_MISMATCH_MESSAGE)]
    SignatureMismatch,

    /// The request's timestamp is more than 15 minutes in the past.
    #[error("Signature expired: {} is now earlier than {} ({} - 15 min.)", format_amz_date(*signed_at), format_amz_date(now.checked_sub(MAX_CLOCK_SKEW).unwrap_or(*now)), format_amz_date(*now))]
    SignatureExpired {
        /// The request's own timestamp.
        signed_at: SystemTime,
        /// The server's clock.
        now: SystemTime,
    },

    /// The request's timestamp is more than 15 minutes in the future.
    #[error("Signature not yet current: {} is still later than {} ({} + 15 min.)", format_amz_date(*signed_at), format_amz_date(now.checked_add(MAX_CLOCK_SKEW).unwrap_or(*now)), format_amz_date(*now))]
    SignatureNotYetCurrent {
        /// The request's own timestamp.
        signed_at: SystemTime,
        /// The server's clock.
        now: SystemTime,
    },

    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("Request has expired")]
    PresignedUrlExpired {
        /// `X-Amz-Date` of the URL.
        signed_at: SystemTime,
        /// `X-Amz-Expires` of the URL.
        expires_in: Duration,
        /// The server's clock.
        now: SystemTime,
    },

    /// The credential scope is well formed but wrong (terminator, date); the message is AWS's.
    #[error("{0}")]
    InvalidCredentialScope(String),

    /// The `Authorization` header or the presigned parameters are malformed or incomplete;
    /// the message is AWS's text for the specific defect.
    #[error("{0}")]
    IncompleteSignature(String),

    /// The caller's role does not allow the operation.
    #[error("User: {} is not authorized to perform: {action} on resource: * because no identity-based policy allows the {action} action", principal_arn.as_deref().unwrap_or("anonymous"))]
    AccessDenied {
        /// The IAM-style action, e.g. `ecs:RunTask`.
        action: String,
        /// The caller, e.g. `arn:aws:iam::123456789012:user/AKIA...`; see
        /// [`AuthError::with_principal`].
        principal_arn: Option<String>,
    },
}

impl AuthError {
    /// The AWS error code, sent as `__type` in the JSON body and as `x-amzn-ErrorType`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
            AuthError::SignatureMismatch
            | AuthError::SignatureExpired { .. }
            | AuthError::SignatureNotYetCurrent { .. }
            | AuthError::PresignedUrlExpired { .. }
            | AuthError::InvalidCredentialScope(_) => "InvalidSignatureException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::AccessDenied { .. } => "AccessDeniedException",
        }
    }

    /// The human-readable message, sent as `message` in the JSON body.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The HTTP status AWS's JSON services use for this error (400 for all of them: ECS,
    /// ECR, CloudWatch Logs, DynamoDB, Cognito … answer `400 Bad Request` for these codes).
    pub fn http_status(&self) -> u16 {
        400
    }

    /// Sets the caller's ARN in an [`AuthError::AccessDenied`] (no-op for other variants).
    pub fn with_principal(self, principal_arn: impl Into<String>) -> Self {
        match self {
            AuthError::AccessDenied { action, .. } => AuthError::AccessDenied {
                action,
                principal_arn: Some(principal_arn.into()),
            },
            other => other,
        }
    }
}
