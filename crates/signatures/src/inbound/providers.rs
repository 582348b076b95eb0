//! Per-provider verification.

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::config::*;
use super::url as urlx;
use super::{
    ConfigError, InboundError, Prepared, Preset, VerifiedInfo, cfg_err, parse_header_name,
};
use crate::error::VerifyError;
use crate::outbound::{self, any_secret};
use crate::standard;
use crate::util::{
    B64, MAX_SHORT_HEADER_LEN, MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURES, check_tolerance, ct_eq,
    ct_eq_hidden_len, decode_b64_exact, decode_hex_exact, hmac_sha1, hmac_sha256, hmac_sha512,
    optional_header, parse_prefixed_hex, parse_rfc3339, parse_unix_secs, single_header,
};

/// One received request, as every provider's check reads it.
#[derive(Clone, Copy)]
pub(super) struct Received<'a> {
    /// The currently active secrets (rotation: any may match).
    pub(super) secrets: &'a [&'a str],
    /// The full public URL the provider called (Twilio signs it).
    pub(super) url: &'a str,
    pub(super) headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub(super) body: &'a [u8],
    /// Unix seconds.
    pub(super) now: i64,
}

/// Label used in errors for operator-configured header names.
const CONFIGURED_SIGNATURE_HEADER: &str = "configured signature header";
const CONFIGURED_TIMESTAMP_HEADER: &str = "configured timestamp header";
const CONFIGURED_ID_HEADER: &str = "configured id header";
const CONFIGURED_KEY_HEADER: &str = "configured api key header";
/// Longest id we report.
const MAX_ID_LEN: usize = 256;

pub(super) fn validate_secrets(preset: &Preset, secrets: &[&str]) -> Result<(), ConfigError> {
    let name = preset.type_name();
    for s in secrets {
        if s.is_empty() {
            return Err(cfg_err(name, "a secret is empty"));
        }
        let ok = match preset.config() {
            PresetConfig::StandardWebhooks(_) => standard::parse_key(s).is_some(),
            PresetConfig::Hookwarden(c) if c.schemes.contains(&crate::Scheme::StandardWebhooks) => {
                // The same secret list serves every listed scheme.
                standard::parse_key(s).is_some()
            }
            _ => true,
        };
        if !ok {
            return Err(cfg_err(
                name,
                "a secret is not a Standard Webhooks key (whsec_<base64>, bare base64, or whpk_<base64>)",
            ));
        }
    }
    Ok(())
}

fn t(tolerance_secs: u32) -> i64 {
    i64::from(tolerance_secs)
}

fn signed_id(id: Option<String>, ts: Option<i64>) -> VerifiedInfo {
    VerifiedInfo {
        message_id_signed: id.is_some(),
        message_id: id,
        timestamp: ts,
    }
}

fn unsigned_id(id: Option<String>) -> VerifiedInfo {
    VerifiedInfo {
        message_id: id,
        timestamp: None,
        message_id_signed: false,
    }
}

/// An optional id header value (unsigned), bounded.
fn id_header(headers: &HeaderMap, name: &'static str) -> Option<String> {
    optional_header(headers, name, name, MAX_ID_LEN)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// Top-level string fields of a JSON body that identify the event.
#[derive(Deserialize, Default)]
struct BodyIds {
    id: Option<serde_json::Value>,
    event_id: Option<serde_json::Value>,
    notification_id: Option<serde_json::Value>,
}

fn body_ids(body: &[u8]) -> BodyIds {
    serde_json::from_slice(body).unwrap_or_default()
}

fn bounded(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Some(s),
        _ => None,
    }
}

pub(super) fn verify(preset: &Preset, r: Received<'_>) -> Result<VerifiedInfo, InboundError> {
    let result = match (preset.config(), &preset.prepared) {
        (PresetConfig::StandardWebhooks(c), Prepared::StandardWebhooks(pks)) => {
            verify_standard(c, pks, r)
        }
        (PresetConfig::Github(c), _) => verify_github(c, r),
        (PresetConfig::Stripe(c), _) => verify_stripe(c, r),
        (PresetConfig::Slack(c), _) => verify_v0_style(
            r,
            t(c.tolerance_secs),
            "x-slack-signature",
            "x-slack-request-timestamp",
        )
        .map(|ts| signed_id(bounded(body_ids(r.body).event_id), Some(ts))),
        (PresetConfig::Shopify(_), _) => verify_shopify(r),
        (PresetConfig::Twilio(_), _) => verify_twilio(r),
        (PresetConfig::Paddle(c), _) => verify_paddle(c, r),
        (PresetConfig::Zoom(c), _) => verify_v0_style(
            r,
            t(c.tolerance_secs),
            "x-zm-signature",
            "x-zm-request-timestamp",
        )
        .map(|ts| signed_id(None, Some(ts))),
        (PresetConfig::Twitch(c), _) => verify_twitch(c, r),
        (PresetConfig::Discord(c), Prepared::Discord(pk)) => verify_discord(c, pk, r),
        (PresetConfig::Sendgrid(c), Prepared::Sendgrid(pk)) => verify_sendgrid(c, pk, r),
        (PresetConfig::Glassix(c), _) => verify_glassix(c, r),
        (PresetConfig::Hookwarden(c), _) => verify_hookwarden(c, r),
        (PresetConfig::Hmac(c), Prepared::Hmac(p)) => verify_hmac(c, p, r),
        (PresetConfig::BasicAuth(c), _) => verify_basic(c, r),
        (PresetConfig::ApiKey(c), Prepared::ApiKey(h)) => verify_api_key(c, h, r),
        (PresetConfig::NoVerification(_), _) => Ok(VerifiedInfo::default()),
        // A Preset is only built by `prepare`, which pairs each config with its data.
        _ => {
            return Err(cfg_err(preset.type_name(), "preset was not prepared").into());
        }
    };
    result.map_err(InboundError::from)
}

fn verify_standard(
    c: &StandardWebhooksConfig,
    pks: &[ed25519_dalek::VerifyingKey],
    r: Received<'_>,
) -> Result<VerifiedInfo, VerifyError> {
    let names = if r.headers.contains_key(standard::STANDARD_HEADERS.signature)
        || !r.headers.contains_key(standard::SVIX_HEADERS.signature)
    {
        &standard::STANDARD_HEADERS
    } else {
        &standard::SVIX_HEADERS
    };
    let keys = standard::Keys::new(r.secrets, pks)?;
    let (id, ts) = standard::verify(&keys, names, r.headers, r.body, r.now, t(c.tolerance_secs))?;
    Ok(signed_id(Some(id), Some(ts)))
}

/// `value` (of header `header`) is `{prefix}<hex HMAC-SHA256 of the message>` under one of the
/// secrets; the message is `parts` one after the other.
fn hex_hmac_matches(
    secrets: &[&str],
    header: &'static str,
    value: &str,
    prefix: &str,
    parts: &[&[u8]],
) -> Result<(), VerifyError> {
    let sig =
        parse_prefixed_hex::<32>(value, prefix).ok_or(VerifyError::MalformedHeader(header))?;
    any_secret(secrets, |k| Some(ct_eq(&hmac_sha256(k, parts)?, &sig)))
}

fn verify_github(c: &GithubConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const H256: &str = "x-hub-signature-256";
    match optional_header(r.headers, H256, H256, MAX_SIGNATURE_HEADER_LEN)? {
        Some(value) => {
            hex_hmac_matches(r.secrets, H256, value, "sha256=", &[r.body])?;
        }
        None if c.allow_sha1_legacy && r.headers.contains_key("x-hub-signature") => {
            outbound::verify_hub_sha1(r.secrets, r.headers, r.body)?;
        }
        None => return Err(VerifyError::MissingHeader(H256)),
    }
    Ok(unsigned_id(id_header(r.headers, "x-github-delivery")))
}

/// Parse `t=<unix>{sep}v1=<hex>{sep}v1=<hex>…` style headers (Stripe, Paddle): exactly one
/// timestamp entry, 1..=16 signature entries (undecodable ones never match), other keys
/// ignored.
fn parse_kv_signatures<'v>(
    value: &'v str,
    sep: char,
    ts_key: &str,
    sig_key: &str,
    header: &'static str,
) -> Result<(&'v str, i64, Vec<[u8; 32]>), VerifyError> {
    let malformed = VerifyError::MalformedHeader(header);
    let mut ts_str: Option<&str> = None;
    let mut sigs: Vec<[u8; 32]> = Vec::new();
    let mut seen = 0usize;
    for (i, item) in value.split(sep).enumerate() {
        if i > 2 * MAX_SIGNATURES {
            return Err(malformed);
        }
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        if k == ts_key {
            if ts_str.replace(v).is_some() {
                return Err(malformed);
            }
        } else if k == sig_key {
            seen += 1;
            if seen > MAX_SIGNATURES {
                return Err(malformed);
            }
            if let Some(s) = decode_hex_exact::<32>(v) {
                sigs.push(s);
            }
        }
    }
    let ts_str = ts_str.ok_or(malformed.clone())?;
    let ts = parse_unix_secs(ts_str).ok_or(malformed.clone())?;
    if seen == 0 {
        return Err(malformed);
    }
    Ok((ts_str, ts, sigs))
}

/// Stripe and Paddle: `{header}: {ts_key}=<unix>{sep}{sig_key}=<hex>…` (see
/// [`parse_kv_signatures`]), each signature an HMAC-SHA256 of `"{ts}{joiner}{body}"`. Returns the
/// timestamp.
fn verify_kv_style(
    r: Received<'_>,
    tolerance: i64,
    header: &'static str,
    sep: char,
    ts_key: &str,
    sig_key: &str,
    joiner: &[u8],
) -> Result<i64, VerifyError> {
    let value = single_header(r.headers, header, header, MAX_SIGNATURE_HEADER_LEN)?;
    let (ts_str, ts, sigs) = parse_kv_signatures(value, sep, ts_key, sig_key, header)?;
    any_secret(r.secrets, |k| {
        let mac = hmac_sha256(k, &[ts_str.as_bytes(), joiner, r.body])?;
        Some(sigs.iter().fold(false, |acc, s| acc | ct_eq(&mac, s)))
    })?;
    check_tolerance(ts, r.now, tolerance)?;
    Ok(ts)
}

fn verify_stripe(c: &StripeConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    let tolerance = t(c.tolerance_secs);
    let ts = verify_kv_style(r, tolerance, "stripe-signature", ',', "t", "v1", b".")?;
    Ok(signed_id(bounded(body_ids(r.body).id), Some(ts)))
}

/// Slack and Zoom: `{sig_header}: v0=<hex HMAC-SHA256("v0:{ts}:{body}")>`.
fn verify_v0_style(
    r: Received<'_>,
    tolerance: i64,
    sig_header: &'static str,
    ts_header: &'static str,
) -> Result<i64, VerifyError> {
    let ts_str = single_header(r.headers, ts_header, ts_header, MAX_SHORT_HEADER_LEN)?;
    let value = single_header(r.headers, sig_header, sig_header, MAX_SIGNATURE_HEADER_LEN)?;
    let ts = parse_unix_secs(ts_str).ok_or(VerifyError::MalformedHeader(ts_header))?;
    let message = [b"v0:".as_slice(), ts_str.as_bytes(), b":", r.body];
    hex_hmac_matches(r.secrets, sig_header, value, "v0=", &message)?;
    check_tolerance(ts, r.now, tolerance)?;
    Ok(ts)
}

fn verify_shopify(r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const H: &str = "x-shopify-hmac-sha256";
    let value = single_header(r.headers, H, H, MAX_SIGNATURE_HEADER_LEN)?;
    let sig = decode_b64_exact::<32>(value).ok_or(VerifyError::MalformedHeader(H))?;
    any_secret(r.secrets, |k| {
        Some(ct_eq(&hmac_sha256(k, &[r.body])?, &sig))
    })?;
    Ok(unsigned_id(id_header(r.headers, "x-shopify-webhook-id")))
}

fn verify_twilio(r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const H: &str = "x-twilio-signature";
    const SETTINGS: &str = "x-twilio-webhooks-signature-settings";
    const URL: &str = "request url";
    let value = single_header(r.headers, H, H, MAX_SIGNATURE_HEADER_LEN)?;
    let sha256 = match optional_header(r.headers, SETTINGS, SETTINGS, MAX_SHORT_HEADER_LEN)? {
        None => false,
        Some(settings) => {
            let alg = settings
                .split(',')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "algorithm")
                .map(|(_, v)| v.trim());
            match alg {
                None | Some("") => false,
                Some(a) if a.eq_ignore_ascii_case("HMAC_SHA1") => false,
                Some(a) if a.eq_ignore_ascii_case("HMAC_SHA256") => true,
                Some(_) => return Err(VerifyError::MalformedHeader(SETTINGS)),
            }
        }
    };
    let sig: Vec<u8> = if sha256 {
        decode_b64_exact::<32>(value).map(|s| s.to_vec())
    } else {
        decode_b64_exact::<20>(value).map(|s| s.to_vec())
    }
    .ok_or(VerifyError::MalformedHeader(H))?;

    if r.url.len() > 8192 {
        return Err(VerifyError::MalformedHeader(URL));
    }
    let (without_port, with_port) =
        urlx::port_variants(r.url).ok_or(VerifyError::MalformedHeader(URL))?;

    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(expected) = urlx::query_param(r.url, "bodySHA256") {
        let expected =
            decode_hex_exact::<32>(&expected).ok_or(VerifyError::MalformedHeader(URL))?;
        let actual: [u8; 32] = Sha256::digest(r.body).into();
        if !ct_eq(&actual, &expected) {
            return Err(VerifyError::BodyHashMismatch);
        }
    } else if is_form(r.headers) {
        params = urlx::form_pairs(r.body).ok_or(VerifyError::BodyNotSigned)?;
        params.sort_unstable();
        params.dedup();
    } else if !r.body.is_empty() {
        return Err(VerifyError::BodyNotSigned);
    }

    any_secret(r.secrets, |k| {
        let mut ok = false;
        for u in [&without_port, &with_port] {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * params.len());
            parts.push(u.as_bytes());
            for (pk, pv) in &params {
                parts.push(pk.as_bytes());
                parts.push(pv.as_bytes());
            }
            ok |= if sha256 {
                ct_eq(&hmac_sha256(k, &parts)?, &sig)
            } else {
                ct_eq(&hmac_sha1(k, &parts)?, &sig)
            };
        }
        Some(ok)
    })?;
    Ok(unsigned_id(id_header(
        r.headers,
        "i-twilio-idempotency-token",
    )))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn verify_paddle(c: &PaddleConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    let tolerance = t(c.tolerance_secs);
    let ts = verify_kv_style(r, tolerance, "paddle-signature", ';', "ts", "h1", b":")?;
    let ids = body_ids(r.body);
    Ok(signed_id(
        bounded(ids.notification_id).or_else(|| bounded(ids.event_id)),
        Some(ts),
    ))
}

fn verify_twitch(c: &TwitchConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const ID: &str = "twitch-eventsub-message-id";
    const TS: &str = "twitch-eventsub-message-timestamp";
    const SIG: &str = "twitch-eventsub-message-signature";
    let id = single_header(r.headers, ID, ID, MAX_ID_LEN)?;
    let ts_str = single_header(r.headers, TS, TS, MAX_SHORT_HEADER_LEN)?;
    let value = single_header(r.headers, SIG, SIG, MAX_SIGNATURE_HEADER_LEN)?;
    let ts = parse_rfc3339(ts_str).ok_or(VerifyError::MalformedHeader(TS))?;
    let message = [id.as_bytes(), ts_str.as_bytes(), r.body];
    hex_hmac_matches(r.secrets, SIG, value, "sha256=", &message)?;
    check_tolerance(ts, r.now, t(c.tolerance_secs))?;
    Ok(signed_id(Some(id.to_owned()), Some(ts)))
}

fn verify_discord(
    c: &DiscordConfig,
    pk: &ed25519_dalek::VerifyingKey,
    r: Received<'_>,
) -> Result<VerifiedInfo, VerifyError> {
    const SIG: &str = "x-signature-ed25519";
    const TS: &str = "x-signature-timestamp";
    let value = single_header(r.headers, SIG, SIG, MAX_SIGNATURE_HEADER_LEN)?;
    let ts_str = single_header(r.headers, TS, TS, MAX_SHORT_HEADER_LEN)?;
    let ts = parse_unix_secs(ts_str).ok_or(VerifyError::MalformedHeader(TS))?;
    let sig = decode_hex_exact::<64>(value).ok_or(VerifyError::MalformedHeader(SIG))?;
    let mut msg = Vec::with_capacity(ts_str.len() + r.body.len());
    msg.extend_from_slice(ts_str.as_bytes());
    msg.extend_from_slice(r.body);
    pk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| VerifyError::SignatureMismatch)?;
    check_tolerance(ts, r.now, t(c.tolerance_secs))?;
    Ok(signed_id(bounded(body_ids(r.body).id), Some(ts)))
}

/// Base64 DER SubjectPublicKeyInfo, optionally PEM-armoured, of a P-256 key.
pub(super) fn parse_p256_public_key(s: &str) -> Option<p256::ecdsa::VerifyingKey> {
    use p256::pkcs8::DecodePublicKey as _;
    if s.len() > 1024 {
        return None;
    }
    let b64: String = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = B64.decode(b64).ok()?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&der).ok()
}

fn verify_sendgrid(
    c: &SendgridConfig,
    pk: &p256::ecdsa::VerifyingKey,
    r: Received<'_>,
) -> Result<VerifiedInfo, VerifyError> {
    const SIG: &str = "x-twilio-email-event-webhook-signature";
    const TS: &str = "x-twilio-email-event-webhook-timestamp";
    let value = single_header(r.headers, SIG, SIG, 256)?;
    let ts_str = single_header(r.headers, TS, TS, MAX_SHORT_HEADER_LEN)?;
    let ts = parse_unix_secs(ts_str).ok_or(VerifyError::MalformedHeader(TS))?;
    let mut der = [0u8; 192];
    let n = B64
        .decode_slice(value, &mut der)
        .map_err(|_| VerifyError::MalformedHeader(SIG))?;
    let sig = p256::ecdsa::Signature::from_der(der.get(..n).unwrap_or_default())
        .map_err(|_| VerifyError::MalformedHeader(SIG))?;
    let digest = Sha256::new()
        .chain_update(ts_str.as_bytes())
        .chain_update(r.body)
        .finalize();
    pk.verify_prehash(&digest, &sig)
        .map_err(|_| VerifyError::SignatureMismatch)?;
    check_tolerance(ts, r.now, t(c.tolerance_secs))?;
    Ok(signed_id(None, Some(ts)))
}

fn verify_glassix(c: &GlassixConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const BODY_SIG: &str = "x-hub-signature";
    const DATE: &str = "x-glassix-auth-date";
    const DATE_SIG: &str = "x-glassix-auth-signature";
    let mut verified_any = false;
    if c.require_body_signature || r.headers.contains_key(BODY_SIG) {
        outbound::verify_hub_sha1(r.secrets, r.headers, r.body)?;
        verified_any = true;
    }
    let mut ts = None;
    if c.require_date_signature || r.headers.contains_key(DATE_SIG) {
        ts = Some(outbound::verify_date_sha1(
            r.secrets,
            r.headers,
            DATE,
            DATE_SIG,
            crate::util::parse_date_flexible,
            r.now,
            t(c.tolerance_secs),
        )?);
        verified_any = true;
    }
    if !verified_any {
        return Err(VerifyError::MissingHeader(BODY_SIG));
    }
    Ok(signed_id(None, ts))
}

fn verify_hookwarden(c: &HookwardenConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    let mut info = VerifiedInfo::default();
    let mut first_err: Option<VerifyError> = None;
    let mut any_ok = false;
    for scheme in &c.schemes {
        match outbound::verify_scheme(
            *scheme,
            r.secrets,
            r.headers,
            r.body,
            r.now,
            t(c.tolerance_secs),
        ) {
            Ok((id, ts)) => {
                any_ok = true;
                if let Some(id) = id {
                    info.message_id = Some(id);
                    info.message_id_signed = true;
                }
                if info.timestamp.is_none() {
                    info.timestamp = ts;
                }
            }
            Err(e) => {
                if c.mode == MatchMode::All {
                    return Err(e);
                }
                first_err.get_or_insert(e);
            }
        }
    }
    if any_ok {
        Ok(info)
    } else {
        Err(first_err.unwrap_or(VerifyError::SignatureMismatch))
    }
}

/// One piece of a generic HMAC template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Body,
    Timestamp,
    Id,
}

/// Parsed generic HMAC configuration.
#[derive(Debug, Clone)]
pub(crate) struct HmacPrepared {
    header: HeaderName,
    timestamp_header: Option<HeaderName>,
    id_header: Option<HeaderName>,
    template: Vec<Segment>,
}

impl HmacPrepared {
    pub(super) fn new(c: &HmacConfig) -> Result<Self, ConfigError> {
        const P: &str = "hmac";
        let header = parse_header_name(P, "header", &c.header)?;
        let timestamp_header = c
            .timestamp_header
            .as_deref()
            .map(|h| parse_header_name(P, "timestamp_header", h))
            .transpose()?;
        let id_header = c
            .id_header
            .as_deref()
            .map(|h| parse_header_name(P, "id_header", h))
            .transpose()?;
        if let Some(p) = &c.prefix
            && (p.is_empty() || p.len() > 64)
        {
            return Err(cfg_err(P, "prefix must be 1..=64 bytes when given"));
        }
        let template = parse_template(&c.signed_content)?;
        let count = |s: &Segment| template.iter().filter(|x| *x == s).count();
        if count(&Segment::Body) != 1 {
            return Err(cfg_err(
                P,
                "signed_content must contain {body} exactly once",
            ));
        }
        if count(&Segment::Timestamp) > 0 && timestamp_header.is_none() {
            return Err(cfg_err(
                P,
                "signed_content uses {timestamp} but timestamp_header is not set",
            ));
        }
        if count(&Segment::Id) > 0 && id_header.is_none() {
            return Err(cfg_err(
                P,
                "signed_content uses {id} but id_header is not set",
            ));
        }
        if timestamp_header.is_some() && count(&Segment::Timestamp) == 0 {
            return Err(cfg_err(
                P,
                "timestamp_header is set but signed_content does not contain {timestamp}: the timestamp would not be authenticated",
            ));
        }
        Ok(HmacPrepared {
            header,
            timestamp_header,
            id_header,
            template,
        })
    }
}

/// `"body"` → `[Body]`; otherwise literal text with `{body}`, `{timestamp}`, `{id}`.
fn parse_template(s: &str) -> Result<Vec<Segment>, ConfigError> {
    const P: &str = "hmac";
    if s == "body" {
        return Ok(vec![Segment::Body]);
    }
    if s.is_empty() || s.len() > 256 {
        return Err(cfg_err(
            P,
            "signed_content must be \"body\" or a template of 1..=256 bytes",
        ));
    }
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        lit.push_str(before);
        let Some(close) = after.find('}') else {
            lit.push_str(after);
            rest = "";
            break;
        };
        let name = after.get(1..close).unwrap_or_default();
        let seg = match name {
            "body" => Some(Segment::Body),
            "timestamp" => Some(Segment::Timestamp),
            "id" => Some(Segment::Id),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                return Err(cfg_err(
                    P,
                    format!(
                        "unknown placeholder {{{n}}} in signed_content (known: {{body}}, {{timestamp}}, {{id}})"
                    ),
                ));
            }
            _ => None,
        };
        match seg {
            Some(seg) => {
                if !lit.is_empty() {
                    out.push(Segment::Literal(std::mem::take(&mut lit)));
                }
                out.push(seg);
                rest = after.get(close + 1..).unwrap_or_default();
            }
            None => {
                lit.push('{');
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Segment::Literal(lit));
    }
    Ok(out)
}

fn verify_hmac(
    c: &HmacConfig,
    p: &HmacPrepared,
    r: Received<'_>,
) -> Result<VerifiedInfo, VerifyError> {
    let value = single_header(
        r.headers,
        p.header.as_str(),
        CONFIGURED_SIGNATURE_HEADER,
        MAX_SIGNATURE_HEADER_LEN,
    )?;
    let ts_str = p
        .timestamp_header
        .as_ref()
        .map(|h| {
            single_header(
                r.headers,
                h.as_str(),
                CONFIGURED_TIMESTAMP_HEADER,
                MAX_SHORT_HEADER_LEN,
            )
        })
        .transpose()?;
    let id = p
        .id_header
        .as_ref()
        .map(|h| single_header(r.headers, h.as_str(), CONFIGURED_ID_HEADER, MAX_ID_LEN))
        .transpose()?;
    let ts = match ts_str {
        None => None,
        Some(s) => Some(
            match c.timestamp_format {
                TimestampFormat::Unix => parse_unix_secs(s),
                TimestampFormat::Rfc3339 => parse_rfc3339(s),
            }
            .ok_or(VerifyError::MalformedHeader(CONFIGURED_TIMESTAMP_HEADER))?,
        ),
    };
    let malformed = VerifyError::MalformedHeader(CONFIGURED_SIGNATURE_HEADER);
    let encoded = match &c.prefix {
        Some(prefix) => value
            .strip_prefix(prefix.as_str())
            .ok_or(malformed.clone())?,
        None => value,
    };
    let len = match c.algorithm {
        HmacAlgorithm::Sha1 => 20,
        HmacAlgorithm::Sha256 => 32,
        HmacAlgorithm::Sha512 => 64,
    };
    let mut sig_buf = [0u8; 64];
    let sig = sig_buf.get_mut(..len).ok_or(malformed.clone())?;
    match c.encoding {
        SignatureEncoding::Hex => {
            if encoded.len() != 2 * len {
                return Err(malformed);
            }
            hex::decode_to_slice(encoded, sig).map_err(|_| malformed.clone())?;
        }
        SignatureEncoding::Base64 => {
            if encoded.len() != len.div_ceil(3) * 4 {
                return Err(malformed);
            }
            let mut buf = [0u8; 96];
            let n = B64
                .decode_slice(encoded, &mut buf)
                .map_err(|_| malformed.clone())?;
            if n != len {
                return Err(malformed);
            }
            sig.copy_from_slice(buf.get(..len).ok_or(malformed.clone())?);
        }
    }
    let sig: &[u8] = sig;
    let parts: Vec<&[u8]> = p
        .template
        .iter()
        .map(|seg| match seg {
            Segment::Literal(l) => l.as_bytes(),
            Segment::Body => r.body,
            Segment::Timestamp => ts_str.unwrap_or_default().as_bytes(),
            Segment::Id => id.unwrap_or_default().as_bytes(),
        })
        .collect();
    any_secret(r.secrets, |k| {
        Some(match c.algorithm {
            HmacAlgorithm::Sha1 => ct_eq(&hmac_sha1(k, &parts)?, sig),
            HmacAlgorithm::Sha256 => ct_eq(&hmac_sha256(k, &parts)?, sig),
            HmacAlgorithm::Sha512 => ct_eq(&hmac_sha512(k, &parts)?, sig),
        })
    })?;
    if let Some(ts) = ts {
        check_tolerance(ts, r.now, t(c.tolerance_secs))?;
    }
    let id_signed = p.template.contains(&Segment::Id);
    Ok(VerifiedInfo {
        message_id: id.map(str::to_owned),
        timestamp: ts,
        message_id_signed: id.is_some() && id_signed,
    })
}

fn verify_basic(c: &BasicAuthConfig, r: Received<'_>) -> Result<VerifiedInfo, VerifyError> {
    const H: &str = "authorization";
    let value = single_header(r.headers, H, H, 1024)?;
    let (scheme, cred) = value
        .split_once(' ')
        .ok_or(VerifyError::MalformedHeader(H))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(VerifyError::MalformedHeader(H));
    }
    let decoded = B64
        .decode(cred.trim())
        .map_err(|_| VerifyError::MalformedHeader(H))?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(VerifyError::MalformedHeader(H))?;
    let (user, pass) = (
        decoded.get(..colon).unwrap_or_default(),
        decoded.get(colon + 1..).unwrap_or_default(),
    );
    let user_ok = ct_eq_hidden_len(user, c.username.as_bytes());
    any_secret(r.secrets, |k| Some(user_ok & ct_eq_hidden_len(pass, k)))?;
    Ok(VerifiedInfo::default())
}

fn verify_api_key(
    c: &ApiKeyConfig,
    header: &HeaderName,
    r: Received<'_>,
) -> Result<VerifiedInfo, VerifyError> {
    let value = single_header(r.headers, header.as_str(), CONFIGURED_KEY_HEADER, 1024)?;
    let key = match &c.prefix {
        Some(p) => value
            .strip_prefix(p.as_str())
            .ok_or(VerifyError::MalformedHeader(CONFIGURED_KEY_HEADER))?,
        None => value,
    };
    any_secret(r.secrets, |k| Some(ct_eq_hidden_len(key.as_bytes(), k)))?;
    Ok(VerifiedInfo::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        use Segment::{Body, Timestamp};
        let lit = |s: &str| Segment::Literal(s.into());
        for (template, want) in [
            ("body", vec![Body]),
            ("{timestamp}.{body}", vec![Timestamp, lit("."), Body]),
            (
                "v0:{timestamp}:{body}",
                vec![lit("v0:"), Timestamp, lit(":"), Body],
            ),
            ("{ {body}} {", vec![lit("{ "), Body, lit("} {")]),
        ] {
            assert_eq!(parse_template(template).unwrap(), want, "{template}");
        }
        assert!(parse_template("{timestamp}.{payload}").is_err());
        assert!(parse_template("").is_err());
    }
}
