//! Error types. Every error has a stable, machine-readable `code()`.

use thiserror::Error;

/// The name given to [`Scheme::from_str`](crate::Scheme) was not a known scheme.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown signature scheme {0:?} (expected one of: standard-webhooks, standard-webhooks-v1a, github-sha256, hub-sha1, date-sha1)"
)]
pub struct UnknownScheme(pub String);

/// Why [`sign`](crate::sign) could not produce headers. These are configuration or
/// programming errors on the sending side, never caused by a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignError {
    /// `secrets` was empty.
    #[error("no signing secret configured")]
    NoSecrets,
    /// A secret is empty, or (standard-webhooks) not `whsec_` + base64 / plain base64,
    /// or is a public key (`whpk_…`), which cannot sign.
    #[error("signing secret is invalid")]
    InvalidSecret,
    /// The message id is empty, longer than 256 bytes or not visible ASCII
    /// (it must be usable as an HTTP header value and in the signed content).
    #[error("message id must be 1..=256 visible ASCII characters")]
    InvalidMessageId,
    /// The timestamp cannot be expressed (date-sha1 needs a year between 0 and 9999,
    /// standard-webhooks a unix time of 0 to 15 digits).
    #[error("timestamp out of the representable range")]
    InvalidTimestamp,
}

impl SignError {
    /// Stable SCREAMING_SNAKE code.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::NoSecrets => "SECRET_MISSING",
            SignError::InvalidSecret => "SECRET_INVALID",
            SignError::InvalidMessageId => "MESSAGE_ID_INVALID",
            SignError::InvalidTimestamp => "TIMESTAMP_INVALID",
        }
    }
}

/// Why a request failed verification.
///
/// `code()` is stable and fine-grained; [`InboundError`](crate::inbound::InboundError)
/// folds these into the three coarse inbound codes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No secret / key was given to verify with.
    #[error("no verification secret configured")]
    NoSecrets,
    /// A configured secret or key cannot be used (bad encoding, wrong length, …).
    #[error("verification secret is invalid")]
    InvalidSecret,
    /// A required header is absent (or empty). The payload is the header name
    /// (lower-case), or a generic label for operator-configured header names.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but unparsable: wrong prefix, bad encoding, wrong length,
    /// too long, too many signatures, repeated, non-ASCII.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// Well-formed, but no signature matched any secret (also: wrong credentials for
    /// `basic_auth` / `api_key`).
    #[error("signature does not match")]
    SignatureMismatch,
    /// The signature is valid but the signed timestamp is more than `tolerance_secs`
    /// away from `now` (in either direction).
    #[error("timestamp {timestamp} is more than {tolerance_secs}s away from now ({now})")]
    TimestampOutOfTolerance {
        /// The (authenticated) timestamp of the request, unix seconds.
        timestamp: i64,
        /// The `now` the caller passed.
        now: i64,
        /// The tolerance that was applied.
        tolerance_secs: i64,
    },
    /// Twilio: the `bodySHA256` URL parameter does not match the body.
    #[error("body hash does not match the signed bodySHA256 parameter")]
    BodyHashMismatch,
    /// The request body is not covered by any signature the scheme knows about
    /// (e.g. a Twilio request with a non-form body and no `bodySHA256`).
    #[error("request body is not covered by the signature")]
    BodyNotSigned,
}

impl VerifyError {
    /// Stable SCREAMING_SNAKE code, suitable for API error bodies and audit logs.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoSecrets => "SECRET_MISSING",
            VerifyError::InvalidSecret => "SECRET_INVALID",
            VerifyError::MissingHeader(_) => "SIGNATURE_MISSING",
            VerifyError::MalformedHeader(_) => "SIGNATURE_MALFORMED",
            VerifyError::SignatureMismatch => "SIGNATURE_INVALID",
            VerifyError::TimestampOutOfTolerance { .. } => "TIMESTAMP_OUT_OF_TOLERANCE",
            VerifyError::BodyHashMismatch => "BODY_HASH_MISMATCH",
            VerifyError::BodyNotSigned => "BODY_NOT_SIGNED",
        }
    }
}
