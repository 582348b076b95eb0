//! Provider handshakes: requests that must be answered with a computed body rather
//! than accepted as events.

use http::HeaderMap;
use serde::Deserialize;

use super::{Preset, PresetConfig};
use crate::outbound::prefixed_hex;
use crate::util::{ct_eq, hmac_sha256, parse_prefixed_hex};

/// Longest challenge / token echoed back.
const MAX_CHALLENGE_LEN: usize = 1024;

/// The response to send instead of accepting the request as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// `Content-Type` of the response (`text/plain; charset=utf-8` or
    /// `application/json`).
    pub content_type: &'static str,
    /// The response body.
    pub body: String,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Detect a provider handshake in a request **that has already passed
/// [`verify_inbound`](super::verify_inbound)**, and build the answer (status 200):
///
/// * Slack `{"type": "url_verification", "challenge": C}` → `C` as text/plain.
/// * Zoom `{"event": "endpoint.url_validation", "payload": {"plainToken": P}}` →
///   `{"plainToken": P, "encryptedToken": hex(HMAC-SHA256(secret, P))}`, with the secret
///   that signed this request (rotation-safe).
/// * Twitch `Twitch-Eventsub-Message-Type: webhook_callback_verification` with
///   `{"challenge": C}` → `C` as text/plain.
/// * Discord PING `{"type": 1}` → `{"type":1}` (PONG).
///
/// Returns `None` for ordinary events (and for other presets).
pub fn handshake_response(
    preset: &Preset,
    secrets: &[&str],
    body: &[u8],
    headers: &HeaderMap,
) -> Option<HandshakeResponse> {
    match preset.config() {
        PresetConfig::Slack(_) => {
            #[derive(Deserialize)]
            struct Slack {
                #[serde(rename = "type")]
                kind: Option<String>,
                challenge: Option<String>,
            }
            let b: Slack = serde_json::from_slice(body).ok()?;
            if b.kind.as_deref() != Some("url_verification") {
                return None;
            }
            text(b.challenge?)
        }
        PresetConfig::Twitch(_) => {
            let kind = headers.get("twitch-eventsub-message-type")?.to_str().ok()?;
            if kind.trim() != "webhook_callback_verification" {
                return None;
            }
            #[derive(Deserialize)]
            struct Twitch {
                challenge: Option<String>,
            }
            let b: Twitch = serde_json::from_slice(body).ok()?;
            text(b.challenge?)
        }
        PresetConfig::Zoom(_) => {
            #[derive(Deserialize)]
            struct Payload {
                #[serde(rename = "plainToken")]
                plain_token: Option<String>,
            }
            #[derive(Deserialize)]
            struct Zoom {
                event: Option<String>,
                payload: Option<Payload>,
            }
            let b: Zoom = serde_json::from_slice(body).ok()?;
            if b.event.as_deref() != Some("endpoint.url_validation") {
                return None;
            }
            let plain = b.payload?.plain_token?;
            if plain.is_empty() || plain.len() > MAX_CHALLENGE_LEN {
                return None;
            }
            let secret = zoom_signing_secret(secrets, body, headers)?;
            let mac = hmac_sha256(secret.as_bytes(), &[plain.as_bytes()])?;
            let encrypted = prefixed_hex("", &mac);
            let body = serde_json::json!({"plainToken": plain, "encryptedToken": encrypted});
            Some(HandshakeResponse {
                content_type: JSON,
                body: body.to_string(),
            })
        }
        PresetConfig::Discord(_) => {
            #[derive(Deserialize)]
            struct Discord {
                #[serde(rename = "type")]
                kind: Option<i64>,
            }
            let b: Discord = serde_json::from_slice(body).ok()?;
            (b.kind == Some(1)).then(|| HandshakeResponse {
                content_type: JSON,
                body: r#"{"type":1}"#.to_owned(),
            })
        }
        _ => None,
    }
}

fn text(challenge: String) -> Option<HandshakeResponse> {
    if challenge.is_empty() || challenge.len() > MAX_CHALLENGE_LEN {
        return None;
    }
    Some(HandshakeResponse {
        content_type: TEXT,
        body: challenge,
    })
}

/// The secret whose `x-zm-signature` matches this request (the one Zoom used).
fn zoom_signing_secret<'s>(
    secrets: &[&'s str],
    body: &[u8],
    headers: &HeaderMap,
) -> Option<&'s str> {
    let ts = headers.get("x-zm-request-timestamp")?.to_str().ok()?.trim();
    let sig =
        parse_prefixed_hex::<32>(headers.get("x-zm-signature")?.to_str().ok()?.trim(), "v0=")?;
    secrets.iter().copied().find(|s| {
        hmac_sha256(s.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body])
            .is_some_and(|mac| ct_eq(&mac, &sig))
    })
}
