//! Hookwarden's own outbound signature schemes: [`sign`] for the dispatcher,
//! [`verify`] for receivers (and the `hookwarden verify` command).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use http::HeaderMap;

use crate::error::{SignError, UnknownScheme, VerifyError};
use crate::standard;
use crate::util::{
    self, MAX_SHORT_HEADER_LEN, MAX_SIGNATURE_HEADER_LEN, check_tolerance, ct_eq, hmac_sha1,
    hmac_sha256, parse_prefixed_hex, single_header,
};

/// Header names used by the outbound schemes (lower-case, as emitted by [`sign`]).
pub mod headers {
    /// Standard Webhooks: the message id.
    pub const WEBHOOK_ID: &str = "webhook-id";
    /// Standard Webhooks: unix seconds.
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    /// Standard Webhooks: space-separated `v1,<base64>` signatures.
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    /// GitHub style: `sha256=<hex>` over the body.
    pub const X_HUB_SIGNATURE_256: &str = "x-hub-signature-256";
    /// GitHub legacy / Glassix: `sha1=<hex>` over the body.
    pub const X_HUB_SIGNATURE: &str = "x-hub-signature";
    /// date-sha1: the signed RFC 3339 UTC date.
    pub const X_HOOKWARDEN_AUTH_DATE: &str = "x-hookwarden-auth-date";
    /// date-sha1: `sha1=<hex>` over the date string.
    pub const X_HOOKWARDEN_AUTH_SIGNATURE: &str = "x-hookwarden-auth-signature";
}
use headers::*;

/// Default tolerance for timestamps and dates: 5 minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// An outbound signature scheme. A delivery may carry several at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `standard-webhooks`: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
    /// (one `v1,` entry per secret, space-separated), key = base64 of the secret after
    /// `whsec_` (a secret without the prefix is read as raw base64).
    StandardWebhooks,
    /// `standard-webhooks-v1a`: the same three headers, with
    /// `webhook-signature: v1a,<base64 ed25519 signature of "{id}.{timestamp}.{body}">` (one
    /// entry per key). Signed with `whsk_` private keys (base64 of the 32-byte seed); receivers
    /// verify with the `whpk_` public keys only, so a leak on their side cannot forge webhooks.
    StandardWebhooksV1a,
    /// `github-sha256`: `x-hub-signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    GithubSha256,
    /// `hub-sha1`: `x-hub-signature: sha1=<hex HMAC-SHA1(secret, body)>` (GitHub legacy,
    /// Glassix).
    HubSha1,
    /// `date-sha1`: `x-hookwarden-auth-date: <RFC 3339 UTC, seconds>` and
    /// `x-hookwarden-auth-signature: sha1=<hex HMAC-SHA1(secret, date)>`.
    /// Authenticates the sender and bounds replay to the tolerance window; it does
    /// **not** cover the body, so combine it with a body-signing scheme.
    DateSha1,
}

impl Scheme {
    /// Every scheme, in a stable order.
    pub const ALL: [Scheme; 5] = [
        Scheme::StandardWebhooks,
        Scheme::StandardWebhooksV1a,
        Scheme::GithubSha256,
        Scheme::HubSha1,
        Scheme::DateSha1,
    ];

    /// The stable name: `standard-webhooks`, `standard-webhooks-v1a`, `github-sha256`,
    /// `hub-sha1`, `date-sha1`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::StandardWebhooksV1a => "standard-webhooks-v1a",
            Scheme::GithubSha256 => "github-sha256",
            Scheme::HubSha1 => "hub-sha1",
            Scheme::DateSha1 => "date-sha1",
        }
    }

    /// Whether the scheme's signature covers the request body.
    pub fn signs_body(&self) -> bool {
        !matches!(self, Scheme::DateSha1)
    }

    /// Whether the scheme signs with ed25519 private keys (`whsk_`) rather than shared secrets.
    pub fn is_asymmetric(&self) -> bool {
        matches!(self, Scheme::StandardWebhooksV1a)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = UnknownScheme;

    /// Exact, lower-case names only (as produced by [`Scheme::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| UnknownScheme(s.chars().take(64).collect()))
    }
}

impl serde::Serialize for Scheme {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Scheme {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The message being delivered.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// Unique, stable across retries (receivers deduplicate on it). 1..=256 visible
    /// ASCII characters.
    pub msg_id: &'a str,
    /// Unix seconds of this attempt (the caller's clock; this crate reads no clock).
    pub timestamp: i64,
    /// The exact bytes that will be sent.
    pub body: &'a [u8],
}

/// Headers (lower-case names, values) to add to a delivery for `scheme`, signed with
/// every secret in `secrets` (newest first).
///
/// `standard-webhooks` emits one `v1,` signature per secret; the single-signature
/// schemes sign with `secrets[0]` only. Values are always valid HTTP header values.
pub fn sign(
    scheme: Scheme,
    secrets: &[&str],
    msg: &Outbound<'_>,
) -> Result<Vec<(&'static str, String)>, SignError> {
    let first = *secrets.first().ok_or(SignError::NoSecrets)?;
    // Every secret must be usable, also for the schemes that sign with the first one only:
    // `verify` refuses a list with an empty secret, so `sign` must not accept it either.
    if secrets.iter().any(|s| s.is_empty()) {
        return Err(SignError::InvalidSecret);
    }
    match scheme {
        Scheme::StandardWebhooks => {
            let (id, ts, sig) = standard::sign(secrets, msg)?;
            Ok(vec![
                (WEBHOOK_ID, id),
                (WEBHOOK_TIMESTAMP, ts),
                (WEBHOOK_SIGNATURE, sig),
            ])
        }
        Scheme::StandardWebhooksV1a => {
            let (id, ts, sig) = standard::sign_ed25519(secrets, msg)?;
            Ok(vec![
                (WEBHOOK_ID, id),
                (WEBHOOK_TIMESTAMP, ts),
                (WEBHOOK_SIGNATURE, sig),
            ])
        }
        Scheme::GithubSha256 => {
            let key = plain_key(first)?;
            let mac = hmac_sha256(key, &[msg.body]).ok_or(SignError::InvalidSecret)?;
            Ok(vec![(X_HUB_SIGNATURE_256, prefixed_hex("sha256=", &mac))])
        }
        Scheme::HubSha1 => {
            let key = plain_key(first)?;
            let mac = hmac_sha1(key, &[msg.body]).ok_or(SignError::InvalidSecret)?;
            Ok(vec![(X_HUB_SIGNATURE, prefixed_hex("sha1=", &mac))])
        }
        Scheme::DateSha1 => {
            let key = plain_key(first)?;
            let date =
                util::format_rfc3339_utc(msg.timestamp).ok_or(SignError::InvalidTimestamp)?;
            let mac = hmac_sha1(key, &[date.as_bytes()]).ok_or(SignError::InvalidSecret)?;
            Ok(vec![
                (X_HOOKWARDEN_AUTH_DATE, date),
                (X_HOOKWARDEN_AUTH_SIGNATURE, prefixed_hex("sha1=", &mac)),
            ])
        }
    }
}

/// Verify a received request signed with `scheme`.
///
/// `secrets`: every currently valid secret (rotation: any may match). `now`: unix
/// seconds. `tolerance_secs` (negative = 0; [`DEFAULT_TOLERANCE_SECS`] is the usual
/// choice) applies to standard-webhooks timestamps and date-sha1 dates, in both
/// directions, inclusive. The signature is checked before the timestamp, so
/// [`VerifyError::TimestampOutOfTolerance`] means "authentic but stale or early".
///
/// For standard-webhooks, a secret written `whpk_<base64 ed25519 public key>` verifies
/// `v1a,` signatures.
pub fn verify(
    scheme: Scheme,
    secrets: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    verify_scheme(scheme, secrets, headers, body, now, tolerance_secs).map(|_| ())
}

/// [`verify`], returning the signed message id and timestamp when the scheme has them.
pub(crate) fn verify_scheme(
    scheme: Scheme,
    secrets: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(Option<String>, Option<i64>), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecrets);
    }
    match scheme {
        Scheme::StandardWebhooks | Scheme::StandardWebhooksV1a => {
            // v1a verifies with public keys only: a shared secret there is a mistake.
            if scheme == Scheme::StandardWebhooksV1a
                && !secrets.iter().all(|s| s.starts_with("whpk_"))
            {
                return Err(VerifyError::InvalidSecret);
            }
            let keys = standard::Keys::new(secrets, &[])?;
            let (id, ts) = standard::verify(
                &keys,
                &standard::STANDARD_HEADERS,
                headers,
                body,
                now,
                tolerance_secs,
            )?;
            Ok((Some(id), Some(ts)))
        }
        Scheme::GithubSha256 => {
            let value = single_header(
                headers,
                X_HUB_SIGNATURE_256,
                X_HUB_SIGNATURE_256,
                MAX_SIGNATURE_HEADER_LEN,
            )?;
            let sig = parse_prefixed_hex::<32>(value, "sha256=")
                .ok_or(VerifyError::MalformedHeader(X_HUB_SIGNATURE_256))?;
            any_secret(secrets, |key| {
                Some(ct_eq(&hmac_sha256(key, &[body])?, &sig))
            })?;
            Ok((None, None))
        }
        Scheme::HubSha1 => verify_hub_sha1(secrets, headers, body).map(|_| (None, None)),
        Scheme::DateSha1 => verify_date_sha1(
            secrets,
            headers,
            X_HOOKWARDEN_AUTH_DATE,
            X_HOOKWARDEN_AUTH_SIGNATURE,
            util::parse_rfc3339,
            now,
            tolerance_secs,
        )
        .map(|ts| (None, Some(ts))),
    }
}

/// `x-hub-signature: sha1=<hex HMAC-SHA1(secret, body)>`.
pub(crate) fn verify_hub_sha1(
    secrets: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    let value = single_header(
        headers,
        X_HUB_SIGNATURE,
        X_HUB_SIGNATURE,
        MAX_SIGNATURE_HEADER_LEN,
    )?;
    let sig = parse_prefixed_hex::<20>(value, "sha1=")
        .ok_or(VerifyError::MalformedHeader(X_HUB_SIGNATURE))?;
    any_secret(secrets, |key| Some(ct_eq(&hmac_sha1(key, &[body])?, &sig)))
}

/// `{date_header}: <RFC 3339>` + `{sig_header}: sha1=<hex HMAC-SHA1(secret, date)>`;
/// returns the date as unix seconds.
pub(crate) fn verify_date_sha1(
    secrets: &[&str],
    headers: &HeaderMap,
    date_header: &'static str,
    sig_header: &'static str,
    parse_date: fn(&str) -> Option<i64>,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, VerifyError> {
    let date = single_header(headers, date_header, date_header, MAX_SHORT_HEADER_LEN)?;
    let value = single_header(headers, sig_header, sig_header, MAX_SIGNATURE_HEADER_LEN)?;
    let sig =
        parse_prefixed_hex::<20>(value, "sha1=").ok_or(VerifyError::MalformedHeader(sig_header))?;
    let ts = parse_date(date).ok_or(VerifyError::MalformedHeader(date_header))?;
    any_secret(secrets, |key| {
        Some(ct_eq(&hmac_sha1(key, &[date.as_bytes()])?, &sig))
    })?;
    check_tolerance(ts, now, tolerance_secs)?;
    Ok(ts)
}

/// Ok if `check(secret_bytes)` holds for at least one secret. Every secret is tried
/// (no early exit), so timing does not reveal which one matched. Empty secrets are a
/// configuration error.
pub(crate) fn any_secret(
    secrets: &[&str],
    mut check: impl FnMut(&[u8]) -> Option<bool>,
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecrets);
    }
    let mut ok = false;
    for secret in secrets {
        if secret.is_empty() {
            return Err(VerifyError::InvalidSecret);
        }
        ok |= check(secret.as_bytes()).ok_or(VerifyError::InvalidSecret)?;
    }
    if ok {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

fn plain_key(secret: &str) -> Result<&[u8], SignError> {
    if secret.is_empty() {
        Err(SignError::InvalidSecret)
    } else {
        Ok(secret.as_bytes())
    }
}

/// `prefix` followed by lower-case hex of `bytes`, in one allocation.
pub(crate) fn prefixed_hex(prefix: &str, bytes: &[u8]) -> String {
    let mut s = String::with_capacity(prefix.len() + bytes.len() * 2);
    s.push_str(prefix);
    let mut buf = [0u8; 128];
    if let Some(out) = buf.get_mut(..bytes.len() * 2)
        && hex::encode_to_slice(bytes, out).is_ok()
        && let Ok(h) = std::str::from_utf8(out)
    {
        s.push_str(h);
        return s;
    }
    s.push_str(&hex::encode(bytes));
    s
}

/// Standard base64 of `bytes` appended to `out`.
pub(crate) fn push_b64(out: &mut String, bytes: &[u8]) {
    util::B64.encode_string(bytes, out);
}
