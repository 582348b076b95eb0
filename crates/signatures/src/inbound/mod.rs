//! Inbound verification presets: check that a webhook received by Hookwarden really
//! comes from the provider it claims (Stripe, GitHub, Slack, …).
//!
//! ```
//! use hookwarden_signatures::inbound::{Preset, verify_inbound};
//! let preset: Preset = serde_json::from_str(r#"{"type": "github"}"#).unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert(
//!     "x-hub-signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap(),
//! );
//! let info = verify_inbound(
//!     &preset, &["It's a Secret to Everybody"], "https://hooks.example/in/t",
//!     &headers, b"Hello, World!", 1_700_000_000,
//! ).unwrap();
//! assert_eq!(info.timestamp, None);
//! ```
//!
//! All functions are pure; the caller passes the raw body, the headers, the public URL
//! of the request, `now` (unix seconds) and the active secrets.

mod config;
mod handshake;
mod providers;
mod url;

use std::fmt;

use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use config::*;
pub use handshake::{HandshakeResponse, handshake_response};

use crate::error::VerifyError;
use crate::util::decode_hex_exact;

/// What a successful verification learned, for replay protection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifiedInfo {
    /// The provider's id for this message/event, if it sends one (≤ 256 bytes).
    pub message_id: Option<String>,
    /// The signed timestamp (unix seconds), if the scheme has one. When present it was
    /// within the preset's tolerance of `now`.
    pub timestamp: Option<i64>,
    /// Whether `message_id` is covered by the signature. When false (GitHub, Shopify,
    /// Twilio: a delivery-id header outside the signature) it deduplicates honest
    /// retries but an attacker replaying a captured request can change it.
    pub message_id_signed: bool,
}

/// Configuration that fails semantic validation (after deserialization).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {preset} preset: {message}")]
pub struct ConfigError {
    /// The preset `type`.
    pub preset: &'static str,
    /// What is wrong (never contains a secret).
    pub message: String,
}

/// Why [`verify_inbound`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InboundError {
    /// The preset or the secrets are unusable (operator error, not the sender's).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The request did not verify.
    #[error(transparent)]
    Rejected(#[from] VerifyError),
}

/// What kind of refusal an [`InboundError`] is: match on this, not on the code strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundErrorKind {
    /// The preset or its secrets are unusable: the operator's fault, not the sender's.
    Config,
    /// A valid signature over a timestamp outside the tolerance window.
    TimestampOutOfTolerance,
    /// Missing, malformed or wrong signature or credentials.
    SignatureInvalid,
}

impl InboundErrorKind {
    /// Stable coarse code: `CONFIG_INVALID`, `TIMESTAMP_OUT_OF_TOLERANCE` or `SIGNATURE_INVALID`.
    pub fn code(self) -> &'static str {
        match self {
            InboundErrorKind::Config => "CONFIG_INVALID",
            InboundErrorKind::TimestampOutOfTolerance => "TIMESTAMP_OUT_OF_TOLERANCE",
            InboundErrorKind::SignatureInvalid => "SIGNATURE_INVALID",
        }
    }
}

impl InboundError {
    /// The kind of refusal.
    pub fn kind(&self) -> InboundErrorKind {
        match self {
            InboundError::Config(_)
            | InboundError::Rejected(VerifyError::NoSecrets | VerifyError::InvalidSecret) => {
                InboundErrorKind::Config
            }
            InboundError::Rejected(VerifyError::TimestampOutOfTolerance { .. }) => {
                InboundErrorKind::TimestampOutOfTolerance
            }
            InboundError::Rejected(_) => InboundErrorKind::SignatureInvalid,
        }
    }

    /// Stable coarse code: `CONFIG_INVALID`, `TIMESTAMP_OUT_OF_TOLERANCE` or
    /// `SIGNATURE_INVALID` (missing, malformed or wrong signature/credentials).
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// Stable fine-grained reason for logs and audit entries, e.g. `SIGNATURE_MISSING`,
    /// `SIGNATURE_MALFORMED`, `BODY_HASH_MISMATCH` (see [`VerifyError::code`]).
    pub fn reason(&self) -> &'static str {
        match self {
            InboundError::Config(_) => "CONFIG_INVALID",
            InboundError::Rejected(e) => e.code(),
        }
    }

    /// Whether the fault is the operator's configuration rather than the request.
    pub fn is_config_error(&self) -> bool {
        self.kind() == InboundErrorKind::Config
    }
}

/// A validated, ready-to-use preset. Build it with `Preset::try_from(PresetConfig)` or
/// deserialize it directly (validation errors then surface as deserialization errors).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "PresetConfig", into = "PresetConfig")]
pub struct Preset {
    config: PresetConfig,
    prepared: Prepared,
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preset")
            .field("config", &self.config)
            .finish()
    }
}

impl PartialEq for Preset {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

/// Parsed forms of the parts of a config that need parsing.
#[derive(Clone)]
pub(crate) enum Prepared {
    Nothing,
    StandardWebhooks(Vec<ed25519_dalek::VerifyingKey>),
    Discord(ed25519_dalek::VerifyingKey),
    Sendgrid(Box<p256::ecdsa::VerifyingKey>),
    Hmac(providers::HmacPrepared),
    ApiKey(HeaderName),
}

impl Preset {
    /// The configuration this preset was built from.
    pub fn config(&self) -> &PresetConfig {
        &self.config
    }

    /// The `type` tag, e.g. `"stripe"`.
    pub fn type_name(&self) -> &'static str {
        self.config.type_name()
    }

    /// Whether [`verify_inbound`] needs at least one secret for this preset (false for
    /// `discord`, `sendgrid`, `none`, and `standard-webhooks` with `public_keys`).
    pub fn requires_secrets(&self) -> bool {
        match &self.config {
            PresetConfig::Discord(_)
            | PresetConfig::Sendgrid(_)
            | PresetConfig::NoVerification(_) => false,
            PresetConfig::StandardWebhooks(c) => c.public_keys.is_empty(),
            _ => true,
        }
    }

    /// How far a signed timestamp may be from now (seconds), for presets whose signature carries
    /// one. A replay key must live at least until a timestamp it saw can no longer be accepted.
    pub fn tolerance_secs(&self) -> Option<u32> {
        match &self.config {
            PresetConfig::StandardWebhooks(c) => Some(c.tolerance_secs),
            PresetConfig::Stripe(c) => Some(c.tolerance_secs),
            PresetConfig::Slack(c) => Some(c.tolerance_secs),
            PresetConfig::Paddle(c) => Some(c.tolerance_secs),
            PresetConfig::Zoom(c) => Some(c.tolerance_secs),
            PresetConfig::Twitch(c) => Some(c.tolerance_secs),
            PresetConfig::Discord(c) => Some(c.tolerance_secs),
            PresetConfig::Sendgrid(c) => Some(c.tolerance_secs),
            PresetConfig::Glassix(c) => Some(c.tolerance_secs),
            PresetConfig::Hookwarden(c) => Some(c.tolerance_secs),
            PresetConfig::Hmac(c) => Some(c.tolerance_secs),
            _ => None,
        }
    }

    /// Whether [`verify_inbound`] reads the request URL (Twilio signs it); for every other
    /// preset the caller may pass an empty one instead of building it.
    pub fn uses_url(&self) -> bool {
        matches!(self.config, PresetConfig::Twilio(_))
    }

    /// Whether the preset's signature covers the request body (false for `basic_auth`,
    /// `api_key`, `none`, Glassix without the body signature, and `hookwarden` with only
    /// body-less schemes allowed by `mode: any`).
    pub fn signs_body(&self) -> bool {
        match &self.config {
            PresetConfig::BasicAuth(_)
            | PresetConfig::ApiKey(_)
            | PresetConfig::NoVerification(_) => false,
            PresetConfig::Glassix(c) => c.require_body_signature,
            PresetConfig::Hookwarden(c) => match c.mode {
                MatchMode::All => c.schemes.iter().any(|s| s.signs_body()),
                MatchMode::Any => c.schemes.iter().all(|s| s.signs_body()),
            },
            _ => true,
        }
    }

    /// Check that `secrets` are usable with this preset (e.g. Standard Webhooks
    /// secrets must be `whsec_<base64>`), so an admin API can refuse them up front.
    pub fn validate_secrets(&self, secrets: &[&str]) -> Result<(), ConfigError> {
        providers::validate_secrets(self, secrets)
    }
}

impl TryFrom<PresetConfig> for Preset {
    type Error = ConfigError;

    fn try_from(config: PresetConfig) -> Result<Self, ConfigError> {
        let prepared = prepare(&config)?;
        Ok(Preset { config, prepared })
    }
}

impl From<Preset> for PresetConfig {
    fn from(p: Preset) -> Self {
        p.config
    }
}

fn cfg_err(preset: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        preset,
        message: message.into(),
    }
}

fn check_tolerance_cfg(preset: &'static str, t: u32) -> Result<(), ConfigError> {
    if t > MAX_TOLERANCE_SECS {
        return Err(cfg_err(
            preset,
            format!("tolerance_secs must be at most {MAX_TOLERANCE_SECS}"),
        ));
    }
    Ok(())
}

pub(crate) fn parse_header_name(
    preset: &'static str,
    field: &str,
    name: &str,
) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| cfg_err(preset, format!("{field} is not a valid HTTP header name")))
}

fn prepare(config: &PresetConfig) -> Result<Prepared, ConfigError> {
    let name = config.type_name();
    match config {
        PresetConfig::StandardWebhooks(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            // Each public key costs a hash of the whole body per `v1a` signature checked.
            if c.public_keys.len() > crate::standard::MAX_PUBLIC_KEYS {
                return Err(cfg_err(
                    name,
                    format!(
                        "at most {} public_keys (a rotation needs two)",
                        crate::standard::MAX_PUBLIC_KEYS
                    ),
                ));
            }
            let mut keys = Vec::with_capacity(c.public_keys.len());
            for pk in &c.public_keys {
                match crate::standard::parse_key(pk) {
                    Some(crate::standard::Key::Ed25519(k)) if pk.starts_with("whpk_") => {
                        keys.push(k)
                    }
                    _ => {
                        return Err(cfg_err(
                            name,
                            "public_keys entries must be whpk_<base64 of 32-byte ed25519 key>",
                        ));
                    }
                }
            }
            Ok(Prepared::StandardWebhooks(keys))
        }
        PresetConfig::Github(_) | PresetConfig::Shopify(_) | PresetConfig::Twilio(_) => {
            Ok(Prepared::Nothing)
        }
        PresetConfig::NoVerification(_) => Ok(Prepared::Nothing),
        PresetConfig::Stripe(StripeConfig { tolerance_secs })
        | PresetConfig::Slack(SlackConfig { tolerance_secs })
        | PresetConfig::Paddle(PaddleConfig { tolerance_secs })
        | PresetConfig::Zoom(ZoomConfig { tolerance_secs })
        | PresetConfig::Twitch(TwitchConfig { tolerance_secs }) => {
            check_tolerance_cfg(name, *tolerance_secs)?;
            Ok(Prepared::Nothing)
        }
        PresetConfig::Discord(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            let bytes = decode_hex_exact::<32>(c.public_key.trim())
                .ok_or_else(|| cfg_err(name, "public_key must be 64 hex digits"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| cfg_err(name, "public_key is not a valid ed25519 key"))?;
            Ok(Prepared::Discord(key))
        }
        PresetConfig::Sendgrid(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            let key = providers::parse_p256_public_key(&c.public_key).ok_or_else(|| {
                cfg_err(
                    name,
                    "public_key must be a base64 DER (or PEM) P-256 public key",
                )
            })?;
            Ok(Prepared::Sendgrid(Box::new(key)))
        }
        PresetConfig::Glassix(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            if !c.require_body_signature && !c.require_date_signature {
                return Err(cfg_err(
                    name,
                    "at least one of require_body_signature and require_date_signature must be true",
                ));
            }
            Ok(Prepared::Nothing)
        }
        PresetConfig::Hookwarden(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            if c.schemes.is_empty() || c.schemes.len() > crate::Scheme::ALL.len() {
                return Err(cfg_err(name, "schemes must list 1 to 4 distinct schemes"));
            }
            let mut seen = c.schemes.clone();
            seen.sort();
            seen.dedup();
            if seen.len() != c.schemes.len() {
                return Err(cfg_err(name, "schemes must not repeat"));
            }
            if !c.schemes.iter().any(|s| s.signs_body()) {
                return Err(cfg_err(
                    name,
                    "date-sha1 alone does not cover the body: add a body-signing scheme",
                ));
            }
            // `any` accepts a request that satisfies any one scheme, so the preset is only as
            // strong as its weakest: a scheme that does not sign the body would let a captured
            // date signature carry any body.
            if c.mode == MatchMode::Any && !c.schemes.iter().all(|s| s.signs_body()) {
                return Err(cfg_err(
                    name,
                    "with mode any every scheme must sign the body (date-sha1 does not): use mode all, or drop date-sha1",
                ));
            }
            Ok(Prepared::Nothing)
        }
        PresetConfig::Hmac(c) => {
            check_tolerance_cfg(name, c.tolerance_secs)?;
            Ok(Prepared::Hmac(providers::HmacPrepared::new(c)?))
        }
        PresetConfig::BasicAuth(c) => {
            if c.username.is_empty() || c.username.contains(':') || c.username.len() > 256 {
                return Err(cfg_err(name, "username must be 1..=256 bytes without ':'"));
            }
            Ok(Prepared::Nothing)
        }
        PresetConfig::ApiKey(c) => {
            let h = parse_header_name(name, "header", &c.header)?;
            if let Some(p) = &c.prefix
                && (p.is_empty() || p.len() > 64)
            {
                return Err(cfg_err(name, "prefix must be 1..=64 bytes when given"));
            }
            Ok(Prepared::ApiKey(h))
        }
    }
}

/// Verify an inbound request against `preset`.
///
/// * `secrets`: the currently active secrets (rotation: any may match); ignored by
///   `discord`, `sendgrid`, `none`.
/// * `url`: the full public URL the provider called, including the query string
///   (used by Twilio only: see [`Preset::uses_url`]).
/// * `headers`, `body`: exactly as received (the raw body bytes, before any parsing).
/// * `now`: unix seconds.
///
/// Signatures are checked before timestamps, so `TIMESTAMP_OUT_OF_TOLERANCE` means
/// "authentic but outside the window". On success the caller should still reject a
/// `message_id` it has already seen.
pub fn verify_inbound(
    preset: &Preset,
    secrets: &[&str],
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<VerifiedInfo, InboundError> {
    if preset.requires_secrets() {
        if secrets.is_empty() {
            return Err(cfg_err(preset.type_name(), "no active secret configured").into());
        }
        providers::validate_secrets(preset, secrets)?;
    }
    let received = providers::Received {
        secrets,
        url,
        headers,
        body,
        now,
    };
    providers::verify(preset, received)
}

#[cfg(test)]
mod tests;
