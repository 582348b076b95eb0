//! Unit tests for the inbound presets.
//!
//! Known answers were computed once outside this crate with Python's `hmac`/`hashlib`
//! (e.g. `hmac.new(S.encode(), b"1795428000." + BODY, hashlib.sha256).hexdigest()`) and,
//! for Twilio, with `twilio.request_validator.RequestValidator(S).compute_signature`.
//! Vendor-published examples (Slack, SendGrid, GitHub) are used verbatim.

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::*;
use crate::VerifyError;

const S: &str = "whsec_test_secret_for_providers";
const OTHER: &str = "some_other_secret";
const BODY: &[u8] = "{\"id\":\"evt_1\",\"object\":\"event\",\"note\":\"caf\u{e9}\"}".as_bytes();
const TS: i64 = 1_795_428_000;
const URL: &str = "https://hooks.example.com/in/tok";

fn preset(v: serde_json::Value) -> Preset {
    serde_json::from_value(v).unwrap()
}

fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn code(r: Result<VerifiedInfo, InboundError>) -> &'static str {
    match r {
        Ok(_) => "OK",
        Err(e) => e.code(),
    }
}

/// Runs the standard battery: accepted as is, with rotation; rejected with a wrong
/// secret, a tampered body, and without its headers.
fn battery(p: &Preset, headers: &HeaderMap, now: i64) -> VerifiedInfo {
    let info = verify_inbound(p, &[S], URL, headers, BODY, now).unwrap();
    assert_eq!(
        verify_inbound(p, &[OTHER, S], URL, headers, BODY, now).unwrap(),
        info
    );
    assert_eq!(
        code(verify_inbound(p, &[OTHER], URL, headers, BODY, now)),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        code(verify_inbound(
            p,
            &[S],
            URL,
            headers,
            b"{\"id\":\"evt_2\"}",
            now
        )),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        code(verify_inbound(p, &[S], URL, &HeaderMap::new(), BODY, now)),
        "SIGNATURE_INVALID"
    );
    info
}

#[test]
fn config_shapes_and_defaults() {
    let p = preset(json!({"type": "stripe"}));
    assert_eq!(
        p.config(),
        &PresetConfig::Stripe(StripeConfig {
            tolerance_secs: 300
        })
    );
    let p = preset(json!({"type": "twitch"}));
    assert_eq!(
        p.config(),
        &PresetConfig::Twitch(TwitchConfig {
            tolerance_secs: 600
        })
    );
    let p = preset(json!({"type": "glassix"}));
    assert_eq!(
        p.config(),
        &PresetConfig::Glassix(GlassixConfig {
            require_body_signature: true,
            require_date_signature: true,
            tolerance_secs: 300
        })
    );
    // Aliases.
    assert_eq!(
        preset(json!({"type": "svix"})).type_name(),
        "standard-webhooks"
    );
    assert_eq!(
        preset(json!({"type": "basic-auth", "username": "u"})).type_name(),
        "basic_auth"
    );
    // Serialization round-trips through the same JSON shape.
    for v in all_examples() {
        let p = preset(v.clone());
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(preset(back.clone()), p, "{v}");
        assert_eq!(back["type"], v["type"]);
    }
}

/// One example of every preset type (`docs/inbound.md#verification-presets` shows these).
fn all_examples() -> Vec<serde_json::Value> {
    vec![
        json!({"type": "standard-webhooks", "tolerance_secs": 300}),
        json!({"type": "github", "allow_sha1_legacy": false}),
        json!({"type": "stripe", "tolerance_secs": 300}),
        json!({"type": "slack", "tolerance_secs": 300}),
        json!({"type": "shopify"}),
        json!({"type": "twilio"}),
        json!({"type": "paddle", "tolerance_secs": 300}),
        json!({"type": "zoom", "tolerance_secs": 300}),
        json!({"type": "twitch", "tolerance_secs": 600}),
        json!({"type": "discord", "public_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}),
        json!({"type": "sendgrid", "public_key": SENDGRID_PUBLIC_KEY}),
        json!({"type": "glassix", "require_body_signature": true, "require_date_signature": true}),
        json!({"type": "hookwarden", "schemes": ["standard-webhooks"], "mode": "all"}),
        json!({"type": "hmac", "header": "X-Signature", "algorithm": "sha256", "encoding": "hex",
               "prefix": "sha256=", "timestamp_header": "X-Timestamp",
               "signed_content": "{timestamp}.{body}", "tolerance_secs": 300}),
        json!({"type": "basic_auth", "username": "hooks"}),
        json!({"type": "api_key", "header": "Authorization", "prefix": "Bearer "}),
        json!({"type": "none"}),
    ]
}

#[test]
fn config_errors_are_never_silently_accepted() {
    let bad = [
        json!({"type": "stripee"}),
        json!({"type": "Stripe"}),
        json!({}),
        json!({"type": "stripe", "tolerence_secs": 10}),
        json!({"type": "stripe", "tolerance_secs": -1}),
        json!({"type": "stripe", "tolerance_secs": 86_401}),
        json!({"type": "discord"}),
        json!({"type": "discord", "public_key": "abcd"}),
        json!({"type": "discord", "public_key": "zz5a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}),
        json!({"type": "sendgrid"}),
        json!({"type": "sendgrid", "public_key": "bm90IGEga2V5"}),
        json!({"type": "glassix", "require_body_signature": false, "require_date_signature": false}),
        json!({"type": "hookwarden"}),
        json!({"type": "hookwarden", "schemes": []}),
        json!({"type": "hookwarden", "schemes": ["date-sha1"]}),
        json!({"type": "hookwarden", "schemes": ["github-sha256", "github-sha256"]}),
        json!({"type": "hookwarden", "schemes": ["github"]}),
        json!({"type": "hookwarden", "schemes": ["hub-sha1"], "mode": "some"}),
        json!({"type": "hmac", "algorithm": "sha256"}),
        json!({"type": "hmac", "header": "X-Sig"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "md5"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "encoding": "base32"}),
        json!({"type": "hmac", "header": "bad header", "algorithm": "sha256"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "signed_content": "{timestamp}"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "signed_content": "{body}{body}"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "signed_content": "{timestamp}.{body}"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "signed_content": "{ts}.{body}", "timestamp_header": "X-Ts"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "timestamp_header": "X-Ts"}),
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256", "prefix": ""}),
        json!({"type": "basic_auth"}),
        json!({"type": "basic_auth", "username": "a:b"}),
        json!({"type": "basic_auth", "username": ""}),
        json!({"type": "api_key"}),
        json!({"type": "api_key", "header": "X Key"}),
        json!({"type": "none", "secret": "x"}),
        json!({"type": "standard-webhooks", "public_keys": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
    ];
    for v in bad {
        assert!(
            serde_json::from_value::<Preset>(v.clone()).is_err(),
            "accepted {v}"
        );
    }
    // The message of a semantic error names the preset and never a secret.
    let e = serde_json::from_value::<Preset>(json!({"type": "basic_auth", "username": "a:b"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("basic_auth"), "{e}");
    // PresetConfig alone accepts semantically wrong values; Preset refuses them.
    let cfg: PresetConfig =
        serde_json::from_value(json!({"type": "discord", "public_key": "abcd"})).unwrap();
    let err = Preset::try_from(cfg).unwrap_err();
    assert_eq!(err.preset, "discord");
}

#[test]
fn secrets_are_required_and_validated() {
    let p = preset(json!({"type": "github"}));
    let h = hm(&[("x-hub-signature-256", "sha256=00")]);
    let e = verify_inbound(&p, &[], URL, &h, BODY, TS).unwrap_err();
    assert_eq!(e.code(), "CONFIG_INVALID");
    assert!(e.is_config_error());
    assert_eq!(
        code(verify_inbound(&p, &[""], URL, &h, BODY, TS)),
        "CONFIG_INVALID"
    );
    let sw = preset(json!({"type": "standard-webhooks"}));
    assert_eq!(
        code(verify_inbound(&sw, &["whsec_!!"], URL, &h, BODY, TS)),
        "CONFIG_INVALID"
    );
    assert!(
        sw.validate_secrets(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
            .is_ok()
    );
    assert!(sw.validate_secrets(&["not base64!"]).is_err());
    // Presets with public keys need no secrets.
    assert!(
        !preset(json!({"type": "sendgrid", "public_key": SENDGRID_PUBLIC_KEY})).requires_secrets()
    );
    assert!(
        preset(json!({"type": "none"}))
            .validate_secrets(&[])
            .is_ok()
    );
}

#[test]
fn error_codes() {
    assert_eq!(
        InboundError::from(VerifyError::MissingHeader("x")).code(),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        InboundError::from(VerifyError::MissingHeader("x")).reason(),
        "SIGNATURE_MISSING"
    );
    assert_eq!(
        InboundError::from(VerifyError::MalformedHeader("x")).code(),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        InboundError::from(VerifyError::BodyHashMismatch).code(),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        InboundError::from(VerifyError::TimestampOutOfTolerance {
            timestamp: 0,
            now: 1000,
            tolerance_secs: 300
        })
        .code(),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(
        InboundError::from(VerifyError::InvalidSecret).code(),
        "CONFIG_INVALID"
    );
}

#[test]
fn github() {
    let p = preset(json!({"type": "github"}));
    let sig256 = "sha256=9547e7bd45e7d4614147177658f8cb1cfd1de4a75c721b8bf37c8a9c74c362e2";
    let sig1 = "sha1=724eaba43f166cf831baf6edf61123bb61422e6c";
    let h = hm(&[
        ("X-Hub-Signature-256", sig256),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let info = battery(&p, &h, TS);
    assert_eq!(
        info.message_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert!(!info.message_id_signed);
    assert_eq!(info.timestamp, None);
    // SHA-1 only when allowed.
    let h1 = hm(&[("X-Hub-Signature", sig1)]);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h1, BODY, TS)),
        "SIGNATURE_INVALID"
    );
    let legacy = preset(json!({"type": "github", "allow_sha1_legacy": true}));
    battery(&legacy, &h1, TS);
    // With both headers the sha256 one decides.
    let both = hm(&[
        ("X-Hub-Signature-256", "sha256=00"),
        ("X-Hub-Signature", sig1),
    ]);
    assert_eq!(
        code(verify_inbound(&legacy, &[S], URL, &both, BODY, TS)),
        "SIGNATURE_INVALID"
    );
}

#[test]
fn stripe() {
    let p = preset(json!({"type": "stripe"}));
    let v1 = "52a16be2c8b679e73eb713b153df12acc0666bbfb5a720b0747f2ddac46eae60";
    let header = format!("t=1795428000,v1={},v1={v1},v0=abc", "0".repeat(64));
    let h = hm(&[("Stripe-Signature", &header)]);
    let info = battery(&p, &h, TS);
    assert_eq!(info.message_id.as_deref(), Some("evt_1"));
    assert!(info.message_id_signed);
    assert_eq!(info.timestamp, Some(TS));
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 300)),
        "OK"
    );
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS - 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    let many = format!("t=1795428000,{}", vec![format!("v1={v1}"); 17].join(","));
    for bad in [
        format!("v1={v1}"),
        "t=1795428000".to_owned(),
        format!("t=abc,v1={v1}"),
        format!("t=1795428000,t=1795428000,v1={v1}"),
        format!("t=1795428000;v1={v1}"),
        format!("T=1795428000,V1={v1}"),
        many,
    ] {
        let h = hm(&[("stripe-signature", &bad)]);
        let e = verify_inbound(&p, &[S], URL, &h, BODY, TS).unwrap_err();
        assert_eq!(e.code(), "SIGNATURE_INVALID", "{bad}");
    }
}

#[test]
fn slack_documented_example() {
    // From Slack's "Verifying requests from Slack" documentation.
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let h = hm(&[
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let p = preset(json!({"type": "slack"}));
    let info = verify_inbound(&p, &[secret], URL, &h, body, 1_531_420_618).unwrap();
    assert_eq!(info.timestamp, Some(1_531_420_618));
    assert_eq!(
        code(verify_inbound(
            &p,
            &[secret],
            URL,
            &h,
            body,
            1_531_420_618 + 301
        )),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(
        code(verify_inbound(
            &p,
            &[secret],
            URL,
            &h,
            &body[1..],
            1_531_420_618
        )),
        "SIGNATURE_INVALID"
    );
}

#[test]
fn shopify() {
    let p = preset(json!({"type": "shopify"}));
    let h = hm(&[
        (
            "X-Shopify-Hmac-Sha256",
            "lUfnvUXn1GFBRxd2WPjLHP0d5KdcchuL83yKnHTDYuI=",
        ),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
    ]);
    let info = battery(&p, &h, TS);
    assert_eq!(
        info.message_id.as_deref(),
        Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    );
    assert!(!info.message_id_signed);
    let h = hm(&[(
        "X-Shopify-Hmac-Sha256",
        "lUfnvUXn1GFBRxd2WPjLHP0d5KdcchuL83yKnHTDYuI",
    )]);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS)),
        "SIGNATURE_INVALID"
    );
}

#[test]
fn paddle() {
    let p = preset(json!({"type": "paddle"}));
    let h1 = "e6658e5e851b3d94e4c645157f861087507643c338e83d0fbf8dc87eb9538c6f";
    let h = hm(&[("Paddle-Signature", &format!("ts=1795428000;h1={h1}"))]);
    let info = battery(&p, &h, TS);
    assert_eq!(info.timestamp, Some(TS));
    let rotated = hm(&[(
        "Paddle-Signature",
        &format!("ts=1795428000;h1={};h1={h1}", "1".repeat(64)),
    )]);
    battery(&p, &rotated, TS);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    let body = br#"{"event_id":"evt_01","notification_id":"ntf_01"}"#;
    let mac = crate::util::hmac_sha256(S.as_bytes(), &[b"1795428000:", body]).unwrap();
    let h = hm(&[(
        "Paddle-Signature",
        &format!("ts=1795428000;h1={}", hex::encode(mac)),
    )]);
    let info = verify_inbound(&p, &[S], URL, &h, body, TS).unwrap();
    assert_eq!(info.message_id.as_deref(), Some("ntf_01"));
}

#[test]
fn zoom_and_handshake() {
    let p = preset(json!({"type": "zoom"}));
    let sig = "v0=fd24542d3c604b7addf9adf906f2486f66949aa93fd7673e9e67709341aff296";
    let h = hm(&[
        ("x-zm-request-timestamp", "1795428000"),
        ("x-zm-signature", sig),
    ]);
    battery(&p, &h, TS);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS - 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(handshake_response(&p, &[S], BODY, &h), None);

    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let mac = crate::util::hmac_sha256(S.as_bytes(), &[b"v0:1795428000:", body]).unwrap();
    let h = hm(&[
        ("x-zm-request-timestamp", "1795428000"),
        ("x-zm-signature", &format!("v0={}", hex::encode(mac))),
    ]);
    verify_inbound(&p, &[OTHER, S], URL, &h, body, TS).unwrap();
    // The answer uses the secret that signed the request, even when it is not first.
    let r = handshake_response(&p, &[OTHER, S], body, &h).unwrap();
    assert_eq!(r.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v,
        json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw",
               "encryptedToken": "ba08eb283d8ba204076ee998ca5e322c15feee38be9fe520b0c99785e4e58965"})
    );
}

#[test]
fn twitch_and_handshake() {
    let p = preset(json!({"type": "twitch"}));
    let h = hm(&[
        ("Twitch-Eventsub-Message-Id", "e1"),
        (
            "Twitch-Eventsub-Message-Timestamp",
            "2026-11-23T10:00:00.123456789Z",
        ),
        (
            "Twitch-Eventsub-Message-Signature",
            "sha256=281d10406ff32cb5f71287cb0b43bcfec764dd723a3aee0bb9c380040eccb339",
        ),
        ("Twitch-Eventsub-Message-Type", "notification"),
    ]);
    let info = battery(&p, &h, TS);
    assert_eq!(info.message_id.as_deref(), Some("e1"));
    assert!(info.message_id_signed);
    assert_eq!(info.timestamp, Some(TS));
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 600)),
        "OK"
    );
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 601)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(handshake_response(&p, &[S], BODY, &h), None);

    let body =
        br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387"}}"#;
    let mut h = h.clone();
    h.insert(
        "twitch-eventsub-message-type",
        HeaderValue::from_static("webhook_callback_verification"),
    );
    let r = handshake_response(&p, &[S], body, &h).unwrap();
    assert_eq!(r.body, "pogchamp-kappa-360noscope-vohiyo");
    assert!(r.content_type.starts_with("text/plain"));
}

#[test]
fn slack_handshake() {
    let p = preset(json!({"type": "slack"}));
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = handshake_response(&p, &[S], body, &HeaderMap::new()).unwrap();
    assert_eq!(
        r.body,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(
        handshake_response(&p, &[S], br#"{"type":"event_callback"}"#, &HeaderMap::new()),
        None
    );
    assert_eq!(
        handshake_response(&p, &[S], b"not json", &HeaderMap::new()),
        None
    );
    let huge = format!(
        r#"{{"type":"url_verification","challenge":"{}"}}"#,
        "a".repeat(2000)
    );
    assert_eq!(
        handshake_response(&p, &[S], huge.as_bytes(), &HeaderMap::new()),
        None
    );
    // Other presets never answer handshakes.
    let gh = preset(json!({"type": "github"}));
    assert_eq!(handshake_response(&gh, &[S], body, &HeaderMap::new()), None);
}

#[test]
fn twilio_form_and_json() {
    let p = preset(json!({"type": "twilio"}));
    let url = "https://hooks.example.com/in/tok?x=1";
    let form = b"To=%2B15550001&From=%2B15550002&Body=h%C3%A9llo+%26+more";
    // Same parameters in another order: the signature sorts them.
    let form_reordered = b"Body=h%C3%A9llo+%26+more&From=%2B15550002&To=%2B15550001";
    let ct = (
        "Content-Type",
        "application/x-www-form-urlencoded; charset=utf-8",
    );
    for sig in [
        "mik/QGzeXZ8/H4TvMqAygikHXgs=",
        "HVTLfqWPFjApR4P+V3XZHphrNAc=",
    ] {
        let h = hm(&[
            ct,
            ("X-Twilio-Signature", sig),
            ("I-Twilio-Idempotency-Token", "tok-1"),
        ]);
        let info = verify_inbound(&p, &[S], url, &h, form, TS).unwrap();
        assert_eq!(info.message_id.as_deref(), Some("tok-1"));
        verify_inbound(&p, &[OTHER, S], url, &h, form_reordered, TS).unwrap();
        assert_eq!(
            code(verify_inbound(&p, &[OTHER], url, &h, form, TS)),
            "SIGNATURE_INVALID"
        );
        assert_eq!(
            code(verify_inbound(
                &p,
                &[S],
                url,
                &h,
                b"To=%2B15550001&From=%2B15550002&Body=x",
                TS
            )),
            "SIGNATURE_INVALID"
        );
        assert_eq!(
            code(verify_inbound(
                &p,
                &[S],
                "https://hooks.example.com/in/tok?x=2",
                &h,
                form,
                TS
            )),
            "SIGNATURE_INVALID"
        );
    }
    // JSON body: signature over the URL, whose bodySHA256 must match the body.
    let jurl = "https://hooks.example.com/in/tok?bodySHA256=6c947075948c818533487633a0701ac9a79fffb3593d5ab502fd49b5023f9f53";
    let h = hm(&[
        ("Content-Type", "application/json"),
        ("X-Twilio-Signature", "RbnDtPjtY5ardb+k7rZmA3NGzXM="),
    ]);
    verify_inbound(&p, &[S], jurl, &h, BODY, TS).unwrap();
    let e = verify_inbound(&p, &[S], jurl, &h, b"{}", TS).unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        ("SIGNATURE_INVALID", "BODY_HASH_MISMATCH")
    );
    // HMAC-SHA256 when the settings header says so.
    let h256 = hm(&[
        (
            "X-Twilio-Signature",
            "M1oCAfs/fMBBTO4Rvy7QmfJzsIZBjRIdetpFIYodRao=",
        ),
        (
            "X-Twilio-Webhooks-Signature-Settings",
            "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        ),
    ]);
    verify_inbound(&p, &[S], jurl, &h256, BODY, TS).unwrap();
    let hbad = hm(&[
        (
            "X-Twilio-Signature",
            "M1oCAfs/fMBBTO4Rvy7QmfJzsIZBjRIdetpFIYodRao=",
        ),
        ("X-Twilio-Webhooks-Signature-Settings", "algorithm=HMAC_MD5"),
    ]);
    assert_eq!(
        code(verify_inbound(&p, &[S], jurl, &hbad, BODY, TS)),
        "SIGNATURE_INVALID"
    );
    // A JSON body without bodySHA256 would be unsigned: refused even with a valid URL signature.
    let mac = crate::util::hmac_sha1(S.as_bytes(), &[URL.as_bytes()]).unwrap();
    let sig = crate::util::B64.encode(mac);
    let h = hm(&[
        ("Content-Type", "application/json"),
        ("X-Twilio-Signature", &sig),
    ]);
    let e = verify_inbound(&p, &[S], URL, &h, BODY, TS).unwrap_err();
    assert_eq!(e.reason(), "BODY_NOT_SIGNED");
    verify_inbound(&p, &[S], URL, &h, b"", TS).unwrap();
    // Not a URL.
    assert_eq!(
        code(verify_inbound(&p, &[S], "/in/tok", &h, b"", TS)),
        "SIGNATURE_INVALID"
    );
}

/// The signed-event-webhook example from SendGrid's own library tests
/// (sendgrid-python `test/unit/test_eventwebhook.py`).
const SENDGRID_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
const SENDGRID_SIGNATURE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
const SENDGRID_PAYLOAD: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

#[test]
fn sendgrid_vendor_example() {
    let p = preset(json!({"type": "sendgrid", "public_key": SENDGRID_PUBLIC_KEY}));
    let h = hm(&[
        ("X-Twilio-Email-Event-Webhook-Signature", SENDGRID_SIGNATURE),
        ("X-Twilio-Email-Event-Webhook-Timestamp", "1600112502"),
    ]);
    let now = 1_600_112_502;
    let info = verify_inbound(&p, &[], URL, &h, SENDGRID_PAYLOAD.as_bytes(), now).unwrap();
    assert_eq!(info.timestamp, Some(now));
    // Their negative cases: bad payload, bad signature, bad timestamp, other key.
    assert_eq!(
        code(verify_inbound(&p, &[], URL, &h, b"payload", now)),
        "SIGNATURE_INVALID"
    );
    let bad_sig = hm(&[
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=",
        ),
        ("X-Twilio-Email-Event-Webhook-Timestamp", "1600112502"),
    ]);
    assert_eq!(
        code(verify_inbound(
            &p,
            &[],
            URL,
            &bad_sig,
            SENDGRID_PAYLOAD.as_bytes(),
            now
        )),
        "SIGNATURE_INVALID"
    );
    let bad_ts = hm(&[
        ("X-Twilio-Email-Event-Webhook-Signature", SENDGRID_SIGNATURE),
        ("X-Twilio-Email-Event-Webhook-Timestamp", "timestamp"),
    ]);
    assert_eq!(
        code(verify_inbound(
            &p,
            &[],
            URL,
            &bad_ts,
            SENDGRID_PAYLOAD.as_bytes(),
            now
        )),
        "SIGNATURE_INVALID"
    );
    let other = preset(
        json!({"type": "sendgrid", "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="}),
    );
    assert_eq!(
        code(verify_inbound(
            &other,
            &[],
            URL,
            &h,
            SENDGRID_PAYLOAD.as_bytes(),
            now
        )),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        code(verify_inbound(
            &p,
            &[],
            URL,
            &h,
            SENDGRID_PAYLOAD.as_bytes(),
            now + 301
        )),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    // PEM armour is accepted for the key.
    let pem =
        format!("-----BEGIN PUBLIC KEY-----\n{SENDGRID_PUBLIC_KEY}\n-----END PUBLIC KEY-----\n");
    let p = preset(json!({"type": "sendgrid", "public_key": pem}));
    verify_inbound(&p, &[], URL, &h, SENDGRID_PAYLOAD.as_bytes(), now).unwrap();
}

#[test]
fn discord_with_fixed_key_and_ping() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pk_hex = hex::encode(sk.verifying_key().to_bytes());
    let p = preset(json!({"type": "discord", "public_key": pk_hex}));
    let body = br#"{"id":"1234567890","type":1,"application_id":"42"}"#;
    let mut msg = b"1795428000".to_vec();
    msg.extend_from_slice(body);
    let sig = hex::encode(sk.sign(&msg).to_bytes());
    let h = hm(&[
        ("X-Signature-Ed25519", &sig),
        ("X-Signature-Timestamp", "1795428000"),
    ]);
    let info = verify_inbound(&p, &[], URL, &h, body, TS).unwrap();
    assert_eq!(info.message_id.as_deref(), Some("1234567890"));
    assert_eq!(
        code(verify_inbound(
            &p,
            &[],
            URL,
            &h,
            &body[..body.len() - 1],
            TS
        )),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        code(verify_inbound(&p, &[], URL, &h, body, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    let r = handshake_response(&p, &[], body, &h).unwrap();
    assert_eq!(
        (r.content_type, r.body.as_str()),
        ("application/json", r#"{"type":1}"#)
    );
    assert_eq!(handshake_response(&p, &[], br#"{"type":2}"#, &h), None);
    let h = hm(&[
        ("X-Signature-Ed25519", &sig[..126]),
        ("X-Signature-Timestamp", "1795428000"),
    ]);
    assert_eq!(
        code(verify_inbound(&p, &[], URL, &h, body, TS)),
        "SIGNATURE_INVALID"
    );
}

#[test]
fn glassix() {
    let body_sig = "sha1=724eaba43f166cf831baf6edf61123bb61422e6c";
    let date_sig = "sha1=53d56308357f76b4a97b5842ac985f7a7893e767";
    let both = preset(json!({"type": "glassix"}));
    let h = hm(&[
        ("X-Hub-Signature", body_sig),
        ("X-Glassix-Auth-Date", "2026-11-23T10:00:00Z"),
        ("X-Glassix-Auth-Signature", date_sig),
    ]);
    let info = battery(&both, &h, TS);
    assert_eq!(info.timestamp, Some(TS));
    assert_eq!(
        code(verify_inbound(&both, &[S], URL, &h, BODY, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(
        code(verify_inbound(&both, &[S], URL, &h, BODY, TS - 300)),
        "OK"
    );
    // Only the body signature required: the date headers may be absent…
    let body_only = preset(json!({"type": "glassix", "require_date_signature": false}));
    let hb = hm(&[("X-Hub-Signature", body_sig)]);
    verify_inbound(&body_only, &[S], URL, &hb, BODY, TS + 10_000).unwrap();
    assert_eq!(
        code(verify_inbound(&both, &[S], URL, &hb, BODY, TS)),
        "SIGNATURE_INVALID"
    );
    // …but when present they are checked.
    assert_eq!(
        code(verify_inbound(&body_only, &[S], URL, &h, BODY, TS + 10_000)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    // Only the date signature required: the body is not covered.
    let date_only = preset(json!({"type": "glassix", "require_body_signature": false}));
    assert!(!date_only.signs_body());
    let hd = hm(&[
        ("X-Glassix-Auth-Date", "Mon, 23 Nov 2026 10:00:00 GMT"),
        (
            "X-Glassix-Auth-Signature",
            "sha1=8f14e51a1d3021de936f5643b21b7f71ed34b4f2",
        ),
    ]);
    let info = verify_inbound(&date_only, &[S], URL, &hd, b"anything", TS).unwrap();
    assert_eq!(info.timestamp, Some(TS));
}

#[test]
fn standard_webhooks_svix_names_and_ed25519() {
    let p = preset(json!({"type": "standard-webhooks"}));
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    for names in [
        ["webhook-id", "webhook-timestamp", "webhook-signature"],
        ["svix-id", "svix-timestamp", "svix-signature"],
    ] {
        let h = hm(&[
            (names[0], "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            (names[1], "1614265330"),
            (names[2], sig),
        ]);
        let info = verify_inbound(&p, &[secret], URL, &h, body, 1_614_265_330).unwrap();
        assert_eq!(
            info.message_id.as_deref(),
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
        );
        assert!(info.message_id_signed);
        assert_eq!(info.timestamp, Some(1_614_265_330));
        assert_eq!(
            code(verify_inbound(
                &p,
                &[secret],
                URL,
                &h,
                body,
                1_614_265_330 + 301
            )),
            "TIMESTAMP_OUT_OF_TOLERANCE"
        );
    }
    // v1a: ed25519 with a whpk_ public key, from the config or from the secrets.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let whpk = format!(
        "whpk_{}",
        crate::util::B64.encode(sk.verifying_key().to_bytes())
    );
    let sig = crate::util::B64.encode(sk.sign(b"msg_1.1795428000.{}").to_bytes());
    let h = hm(&[
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1795428000"),
        ("webhook-signature", &format!("v1,AAAA v1a,{sig}")),
    ]);
    let with_pk = preset(json!({"type": "standard-webhooks", "public_keys": [whpk]}));
    assert!(!with_pk.requires_secrets());
    verify_inbound(&with_pk, &[], URL, &h, b"{}", TS).unwrap();
    verify_inbound(&p, &[&whpk], URL, &h, b"{}", TS).unwrap();
    assert_eq!(
        code(verify_inbound(&with_pk, &[], URL, &h, b"{ }", TS)),
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        code(verify_inbound(&p, &[secret], URL, &h, b"{}", TS)),
        "SIGNATURE_INVALID"
    );
    // Each v1a entry costs a hash of the body per key: more than a few is a malformed header,
    // and a preset holds at most a few keys.
    let n_v1a = |n: usize| {
        let many = std::iter::repeat_n(format!("v1a,{sig}"), n)
            .collect::<Vec<_>>()
            .join(" ");
        hm(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1795428000"),
            ("webhook-signature", &many),
        ])
    };
    verify_inbound(&with_pk, &[], URL, &n_v1a(4), b"{}", TS).unwrap();
    assert!(
        verify_inbound(&with_pk, &[], URL, &n_v1a(5), b"{}", TS).is_err(),
        "a fifth v1a signature, valid as it is, makes the header unacceptable"
    );
    let six_keys: Vec<String> = (0..6u8)
        .map(|i| {
            let k = ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32]);
            format!(
                "whpk_{}",
                crate::util::B64.encode(k.verifying_key().to_bytes())
            )
        })
        .collect();
    assert!(
        serde_json::from_value::<Preset>(
            json!({"type": "standard-webhooks", "public_keys": six_keys})
        )
        .is_err()
    );
}

#[test]
fn hookwarden_preset_all_and_any() {
    use crate::{Outbound, Scheme, sign};
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let msg = Outbound {
        msg_id: "msg_hw",
        timestamp: TS,
        body: BODY,
    };
    let mut h = HeaderMap::new();
    for s in [Scheme::StandardWebhooks, Scheme::DateSha1] {
        for (k, v) in sign(s, &[secret], &msg).unwrap() {
            h.insert(k, HeaderValue::from_str(&v).unwrap());
        }
    }
    let all = preset(json!({"type": "hookwarden", "schemes": ["standard-webhooks", "date-sha1"]}));
    let info = verify_inbound(&all, &[secret], URL, &h, BODY, TS).unwrap();
    assert_eq!(info.message_id.as_deref(), Some("msg_hw"));
    assert_eq!(info.timestamp, Some(TS));
    let all3 =
        preset(json!({"type": "hookwarden", "schemes": ["standard-webhooks", "github-sha256"]}));
    assert_eq!(
        code(verify_inbound(&all3, &[secret], URL, &h, BODY, TS)),
        "SIGNATURE_INVALID"
    );
    let any = preset(
        json!({"type": "hookwarden", "schemes": ["github-sha256", "standard-webhooks"], "mode": "any"}),
    );
    verify_inbound(&any, &[secret], URL, &h, BODY, TS).unwrap();
    assert_eq!(
        code(verify_inbound(&any, &[secret], URL, &h, b"x", TS)),
        "SIGNATURE_INVALID"
    );
    // `any` is as strong as its weakest scheme: one that does not sign the body is refused,
    // or a captured date signature would carry any body.
    let weak = serde_json::from_value::<Preset>(
        json!({"type": "hookwarden", "schemes": ["standard-webhooks", "date-sha1"], "mode": "any"}),
    );
    assert!(weak.is_err(), "mode any with date-sha1 must be refused");
    // With mode all, date-sha1 beside a body-signing scheme is fine (both must verify).
    preset(json!({"type": "hookwarden", "schemes": ["standard-webhooks", "date-sha1"]}));
    assert_eq!(
        code(verify_inbound(&all, &[secret], URL, &h, BODY, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
}

#[test]
fn generic_hmac() {
    let p = preset(
        json!({"type": "hmac", "header": "X-Signature", "algorithm": "sha512",
        "encoding": "base64", "prefix": "sha512=", "timestamp_header": "X-Timestamp",
        "signed_content": "{timestamp}.{body}"}),
    );
    let sig = "sha512=EoReHsJIYF0ls76aztKPz3kcCJv82D1WpNvMSt9vhestEWCv/AvDOpupd5OHXa5fhxq8hLBi9WrXllfGAHcZAw==";
    let h = hm(&[("X-Signature", sig), ("X-Timestamp", "1795428000")]);
    let info = battery(&p, &h, TS);
    assert_eq!(info.timestamp, Some(TS));
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h, BODY, TS + 301)),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    let h2 = hm(&[("X-Signature", &sig[7..]), ("X-Timestamp", "1795428000")]);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h2, BODY, TS)),
        "SIGNATURE_INVALID"
    );
    let h3 = hm(&[("X-Signature", sig), ("X-Timestamp", "1795428001")]);
    assert_eq!(
        code(verify_inbound(&p, &[S], URL, &h3, BODY, TS)),
        "SIGNATURE_INVALID"
    );

    let p = preset(json!({"type": "hmac", "header": "X-Body-Sig", "algorithm": "sha1"}));
    let h = hm(&[("X-Body-Sig", "724EABA43F166CF831BAF6EDF61123BB61422E6C")]);
    let info = battery(&p, &h, TS);
    assert_eq!(info, VerifiedInfo::default());

    let p = preset(
        json!({"type": "hmac", "header": "X-Sig", "algorithm": "sha256",
        "id_header": "X-Id", "timestamp_header": "X-Ts", "signed_content": "{id}:{timestamp}:{body}"}),
    );
    let h = hm(&[
        (
            "X-Sig",
            "fe9a8c106ec3fe49a2365da05a83732dc8b84c20efb21a1f8cc72f4cf3efe013",
        ),
        ("X-Id", "msg-9"),
        ("X-Ts", "1795428000"),
    ]);
    let info = battery(&p, &h, TS);
    assert_eq!(info.message_id.as_deref(), Some("msg-9"));
    assert!(info.message_id_signed);
}

#[test]
fn basic_auth_and_api_key() {
    let p = preset(json!({"type": "basic_auth", "username": "hooks"}));
    let auth =
        |u: &str, pw: &str| format!("Basic {}", crate::util::B64.encode(format!("{u}:{pw}")));
    let ok = hm(&[("Authorization", &auth("hooks", "s3cret:with:colons"))]);
    verify_inbound(&p, &["old", "s3cret:with:colons"], URL, &ok, b"", TS).unwrap();
    for bad in [
        auth("hooks", "wrong"),
        auth("Hooks", "s3cret:with:colons"),
        auth("hooks", ""),
        "Bearer abc".to_owned(),
        "Basic !!!".to_owned(),
        "Basic".to_owned(),
        format!("Basic {}", crate::util::B64.encode("no-colon")),
    ] {
        let h = hm(&[("Authorization", &bad)]);
        assert_eq!(
            code(verify_inbound(
                &p,
                &["s3cret:with:colons"],
                URL,
                &h,
                b"",
                TS
            )),
            "SIGNATURE_INVALID",
            "{bad}"
        );
    }
    assert!(!p.signs_body());

    let p = preset(json!({"type": "api_key", "header": "Authorization", "prefix": "Bearer "}));
    let h = hm(&[("Authorization", "Bearer key-2")]);
    verify_inbound(&p, &["key-1", "key-2"], URL, &h, b"", TS).unwrap();
    assert_eq!(
        code(verify_inbound(&p, &["key-1"], URL, &h, b"", TS)),
        "SIGNATURE_INVALID"
    );
    let h = hm(&[("Authorization", "key-2")]);
    assert_eq!(
        code(verify_inbound(&p, &["key-2"], URL, &h, b"", TS)),
        "SIGNATURE_INVALID"
    );
    let p = preset(json!({"type": "api_key", "header": "X-Api-Key"}));
    let h = hm(&[("x-api-key", "key-2")]);
    verify_inbound(&p, &["key-2"], URL, &h, b"", TS).unwrap();
    assert_eq!(
        code(verify_inbound(
            &p,
            &["key-2"],
            URL,
            &HeaderMap::new(),
            b"",
            TS
        )),
        "SIGNATURE_INVALID"
    );
}

#[test]
fn none_accepts_everything() {
    let p = preset(json!({"type": "none"}));
    assert_eq!(
        verify_inbound(&p, &[], URL, &HeaderMap::new(), b"whatever", TS).unwrap(),
        VerifiedInfo::default()
    );
}

/// No input makes any preset panic; garbage is refused with a stable code.
#[test]
fn garbage_never_panics() {
    let names = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-signature",
        "x-hub-signature-256",
        "x-hub-signature",
        "stripe-signature",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-shopify-hmac-sha256",
        "x-twilio-signature",
        "x-twilio-webhooks-signature-settings",
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
        "x-glassix-auth-signature",
        "authorization",
        "x-signature",
        "x-timestamp",
        "content-type",
    ];
    let long = "A".repeat(10_000);
    let values: Vec<&str> = vec![
        "",
        " ",
        "=",
        ",",
        ";",
        "v1,",
        "v0=",
        "sha256=",
        "sha1=",
        "t=,v1=",
        "ts=;h1=",
        "t=99999999999999999999,v1=00",
        "-1",
        "0",
        "9223372036854775807",
        "{}",
        "%%%",
        "é",
        "Basic",
        "Basic Og==",
        "[",
        "::::",
        &long,
        "v1a,AAAA",
        "MEUCIQ==",
        "application/x-www-form-urlencoded",
    ];
    let mut presets: Vec<Preset> = all_examples().into_iter().map(preset).collect();
    presets.push(preset(json!({"type": "github", "allow_sha1_legacy": true})));
    presets.push(preset(
        json!({"type": "glassix", "require_body_signature": false}),
    ));
    let urls = [
        "",
        "https://x",
        "https://x/?bodySHA256=zz",
        "http://[::1",
        URL,
    ];
    for p in &presets {
        for (i, v) in values.iter().enumerate() {
            let mut h = HeaderMap::new();
            for (j, n) in names.iter().enumerate() {
                let val = values.get((i + j) % values.len()).copied().unwrap_or(v);
                if let Ok(val) = HeaderValue::from_str(val) {
                    h.append(HeaderName::from_static(n), val);
                }
            }
            for url in urls {
                for body in [&b""[..], b"\xff\xfe", BODY, b"a=1&b"] {
                    let r = verify_inbound(p, &[S, "x"], url, &h, body, i64::MAX);
                    if p.type_name() != "none" {
                        assert!(r.is_err(), "{} accepted garbage", p.type_name());
                    }
                    let _ = handshake_response(p, &[S], body, &h);
                }
            }
        }
    }
}
