//! Interop with the providers' own libraries: signatures are produced by the UNMODIFIED
//! PyPI packages `stripe`, `slack_sdk`, `twilio`, `svix`, `pynacl` (Discord's ed25519),
//! `starkbank-ecdsa` + `sendgrid` (SendGrid's ECDSA) and the npm package
//! `@octokit/webhooks-methods` (GitHub), and verified by this crate; tampered requests
//! must be rejected. Versions are pinned in `interop/requirements.txt` and
//! `interop/package.json`; `.ci/setup-interop` installs them. Missing = failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::{run_node, run_python, unix_now};
use hookwarden_signatures::inbound::{Preset, VerifiedInfo, verify_inbound};
use hookwarden_signatures::{Outbound, Scheme, sign};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

const URL: &str = "https://hooks.example.com/in/tok_123";
const BODY: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"note":"héllo ✓"}}"#;
const TAMPERED: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"note":"hello ✓"}}"#;

fn preset(v: Value) -> Preset {
    serde_json::from_value(v).expect("preset")
}

/// Headers from the named fields of a library's result.
fn headers_from(res: &Value, names: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for n in names {
        let v = res[n]
            .as_str()
            .unwrap_or_else(|| panic!("result lacks {n}: {res}"));
        h.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn self_checked(res: &Value) {
    assert_eq!(
        res["self_check"],
        Value::Bool(true),
        "library rejected its own output: {res}"
    );
}

/// Accepted as signed; rejected when the body is tampered with or the secret is wrong.
fn accept_and_reject(
    p: &Preset,
    secret: &str,
    url: &str,
    h: &HeaderMap,
    body: &[u8],
    tampered: &[u8],
    now: i64,
) -> VerifiedInfo {
    let info = verify_inbound(p, &[secret], url, h, body, now)
        .unwrap_or_else(|e| panic!("{}: rejected the library's signature: {e}", p.type_name()));
    let e = verify_inbound(p, &[secret], url, h, tampered, now).expect_err("tampered accepted");
    assert_eq!(e.code(), "SIGNATURE_INVALID", "{}", p.type_name());
    if p.requires_secrets() {
        let e = verify_inbound(p, &["whsec_d3JvbmctYnV0LXZhbGlk"], url, h, body, now)
            .expect_err("wrong secret accepted");
        assert_eq!(e.code(), "SIGNATURE_INVALID", "{}", p.type_name());
    }
    info
}

#[test]
fn python_provider_libraries() {
    let now = unix_now();
    let stripe_secret = "whsec_5f1c0ffee0ddba11decafbadc0de1234";
    let slack_secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let twilio_token = "12345678901234567890123456789012";
    let svix_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let params =
        json!({"To": "+15550001", "From": "+15550002", "Body": "héllo & more = ✓", "Empty": ""});
    let ops = json!([
        {"provider": "stripe", "secret": stripe_secret, "timestamp": now, "body": BODY},
        {"provider": "stripe", "secret": "whsec_old", "extra_secrets": [stripe_secret], "timestamp": now, "body": BODY},
        {"provider": "slack", "secret": slack_secret, "timestamp": now, "body": BODY},
        {"provider": "twilio", "secret": twilio_token, "url": format!("{URL}?x=1"), "params": params},
        {"provider": "twilio", "secret": twilio_token, "url": URL, "json": true, "body": BODY},
        {"provider": "twilio", "secret": twilio_token, "url": URL, "json": true, "body": BODY, "algorithm": "HMAC_SHA256"},
        {"provider": "svix", "secret": svix_secret, "msg_id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "timestamp": now, "body": BODY},
        {"provider": "discord", "seed_hex": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "timestamp": now, "body": BODY},
        {"provider": "sendgrid", "timestamp": now, "body": BODY},
    ]);
    let res = run_python("providers_sign.py", &ops);
    assert_eq!(res.len(), 9, "{res:?}");
    for r in &res {
        self_checked(r);
    }
    let body = BODY.as_bytes();
    let tampered = TAMPERED.as_bytes();

    // Stripe (single secret, then rotation with two v1 entries).
    let p = preset(json!({"type": "stripe"}));
    for r in &res[0..2] {
        let h = headers_from(r, &["stripe-signature"]);
        let info = accept_and_reject(&p, stripe_secret, URL, &h, body, tampered, now);
        assert_eq!(
            info.message_id.as_deref(),
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
        );
        assert_eq!(info.timestamp, Some(now));
        let e = verify_inbound(&p, &[stripe_secret], URL, &h, body, now + 301).unwrap_err();
        assert_eq!(e.code(), "TIMESTAMP_OUT_OF_TOLERANCE");
    }

    // Slack.
    let h = headers_from(&res[2], &["x-slack-request-timestamp", "x-slack-signature"]);
    let info = accept_and_reject(
        &preset(json!({"type": "slack"})),
        slack_secret,
        URL,
        &h,
        body,
        tampered,
        now,
    );
    assert_eq!(info.timestamp, Some(now));

    // Twilio: form post (signature over URL + sorted params).
    let p = preset(json!({"type": "twilio"}));
    let r = &res[3];
    let mut h = headers_from(r, &["x-twilio-signature"]);
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let form = r["form_body"].as_str().unwrap();
    let url = r["url"].as_str().unwrap();
    let tampered_form = form.replace("15550002", "15550003");
    accept_and_reject(
        &p,
        twilio_token,
        url,
        &h,
        form.as_bytes(),
        tampered_form.as_bytes(),
        now,
    );
    let e = verify_inbound(&p, &[twilio_token], URL, &h, form.as_bytes(), now).unwrap_err();
    assert_eq!(e.code(), "SIGNATURE_INVALID", "another URL must not verify");
    // Twilio: JSON body (bodySHA256 in the URL), SHA-1 and SHA-256.
    for (i, settings) in [(4, None), (5, Some("algorithm=HMAC_SHA256"))] {
        let r = &res[i];
        let mut h = headers_from(r, &["x-twilio-signature"]);
        h.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(s) = settings {
            h.insert(
                "x-twilio-webhooks-signature-settings",
                HeaderValue::from_static(s),
            );
        }
        let url = r["url"].as_str().unwrap();
        accept_and_reject(&p, twilio_token, url, &h, body, tampered, now);
    }

    // Svix (svix-* header names).
    let h = headers_from(&res[6], &["svix-id", "svix-timestamp", "svix-signature"]);
    let info = accept_and_reject(
        &preset(json!({"type": "standard-webhooks"})),
        svix_secret,
        URL,
        &h,
        body,
        tampered,
        now,
    );
    assert_eq!(
        info.message_id.as_deref(),
        Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    );
    assert!(info.message_id_signed);

    // Discord (PyNaCl ed25519).
    let r = &res[7];
    let p = preset(json!({"type": "discord", "public_key": r["public_key"]}));
    let h = headers_from(r, &["x-signature-ed25519", "x-signature-timestamp"]);
    accept_and_reject(&p, "", URL, &h, body, tampered, now);

    // SendGrid (ECDSA P-256, checked by SendGrid's own EventWebhook helper first).
    let r = &res[8];
    let p = preset(json!({"type": "sendgrid", "public_key": r["public_key"]}));
    let h = headers_from(
        r,
        &[
            "x-twilio-email-event-webhook-signature",
            "x-twilio-email-event-webhook-timestamp",
        ],
    );
    accept_and_reject(&p, "", URL, &h, body, tampered, now);
}

#[test]
fn octokit_webhooks_methods() {
    let secret = "It's a Secret to Everybody";
    let ours = sign(
        Scheme::GithubSha256,
        &[secret],
        &Outbound {
            msg_id: "x",
            timestamp: 0,
            body: BODY.as_bytes(),
        },
    )
    .unwrap();
    let ops = json!([
        {"op": "sign", "secret": secret, "payload": BODY},
        {"op": "sign", "secret": secret, "payload": "Hello, World!"},
        // reverse direction: Octokit verifies our outbound github-sha256 signature
        {"op": "verify", "secret": secret, "payload": BODY, "signature": ours[0].1},
        {"op": "verify", "secret": secret, "payload": TAMPERED, "signature": ours[0].1},
    ]);
    let res = run_node("octokit.mjs", &ops);
    // GitHub's documented example, produced by Octokit.
    assert_eq!(
        res[1]["signature"],
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    assert_eq!(res[2]["ok"], Value::Bool(true));
    assert_eq!(res[3]["ok"], Value::Bool(false));

    let p = preset(json!({"type": "github"}));
    let sig = res[0]["signature"].as_str().unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-hub-signature-256", HeaderValue::from_str(sig).unwrap());
    h.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    let info = accept_and_reject(&p, secret, URL, &h, BODY.as_bytes(), TAMPERED.as_bytes(), 0);
    assert_eq!(
        info.message_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
}
