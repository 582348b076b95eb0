//! Interop with the UNMODIFIED PyPI `standardwebhooks` package (pinned in
//! `interop/requirements.txt`, installed by `.ci/setup-interop`):
//! we sign → Python verifies; Python signs → we verify; tampering is rejected by both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::{run_python, unix_now};
use hookwarden_signatures::{Outbound, Scheme, VerifyError, sign, verify};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B: &str = "whsec_dGVzdC1zZWNyZXQtbnVtYmVyLXR3by0xMjM0NTY=";
const SECRET_UNRELATED: &str = "whsec_b3RoZXItc2VjcmV0LW5vdC11c2VkLWFueXdoZXJl";
const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"inv_1","note":"héllo ✓ \"quoted\""}}"#;

fn headers_json(pairs: &[(&'static str, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect(),
    )
}

fn verify_op(secret: &str, headers: &Value, body: &str) -> Value {
    json!({"op": "verify", "secret": secret, "headers": headers, "body": body})
}

fn is_ok(v: &Value) -> bool {
    v.get("ok") == Some(&Value::Bool(true))
}

#[test]
fn we_sign_python_verifies() {
    let now = unix_now();
    let msg = Outbound {
        msg_id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        timestamp: now,
        body: BODY.as_bytes(),
    };
    let single = headers_json(&sign(Scheme::StandardWebhooks, &[SECRET_A], &msg).unwrap());
    let rotated =
        headers_json(&sign(Scheme::StandardWebhooks, &[SECRET_B, SECRET_A], &msg).unwrap());
    let bare_secret = SECRET_A.trim_start_matches("whsec_");
    let ops = json!([
        verify_op(SECRET_A, &single, BODY),
        // rotation: the header carries one signature per secret; each verifies alone
        verify_op(SECRET_A, &rotated, BODY),
        verify_op(SECRET_B, &rotated, BODY),
        // the library also accepts the secret without the prefix
        verify_op(bare_secret, &single, BODY),
        // negative cases: must be rejected by the library
        verify_op(SECRET_A, &single, &BODY.replace("inv_1", "inv_2")),
        verify_op(SECRET_UNRELATED, &rotated, BODY),
        verify_op(SECRET_B, &single, BODY),
    ]);
    let res = run_python("standardwebhooks_ops.py", &ops);
    let expected = [true, true, true, true, false, false, false];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(is_ok(&res[i]), *want, "operation {i}: {}", res[i]);
    }
    // The rejection is a signature rejection, not some other exception.
    let err = res[4]["error"].as_str().unwrap();
    assert!(err.contains("No matching signature"), "{err}");
}

#[test]
fn python_signs_we_verify() {
    let now = unix_now();
    let ops = json!([
        {"op": "sign", "secret": SECRET_A, "msg_id": "msg_py_1", "timestamp": now, "body": BODY},
        {"op": "sign", "secret": SECRET_B, "msg_id": "msg_py_1", "timestamp": now, "body": BODY},
    ]);
    let res = run_python("standardwebhooks_ops.py", &ops);
    let sig_a = res[0]["signature"].as_str().expect("signature").to_owned();
    let sig_b = res[1]["signature"].as_str().expect("signature").to_owned();
    assert!(sig_a.starts_with("v1,"), "{sig_a}");

    let headers = |sig: &str| {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_static("msg_py_1"));
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&now.to_string()).unwrap(),
        );
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    };
    let body = BODY.as_bytes();
    let v = |secrets: &[&str], h: &HeaderMap, body: &[u8]| {
        verify(Scheme::StandardWebhooks, secrets, h, body, now, 300)
    };
    assert_eq!(v(&[SECRET_A], &headers(&sig_a), body), Ok(()));
    assert_eq!(v(&[SECRET_B, SECRET_A], &headers(&sig_a), body), Ok(()));
    assert_eq!(
        v(&[SECRET_B], &headers(&format!("{sig_a} {sig_b}")), body),
        Ok(())
    );
    // Python's signature equals ours, byte for byte.
    let ours = sign(
        Scheme::StandardWebhooks,
        &[SECRET_A],
        &Outbound {
            msg_id: "msg_py_1",
            timestamp: now,
            body,
        },
    )
    .unwrap();
    assert_eq!(ours[2].1, sig_a);
    // Negative: tampered body, wrong secret, stale.
    assert_eq!(
        v(
            &[SECRET_A],
            &headers(&sig_a),
            BODY.replace("héllo", "hello").as_bytes()
        ),
        Err(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        v(&[SECRET_B], &headers(&sig_a), body),
        Err(VerifyError::SignatureMismatch)
    );
    assert!(matches!(
        verify(
            Scheme::StandardWebhooks,
            &[SECRET_A],
            &headers(&sig_a),
            body,
            now + 301,
            300
        ),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
}
