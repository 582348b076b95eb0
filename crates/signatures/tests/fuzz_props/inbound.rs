//! Fuzz properties of the inbound presets (`verify_inbound`, `handshake_response`).
//!
//! Two halves, chosen by the second byte:
//!
//! - **Signed.** A request is signed *independently of the library* (with the `hmac`, `sha1`,
//!   `sha2`, `ed25519-dalek` and `p256` crates directly, following each provider's documented
//!   format) for one of the presets, with configuration, secret, message id, timestamp, URL and
//!   body from the input. Then:
//!   - it verifies, at both edges of the tolerance, and the reported timestamp is the signed one
//!     (header format → parse round trip, including RFC 3339 and RFC 2822 dates) and a signed
//!     message id is the one sent;
//!   - one second outside the tolerance it fails with `TIMESTAMP_OUT_OF_TOLERANCE`, and `now` at
//!     the extremes of `i64` fails without panicking;
//!   - any single-byte change to a signed header (signature, timestamp, signed id) or to the body
//!     (for presets that sign it) makes it fail. Letter-case changes are skipped (hex and scheme
//!     names are case-insensitive by design), and for Twilio a body change that leaves the
//!     decoded form parameters equal is skipped (Twilio signs the decoded parameters).
//! - **Arbitrary.** Every preset, arbitrary headers (the providers' names with fuzzed values),
//!   body, secrets and `now`: no panic; an accepted timestamp is within the tolerance; a
//!   handshake answer is bounded.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use hookwarden_signatures::inbound::{Preset, handshake_response, verify_inbound};
use hookwarden_signatures::{Outbound, Scheme, sign};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sha2::Digest as _;

use super::input::Input;

/// Header names the presets read, for fuzzed headers.
const NAMES: [&str; 28] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-twilio-signature",
    "x-twilio-webhooks-signature-settings",
    "content-type",
    "paddle-signature",
    "x-zm-signature",
    "x-zm-request-timestamp",
    "twitch-eventsub-message-id",
    "twitch-eventsub-message-timestamp",
    "twitch-eventsub-message-signature",
    "x-signature-ed25519",
    "x-signature-timestamp",
    "x-twilio-email-event-webhook-signature",
    "x-twilio-email-event-webhook-timestamp",
    "x-glassix-auth-date",
    "authorization",
    "x-api-key",
];

const PRESETS: usize = 17;

/// A request signed by the oracle, and what must hold for it.
struct Signed {
    preset: Preset,
    secrets: Vec<String>,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The signed timestamp, when the scheme has one and enforces its tolerance.
    ts: Option<i64>,
    tol: i64,
    /// Indices into `headers` of values whose every byte is authenticated.
    signed_headers: Vec<usize>,
    /// A message id that is covered by the signature.
    signed_id: Option<String>,
    twilio_form: bool,
}

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let which = usize::from(input.u8()) % PRESETS;
    if input.u8().is_multiple_of(4) {
        arbitrary(which, &mut input);
    } else if let Some(s) = signed(which, &mut input) {
        check_signed(&s, &mut input);
    }
}

fn preset(v: serde_json::Value) -> Option<Preset> {
    serde_json::from_value(v).ok()
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// A non-empty secret of visible ASCII (what an operator stores).
fn secret(input: &mut Input<'_>) -> String {
    let raw = input.bytes(40);
    let s: String = raw.iter().map(|b| char::from(b'!' + b % 94)).collect();
    if s.is_empty() { "s3cret".into() } else { s }
}

/// Letters and digits only (ids, user names, URL parts).
fn word(input: &mut Input<'_>, max: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let raw = input.bytes(max);
    raw.iter()
        .map(|b| char::from(A[usize::from(*b) % A.len()]))
        .collect()
}

/// Civil date-time of a unix timestamp (1970..=9999), Howard Hinnant's algorithm.
fn civil(ts: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = (days + 4).rem_euclid(7); // 0 = Sunday; 1970-01-01 was a Thursday
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60, weekday)
}

fn rfc3339(ts: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ts);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn rfc2822(ts: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(ts);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} +0000",
        DAYS[wd as usize],
        MONTHS[(mo - 1) as usize]
    )
}

/// A unix timestamp the provider formats accept (non-negative, ≤ 15 digits; ≤ 9999 for dates).
fn timestamp(input: &mut Input<'_>, date: bool) -> i64 {
    let max: i64 = if date {
        253_402_300_799
    } else {
        999_999_999_999_999
    };
    match input.u8() % 4 {
        0 => 1_700_000_000 + i64::from(input.u16()),
        1 => [0, 1, max, max - 1, 4_102_444_800][usize::from(input.u8() % 5)],
        _ => (input.u64() % (max as u64 + 1)) as i64,
    }
}

fn tolerance(input: &mut Input<'_>) -> u32 {
    match input.u8() % 3 {
        0 => 300,
        1 => 86_400,
        _ => input.u32() % 86_401,
    }
}

fn signed(which: usize, input: &mut Input<'_>) -> Option<Signed> {
    let tol = tolerance(input);
    let key = secret(input);
    let kb = key.as_bytes();
    let id = word(input, 32);
    let id = if id.is_empty() {
        "msg_1".to_owned()
    } else {
        id
    };
    let mut s = Signed {
        preset: preset(json!({"type": "none"}))?,
        secrets: vec![key.clone()],
        url: "https://hooks.example/in/t".into(),
        headers: Vec::new(),
        body: Vec::new(),
        ts: None,
        tol: i64::from(tol),
        signed_headers: Vec::new(),
        signed_id: None,
        twilio_form: false,
    };
    let flags = input.u8();
    match which {
        0 => {
            // Standard Webhooks / Svix: HMAC (v1) or ed25519 (v1a).
            let ts = timestamp(input, false);
            let names = if flags & 1 == 1 {
                ["svix-id", "svix-timestamp", "svix-signature"]
            } else {
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            };
            s.body = input.rest().to_vec();
            let ts_s = ts.to_string();
            let content: &[&[u8]] = &[id.as_bytes(), b".", ts_s.as_bytes(), b".", &s.body];
            let sig = if flags & 2 == 2 {
                let sk = ed25519_dalek::SigningKey::from_bytes(&sha2::Sha256::digest(kb).into());
                let pk = format!("whpk_{}", B64.encode(sk.verifying_key().to_bytes()));
                s.preset = preset(
                    json!({"type": "standard-webhooks", "tolerance_secs": tol, "public_keys": [pk]}),
                )?;
                s.secrets = vec![];
                use ed25519_dalek::Signer as _;
                format!("v1a,{}", B64.encode(sk.sign(&content.concat()).to_bytes()))
            } else {
                s.preset = preset(json!({"type": "standard-webhooks", "tolerance_secs": tol}))?;
                s.secrets = vec![format!("whsec_{}", B64.encode(kb))];
                format!("v1,{}", B64.encode(hmac256(kb, content)))
            };
            s.headers = vec![(names[0], id.clone()), (names[1], ts_s), (names[2], sig)];
            s.signed_headers = vec![0, 1, 2];
            s.ts = Some(ts);
            s.signed_id = Some(id);
        }
        1 => {
            s.body = input.rest().to_vec();
            if flags & 1 == 1 {
                s.preset = preset(json!({"type": "github", "allow_sha1_legacy": true}))?;
                let sig = format!("sha1={}", hex::encode(hmac1(kb, &[&s.body])));
                s.headers = vec![("x-hub-signature", sig)];
            } else {
                s.preset = preset(json!({"type": "github"}))?;
                let sig = format!("sha256={}", hex::encode(hmac256(kb, &[&s.body])));
                s.headers = vec![("x-hub-signature-256", sig)];
            }
            s.headers.push(("x-github-delivery", id));
            s.signed_headers = vec![0];
        }
        2 | 6 => {
            // Stripe `t=..,v1=..` / Paddle `ts=..;h1=..`.
            let ts = timestamp(input, false);
            s.body = input.rest().to_vec();
            let ts_s = ts.to_string();
            let (ty, name, value) = if which == 2 {
                let mac = hmac256(kb, &[ts_s.as_bytes(), b".", &s.body]);
                (
                    "stripe",
                    "stripe-signature",
                    format!("t={ts_s},v1={}", hex::encode(mac)),
                )
            } else {
                let mac = hmac256(kb, &[ts_s.as_bytes(), b":", &s.body]);
                (
                    "paddle",
                    "paddle-signature",
                    format!("ts={ts_s};h1={}", hex::encode(mac)),
                )
            };
            s.preset = preset(json!({"type": ty, "tolerance_secs": tol}))?;
            s.headers = vec![(name, value)];
            s.signed_headers = vec![0];
            s.ts = Some(ts);
        }
        3 | 7 => {
            // Slack / Zoom `v0=`.
            let ts = timestamp(input, false);
            s.body = input.rest().to_vec();
            let ts_s = ts.to_string();
            let mac = hmac256(kb, &[b"v0:", ts_s.as_bytes(), b":", &s.body]);
            let (ty, sig_h, ts_h) = if which == 3 {
                ("slack", "x-slack-signature", "x-slack-request-timestamp")
            } else {
                ("zoom", "x-zm-signature", "x-zm-request-timestamp")
            };
            s.preset = preset(json!({"type": ty, "tolerance_secs": tol}))?;
            s.headers = vec![(sig_h, format!("v0={}", hex::encode(mac))), (ts_h, ts_s)];
            s.signed_headers = vec![0, 1];
            s.ts = Some(ts);
        }
        4 => {
            s.body = input.rest().to_vec();
            s.preset = preset(json!({"type": "shopify"}))?;
            s.headers = vec![
                ("x-shopify-hmac-sha256", B64.encode(hmac256(kb, &[&s.body]))),
                ("x-shopify-webhook-id", id),
            ];
            s.signed_headers = vec![0];
        }
        5 => {
            // Twilio: URL + sorted form parameters, or URL with bodySHA256 for other bodies.
            s.preset = preset(json!({"type": "twilio"}))?;
            let host = word(input, 12);
            let host = if host.is_empty() { "h".into() } else { host };
            let path = word(input, 12);
            let q = word(input, 8);
            let port = if flags & 4 == 4 { ":443" } else { "" };
            let mut url = format!("https://{host}.example{port}/{path}?q={q}");
            let sha256 = flags & 8 == 8;
            let mut settings = None;
            if sha256 {
                settings = Some("algorithm=HMAC_SHA256".to_owned());
            }
            let mut content: Vec<u8>;
            if flags & 1 == 1 {
                // Form body.
                let n = input.u8() % 6;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    pairs.push((word(input, 6), word(input, 8)));
                }
                s.body = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
                    .into_bytes();
                s.twilio_form = true;
                content = url.clone().into_bytes();
                for (k, v) in form_params(&s.body) {
                    content.extend_from_slice(k.as_bytes());
                    content.extend_from_slice(v.as_bytes());
                }
                s.headers.push((
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                ));
            } else {
                s.body = input.rest().to_vec();
                url.push_str(&format!(
                    "&bodySHA256={}",
                    hex::encode(sha2::Sha256::digest(&s.body))
                ));
                content = url.clone().into_bytes();
            }
            let sig = if sha256 {
                B64.encode(hmac256(kb, &[&content]))
            } else {
                B64.encode(hmac1(kb, &[&content]))
            };
            // Twilio may have signed the URL with or without the default port.
            s.url = if flags & 16 == 16 {
                url.replace(":443/", "/")
            } else {
                url
            };
            s.headers.insert(0, ("x-twilio-signature", sig));
            s.signed_headers = vec![0];
            if let Some(v) = settings {
                s.headers.push(("x-twilio-webhooks-signature-settings", v));
            }
        }
        8 => {
            // Twitch: id + RFC 3339 timestamp + body.
            let ts = timestamp(input, true);
            s.body = input.rest().to_vec();
            let ts_s = rfc3339(ts);
            let mac = hmac256(kb, &[id.as_bytes(), ts_s.as_bytes(), &s.body]);
            s.preset = preset(json!({"type": "twitch", "tolerance_secs": tol}))?;
            s.headers = vec![
                (
                    "twitch-eventsub-message-signature",
                    format!("sha256={}", hex::encode(mac)),
                ),
                ("twitch-eventsub-message-id", id.clone()),
                ("twitch-eventsub-message-timestamp", ts_s),
            ];
            s.signed_headers = vec![0, 1, 2];
            s.signed_id = Some(id);
            s.ts = Some(ts);
        }
        9 => {
            // Discord: ed25519 over timestamp + body.
            use ed25519_dalek::Signer as _;
            let ts = timestamp(input, false);
            s.body = input.rest().to_vec();
            let sk = ed25519_dalek::SigningKey::from_bytes(&sha2::Sha256::digest(kb).into());
            let pk = hex::encode(sk.verifying_key().to_bytes());
            s.preset = preset(json!({"type": "discord", "public_key": pk, "tolerance_secs": tol}))?;
            s.secrets = vec![];
            let ts_s = ts.to_string();
            let sig = sk.sign(&[ts_s.as_bytes(), &s.body].concat());
            s.headers = vec![
                ("x-signature-ed25519", hex::encode(sig.to_bytes())),
                ("x-signature-timestamp", ts_s),
            ];
            s.signed_headers = vec![0, 1];
            s.ts = Some(ts);
        }
        10 => {
            // SendGrid: ECDSA P-256 / SHA-256 over timestamp + body, DER, base64.
            use p256::ecdsa::signature::Signer as _;
            let ts = timestamp(input, false);
            s.body = input.rest().to_vec();
            let sk = p256::ecdsa::SigningKey::from_slice(&sha2::Sha256::digest(kb)).ok()?;
            // SubjectPublicKeyInfo of an uncompressed P-256 point: fixed prefix, then the point.
            let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200")
                .expect("static");
            der.extend_from_slice(sk.verifying_key().to_encoded_point(false).as_bytes());
            s.preset = preset(json!({
                "type": "sendgrid",
                "public_key": B64.encode(&der),
                "tolerance_secs": tol
            }))?;
            s.secrets = vec![];
            let ts_s = ts.to_string();
            let sig: p256::ecdsa::Signature = sk.sign(&[ts_s.as_bytes(), &s.body].concat());
            s.headers = vec![
                (
                    "x-twilio-email-event-webhook-signature",
                    B64.encode(sig.to_der().as_bytes()),
                ),
                ("x-twilio-email-event-webhook-timestamp", ts_s),
            ];
            s.signed_headers = vec![0, 1];
            s.ts = Some(ts);
        }
        11 => {
            // Glassix: body signature and/or signed date (RFC 3339 or RFC 2822).
            let body_sig = flags & 1 == 1;
            let date_sig = flags & 2 == 2 || !body_sig;
            let ts = timestamp(input, true).min(4_102_444_800);
            s.body = input.rest().to_vec();
            s.preset = preset(json!({
                "type": "glassix",
                "require_body_signature": body_sig,
                "require_date_signature": date_sig,
                "tolerance_secs": tol
            }))?;
            if body_sig {
                let mac = hmac1(kb, &[&s.body]);
                s.headers
                    .push(("x-hub-signature", format!("sha1={}", hex::encode(mac))));
            }
            if date_sig {
                let date = if flags & 4 == 4 {
                    rfc2822(ts)
                } else {
                    rfc3339(ts)
                };
                let mac = hmac1(kb, &[date.as_bytes()]);
                s.headers.push(("x-glassix-auth-date", date));
                s.headers.push((
                    "x-glassix-auth-signature",
                    format!("sha1={}", hex::encode(mac)),
                ));
                s.ts = Some(ts);
            }
            s.signed_headers = (0..s.headers.len()).collect();
        }
        12 => {
            // Another Hookwarden: the outbound schemes (signed by the library's own `sign`).
            let mut schemes: Vec<Scheme> = Scheme::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| flags & (1 << i) != 0)
                .map(|(_, sc)| sc)
                .collect();
            if !schemes.iter().any(Scheme::signs_body) {
                schemes.push(Scheme::GithubSha256);
            }
            let any = flags & 16 == 16;
            let ts = timestamp(input, true);
            s.body = input.rest().to_vec();
            s.preset = preset(json!({
                "type": "hookwarden",
                "schemes": schemes.iter().map(Scheme::as_str).collect::<Vec<_>>(),
                "mode": if any { "any" } else { "all" },
                "tolerance_secs": tol
            }))?;
            s.secrets = vec![format!("whsec_{}", B64.encode(kb))];
            let msg = Outbound {
                msg_id: &id,
                timestamp: ts,
                body: &s.body,
            };
            for sc in &schemes {
                for (n, v) in sign(*sc, &[&s.secrets[0]], &msg).ok()? {
                    s.headers.push((n, v));
                }
            }
            let timed = |sc: &Scheme| matches!(sc, Scheme::StandardWebhooks | Scheme::DateSha1);
            if (!any && schemes.iter().any(timed)) || (any && schemes.iter().all(timed)) {
                s.ts = Some(ts);
            }
            if !any {
                s.signed_headers = (0..s.headers.len()).collect();
                if schemes.contains(&Scheme::StandardWebhooks) {
                    s.signed_id = Some(id);
                }
            }
        }
        13 => {
            // Generic HMAC with a template.
            let algorithm = ["sha1", "sha256", "sha512"][usize::from(flags % 3)];
            let base64 = flags & 4 == 4;
            let prefix = if flags & 8 == 8 { Some("sha=") } else { None };
            let with_ts = flags & 16 == 16;
            let with_id = flags & 32 == 32;
            let rfc = flags & 64 == 64;
            let ts = timestamp(input, rfc);
            s.body = input.rest().to_vec();
            let ts_s = if rfc { rfc3339(ts) } else { ts.to_string() };
            let mut template = String::new();
            let mut parts: Vec<&[u8]> = Vec::new();
            if with_ts {
                template.push_str("{timestamp}:");
                parts.extend([ts_s.as_bytes(), b":"]);
            }
            if with_id {
                template.push_str("{id}.");
                parts.extend([id.as_bytes(), b"."]);
            }
            template.push_str("{body}");
            parts.push(&s.body);
            let mac = match algorithm {
                "sha1" => hmac1(kb, &parts),
                "sha256" => hmac256(kb, &parts),
                _ => hmac512(kb, &parts),
            };
            let enc = if base64 {
                B64.encode(&mac)
            } else {
                hex::encode(&mac)
            };
            let mut cfg = json!({
                "type": "hmac",
                "header": "X-Signature",
                "algorithm": algorithm,
                "encoding": if base64 { "base64" } else { "hex" },
                "signed_content": template,
                "timestamp_format": if rfc { "rfc3339" } else { "unix" },
                "tolerance_secs": tol
            });
            if let Some(p) = prefix {
                cfg["prefix"] = json!(p);
            }
            s.headers
                .push(("x-signature", format!("{}{enc}", prefix.unwrap_or(""))));
            if with_ts {
                cfg["timestamp_header"] = json!("X-Timestamp");
                s.headers.push(("x-timestamp", ts_s));
                s.ts = Some(ts);
            }
            if with_id {
                cfg["id_header"] = json!("X-Id");
                s.headers.push(("x-id", id.clone()));
                s.signed_id = Some(id);
            }
            s.preset = preset(cfg)?;
            s.signed_headers = (0..s.headers.len()).collect();
        }
        14 => {
            let user = word(input, 16);
            let user = if user.is_empty() {
                "u".to_owned()
            } else {
                user
            };
            s.preset = preset(json!({"type": "basic_auth", "username": user}))?;
            let token = B64.encode(format!("{user}:{key}"));
            s.headers = vec![("authorization", format!("Basic {token}"))];
            s.signed_headers = vec![0];
            s.body = input.rest().to_vec();
        }
        15 => {
            let prefix = if flags & 1 == 1 {
                Some("Bearer ")
            } else {
                None
            };
            let mut cfg = json!({"type": "api_key", "header": "X-Api-Key"});
            if let Some(p) = prefix {
                cfg["prefix"] = json!(p);
            }
            s.preset = preset(cfg)?;
            s.headers = vec![("x-api-key", format!("{}{key}", prefix.unwrap_or("")))];
            // A trailing space of the key is trimmed like any header value's; the secret has
            // none (visible ASCII only).
            s.signed_headers = vec![0];
            s.body = input.rest().to_vec();
        }
        _ => {
            s.body = input.rest().to_vec();
        }
    }
    Some(s)
}

fn header_map(headers: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        let v = HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{n}: {v:?}: {e}"));
        map.append(HeaderName::from_static(n), v);
    }
    map
}

fn check_signed(s: &Signed, input: &mut Input<'_>) {
    let secrets: Vec<&str> = s.secrets.iter().map(String::as_str).collect();
    let map = header_map(&s.headers);
    let ty = s.preset.type_name();
    let at = s.ts.unwrap_or(1_700_000_000);
    let info = verify_inbound(&s.preset, &secrets, &s.url, &map, &s.body, at)
        .unwrap_or_else(|e| panic!("{ty}: oracle-signed request refused: {e} ({})", e.reason()));
    if let Some(ts) = s.ts {
        assert_eq!(info.timestamp, Some(ts), "{ty}: reported timestamp");
    }
    if let Some(id) = &s.signed_id {
        assert_eq!(info.message_id.as_deref(), Some(id.as_str()), "{ty}: id");
        assert!(info.message_id_signed, "{ty}: id reported unsigned");
    }
    if let Some(m) = &info.message_id {
        assert!(!m.is_empty() && m.len() <= 256, "{ty}: message id {m:?}");
    }

    // The tolerance, both edges and one second past each.
    if let Some(ts) = s.ts {
        for (now, inside) in [
            (ts + s.tol, true),
            (ts - s.tol, true),
            (ts + s.tol + 1, false),
            (ts - s.tol - 1, false),
        ] {
            let r = verify_inbound(&s.preset, &secrets, &s.url, &map, &s.body, now);
            if inside {
                r.unwrap_or_else(|e| panic!("{ty}: refused at the edge now={now}: {e}"));
            } else {
                let e = r.expect_err("outside the tolerance");
                assert_eq!(e.code(), "TIMESTAMP_OUT_OF_TOLERANCE", "{ty}: {e}");
            }
        }
        for now in [i64::MIN, i64::MAX] {
            assert!(verify_inbound(&s.preset, &secrets, &s.url, &map, &s.body, now).is_err());
        }
    }

    // Single-byte changes.
    let at_byte = usize::from(input.u16());
    let xor = input.u8() | 1;
    if s.preset.signs_body() && !s.body.is_empty() {
        let mut changed = s.body.clone();
        let i = at_byte % changed.len();
        changed[i] ^= xor;
        let equivalent = s.twilio_form && form_params(&changed) == form_params(&s.body);
        let r = verify_inbound(&s.preset, &secrets, &s.url, &map, &changed, at);
        assert!(
            equivalent || r.is_err(),
            "{ty}: body byte {i} changed, still verifies"
        );
    }
    for &h in &s.signed_headers {
        let (name, value) = &s.headers[h];
        let mut b = value.as_bytes().to_vec();
        if b.is_empty() {
            continue;
        }
        let i = at_byte % b.len();
        let old = b[i];
        b[i] ^= xor;
        if old.eq_ignore_ascii_case(&b[i]) {
            continue;
        }
        let Ok(v) = HeaderValue::from_bytes(&b) else {
            continue;
        };
        let mut m = map.clone();
        m.insert(HeaderName::from_static(name), v);
        let r = verify_inbound(&s.preset, &secrets, &s.url, &m, &s.body, at);
        assert!(
            r.is_err(),
            "{ty}: {name} {value:?} changed at byte {i} to {:?}, still verifies",
            String::from_utf8_lossy(&b)
        );
    }
}

/// Twilio's parameters: `&`-separated `k=v`, `+` is a space, `%XX` decoded, sorted,
/// duplicates removed (as Twilio's own libraries do).
fn form_params(body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            (form_decode(k), form_decode(v))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn form_decode(s: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                let h = (s[i + 1] as char).to_digit(16).unwrap_or(0);
                let l = (s[i + 2] as char).to_digit(16).unwrap_or(0);
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn default_preset(which: usize, input: &mut Input<'_>) -> Option<Preset> {
    let tol = tolerance(input);
    let v = match which {
        0 => json!({"type": "standard-webhooks", "tolerance_secs": tol}),
        1 => json!({"type": "github", "allow_sha1_legacy": true}),
        2 => json!({"type": "stripe", "tolerance_secs": tol}),
        3 => json!({"type": "slack", "tolerance_secs": tol}),
        4 => json!({"type": "shopify"}),
        5 => json!({"type": "twilio"}),
        6 => json!({"type": "paddle", "tolerance_secs": tol}),
        7 => json!({"type": "zoom", "tolerance_secs": tol}),
        8 => json!({"type": "twitch", "tolerance_secs": tol}),
        9 => {
            json!({"type": "discord", "public_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"})
        }
        10 => {
            json!({"type": "sendgrid", "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="})
        }
        11 => json!({"type": "glassix", "require_date_signature": false}),
        12 => {
            json!({"type": "hookwarden", "schemes": ["standard-webhooks", "date-sha1", "hub-sha1"], "mode": "any"})
        }
        13 => {
            json!({"type": "hmac", "header": "x-signature", "algorithm": "sha256", "timestamp_header": "x-slack-request-timestamp", "signed_content": "{timestamp}{ {body}}", "id_header": "webhook-id"})
        }
        14 => json!({"type": "basic_auth", "username": "u"}),
        15 => json!({"type": "api_key", "header": "authorization", "prefix": "Bearer "}),
        _ => json!({"type": "none"}),
    };
    preset(v)
}

fn arbitrary(which: usize, input: &mut Input<'_>) {
    let Some(p) = default_preset(which, input) else {
        return;
    };
    let tol = serde_json::to_value(p.config())
        .ok()
        .and_then(|v| v.get("tolerance_secs").and_then(|t| t.as_i64()))
        .unwrap_or(0);
    let nsecrets = input.u8() % 3;
    let secrets: Vec<String> = (0..nsecrets).map(|_| input.str(40)).collect();
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let now = match input.u8() % 3 {
        0 => input.i64(),
        1 => 1_700_000_000,
        _ => [i64::MIN, i64::MAX, 0][usize::from(input.u8() % 3)],
    };
    let url = input.str(80);
    let mut map = HeaderMap::new();
    for _ in 0..input.u8() % 10 {
        let name = NAMES[usize::from(input.u8()) % NAMES.len()];
        let value = input.bytes(150);
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    let body = input.rest();
    match verify_inbound(&p, &secret_refs, &url, &map, body, now) {
        Ok(info) => {
            if let Some(ts) = info.timestamp {
                assert!(
                    now.abs_diff(ts) <= tol.unsigned_abs(),
                    "{}: accepted timestamp {ts}, now {now}, tolerance {tol}",
                    p.type_name()
                );
            }
            if let Some(m) = &info.message_id {
                assert!(m.len() <= 256);
            }
        }
        Err(e) => {
            assert!(!e.code().is_empty() && !e.reason().is_empty());
        }
    }
    if let Some(r) = handshake_response(&p, &secret_refs, body, &map) {
        assert!(
            r.body.len() <= 4096,
            "handshake answer of {} bytes",
            r.body.len()
        );
    }
}
