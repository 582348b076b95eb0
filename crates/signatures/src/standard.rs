//! The Standard Webhooks scheme (<https://www.standardwebhooks.com/>), shared by the
//! outbound `standard-webhooks` scheme and the inbound `standard-webhooks` preset
//! (which also reads Svix's `svix-*` header names).

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::Mac as _;
use http::HeaderMap;

use crate::error::{SignError, VerifyError};
use crate::outbound::{Outbound, push_b64};
use crate::util::{
    self, HmacSha256, KeyBuf, MAX_SHORT_HEADER_LEN, MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURES,
    check_tolerance, ct_eq, decode_whsec, hmac_parts, parse_unix_secs, single_header,
};

/// Longest accepted message id, in bytes.
pub const MAX_MSG_ID_LEN: usize = 256;

/// The three header names of a Standard-Webhooks-style request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderNames {
    pub id: &'static str,
    pub timestamp: &'static str,
    pub signature: &'static str,
}

/// Most `v1a` (ed25519) signatures read from one header; more is a malformed header.
pub(crate) const MAX_ASYMMETRIC_SIGNATURES: usize = 4;
/// Most ed25519 public keys one inbound preset may hold.
pub(crate) const MAX_PUBLIC_KEYS: usize = 5;

pub(crate) const STANDARD_HEADERS: HeaderNames = HeaderNames {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

pub(crate) const SVIX_HEADERS: HeaderNames = HeaderNames {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// Checks what both versions sign (keys given, a message id fit for a header, a timestamp
/// receivers can read) and returns the timestamp as signed.
fn signable(keys: &[&str], msg: &Outbound<'_>) -> Result<String, SignError> {
    if keys.is_empty() {
        return Err(SignError::NoSecrets);
    }
    if !valid_msg_id(msg.msg_id) {
        return Err(SignError::InvalidMessageId);
    }
    // Receivers read at most 15 digits (`parse_unix_secs`): a larger timestamp never verifies.
    if !(0..=util::MAX_UNIX_SECS).contains(&msg.timestamp) {
        return Err(SignError::InvalidTimestamp);
    }
    Ok(msg.timestamp.to_string())
}

/// Sign: returns the values of `webhook-id`, `webhook-timestamp`, `webhook-signature`.
pub(crate) fn sign(
    secrets: &[&str],
    msg: &Outbound<'_>,
) -> Result<(String, String, String), SignError> {
    let ts = signable(secrets, msg)?;
    // "v1," + 44 base64 chars, space-separated.
    let mut sig = String::with_capacity(secrets.len() * 48);
    for secret in secrets {
        let key = decode_whsec(secret).ok_or(SignError::InvalidSecret)?;
        let mac = hmac_parts::<HmacSha256>(
            key.as_slice(),
            &[msg.msg_id.as_bytes(), b".", ts.as_bytes(), b".", msg.body],
        )
        .ok_or(SignError::InvalidSecret)?;
        if !sig.is_empty() {
            sig.push(' ');
        }
        sig.push_str("v1,");
        push_b64(&mut sig, &mac.finalize().into_bytes());
    }
    Ok((msg.msg_id.to_owned(), ts, sig))
}

/// Sign with ed25519 keys (`whsk_` + base64 of the 32-byte seed): returns the values of
/// `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1a,<base64>` per key).
pub(crate) fn sign_ed25519(
    keys: &[&str],
    msg: &Outbound<'_>,
) -> Result<(String, String, String), SignError> {
    let ts = signable(keys, msg)?;
    let mut signed = Vec::with_capacity(msg.msg_id.len() + ts.len() + 2 + msg.body.len());
    signed.extend_from_slice(msg.msg_id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(ts.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(msg.body);
    let mut sig = String::with_capacity(keys.len() * 93);
    for key in keys {
        let sk = signing_key(key).ok_or(SignError::InvalidSecret)?;
        let s = ed25519_dalek::Signer::sign(&sk, &signed);
        if !sig.is_empty() {
            sig.push(' ');
        }
        sig.push_str("v1a,");
        push_b64(&mut sig, &s.to_bytes());
    }
    Ok((msg.msg_id.to_owned(), ts, sig))
}

fn signing_key(whsk: &str) -> Option<ed25519_dalek::SigningKey> {
    let seed = util::decode_b64_lenient_exact::<32>(whsk.strip_prefix("whsk_")?)?;
    Some(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// A `whsk_` private key made from 32 random bytes (the caller's CSPRNG: this crate does no
/// I/O).
pub fn ed25519_private_key(seed: [u8; 32]) -> String {
    let mut s = String::from("whsk_");
    push_b64(&mut s, &seed);
    s
}

/// The `whpk_` public key of a `whsk_` private key; `None` when it is not one.
pub fn ed25519_public_key(whsk: &str) -> Option<String> {
    let sk = signing_key(whsk)?;
    let mut s = String::from("whpk_");
    push_b64(&mut s, sk.verifying_key().as_bytes());
    Some(s)
}

/// A message id we are willing to put in a header and in the signed content.
pub(crate) fn valid_msg_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MSG_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// One verification key.
pub(crate) enum Key {
    /// Symmetric `whsec_` secret → `v1,` signatures.
    Hmac(KeyBuf),
    /// Ed25519 public key `whpk_` → `v1a,` signatures.
    Ed25519(VerifyingKey),
}

/// The decoded keys to verify with.
pub(crate) struct Keys(Vec<Key>);

impl Keys {
    /// `secrets`: `whsec_…`/bare base64 symmetric secrets and `whpk_…` public keys;
    /// `extra`: more ed25519 public keys (from configuration).
    pub(crate) fn new(secrets: &[&str], extra: &[VerifyingKey]) -> Result<Self, VerifyError> {
        let mut keys = Vec::with_capacity(secrets.len() + extra.len());
        for s in secrets {
            keys.push(parse_key(s).ok_or(VerifyError::InvalidSecret)?);
        }
        keys.extend(extra.iter().copied().map(Key::Ed25519));
        if keys.is_empty() {
            return Err(VerifyError::NoSecrets);
        }
        Ok(Keys(keys))
    }
}

/// Parse one Standard Webhooks key.
pub(crate) fn parse_key(s: &str) -> Option<Key> {
    if let Some(pk) = s.strip_prefix("whpk_") {
        let bytes = util::decode_b64_lenient_exact::<32>(pk)?;
        return VerifyingKey::from_bytes(&bytes).ok().map(Key::Ed25519);
    }
    decode_whsec(s).map(Key::Hmac)
}

/// Verify; returns the (signed) message id and timestamp.
pub(crate) fn verify(
    keys: &Keys,
    names: &HeaderNames,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(String, i64), VerifyError> {
    let id = single_header(headers, names.id, names.id, MAX_SHORT_HEADER_LEN)?;
    let ts_str = single_header(
        headers,
        names.timestamp,
        names.timestamp,
        MAX_SHORT_HEADER_LEN,
    )?;
    let sig_header = single_header(
        headers,
        names.signature,
        names.signature,
        MAX_SIGNATURE_HEADER_LEN,
    )?;
    let ts = parse_unix_secs(ts_str).ok_or(VerifyError::MalformedHeader(names.timestamp))?;

    // Parse at most MAX_SIGNATURES space-separated `version,signature` entries.
    // Entries with an unknown version, or whose signature does not decode to the right
    // length, can never match and are skipped (as the reference libraries do).
    let mut v1: [Option<[u8; 32]>; MAX_SIGNATURES] = [None; MAX_SIGNATURES];
    let mut v1a: [Option<[u8; 64]>; MAX_SIGNATURES] = [None; MAX_SIGNATURES];
    let mut entries = 0usize;
    let mut well_formed = 0usize;
    let mut asymmetric = 0usize;
    for token in sig_header.split([' ', '\t']).filter(|t| !t.is_empty()) {
        let slot = entries;
        entries += 1;
        if entries > MAX_SIGNATURES {
            return Err(VerifyError::MalformedHeader(names.signature));
        }
        let Some((version, sig)) = token.split_once(',') else {
            continue;
        };
        well_formed += 1;
        match version {
            "v1" => {
                if let Some(s) = v1.get_mut(slot) {
                    *s = util::decode_b64_exact::<32>(sig);
                }
            }
            "v1a" => {
                // Each one costs a hash of the whole body per public key: a sender needs two
                // during a rotation, never more than a few.
                asymmetric += 1;
                if asymmetric > MAX_ASYMMETRIC_SIGNATURES {
                    return Err(VerifyError::MalformedHeader(names.signature));
                }
                if let Some(s) = v1a.get_mut(slot) {
                    *s = util::decode_b64_exact::<64>(sig);
                }
            }
            _ => {}
        }
    }
    if well_formed == 0 {
        return Err(VerifyError::MalformedHeader(names.signature));
    }

    let mut matched = false;
    let mut ed_msg: Option<Vec<u8>> = None;
    for key in &keys.0 {
        match key {
            Key::Hmac(k) => {
                let mac = hmac_parts::<HmacSha256>(
                    k.as_slice(),
                    &[id.as_bytes(), b".", ts_str.as_bytes(), b".", body],
                )
                .ok_or(VerifyError::InvalidSecret)?
                .finalize()
                .into_bytes();
                for sig in v1.iter().flatten() {
                    matched |= ct_eq(&mac, sig);
                }
            }
            Key::Ed25519(pk) => {
                if v1a.iter().all(Option::is_none) {
                    continue;
                }
                let msg = ed_msg.get_or_insert_with(|| {
                    let mut m = Vec::with_capacity(id.len() + ts_str.len() + 2 + body.len());
                    m.extend_from_slice(id.as_bytes());
                    m.push(b'.');
                    m.extend_from_slice(ts_str.as_bytes());
                    m.push(b'.');
                    m.extend_from_slice(body);
                    m
                });
                for sig in v1a.iter().flatten() {
                    matched |= pk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok();
                }
            }
        }
    }
    if !matched {
        return Err(VerifyError::SignatureMismatch);
    }
    check_tolerance(ts, now, tolerance_secs)?;
    Ok((id.to_owned(), ts))
}
