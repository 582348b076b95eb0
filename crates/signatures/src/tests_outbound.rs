//! Unit tests for the outbound schemes.
//!
//! Known-answer values were computed once, independently of this crate, with Python's
//! standard library, e.g.
//! `base64.b64encode(hmac.new(base64.b64decode(secret[6:]), b"msg_2Kx.1795428000." + body, hashlib.sha256).digest())`
//! and `hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()`.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Outbound, Scheme, SignError, VerifyError, sign, verify};

const SEC1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// base64("test-secret-number-two-123456")
const SEC2: &str = "whsec_dGVzdC1zZWNyZXQtbnVtYmVyLXR3by0xMjM0NTY=";
const BODY: &[u8] = br#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#;
/// 2026-11-23T10:00:00Z
const TS: i64 = 1_795_428_000;

// Python: see module doc.
const SW_SIG1: &str = "v1,Yx4kpewQ7iULXUwd+KmBbS4h569z2lLUHKD8jkjXLXY=";
const SW_SIG2: &str = "v1,RTC/gcRO8ovWzQgY/ax/Vx4dkJZ8tgS5L8H9tmsZ7ZY=";
// hmac.new(SEC1.encode(), BODY, hashlib.sha256).hexdigest()
const GH_SIG1: &str = "sha256=48d161bfa12b21a6d322a791ec2692fdfee179c34bd2c1391e54b97246abace8";
// hmac.new(SEC1.encode(), BODY, hashlib.sha1).hexdigest()
const SHA1_SIG1: &str = "sha1=d8e406df605ed2aacea82ce293014aec121431f3";
// hmac.new(SEC1.encode(), b"2026-11-23T10:00:00Z", hashlib.sha1).hexdigest()
const DATE_SIG1: &str = "sha1=88076b9f1c76ad0b6233383b51d11626d4dd36a6";

fn msg() -> Outbound<'static> {
    Outbound {
        msg_id: "msg_2Kx",
        timestamp: TS,
        body: BODY,
    }
}

fn to_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn signed_map(scheme: Scheme, secrets: &[&str], m: &Outbound<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in sign(scheme, secrets, m).unwrap() {
        h.append(k, HeaderValue::from_str(&v).unwrap());
    }
    h
}

fn sw_headers(sig: &str) -> HeaderMap {
    to_map(&[
        ("webhook-id", "msg_2Kx"),
        ("webhook-timestamp", "1795428000"),
        ("webhook-signature", sig),
    ])
}

fn sw_verify(h: &HeaderMap) -> Result<(), VerifyError> {
    verify(Scheme::StandardWebhooks, &[SEC1], h, BODY, TS, 300)
}

#[test]
fn scheme_names_round_trip() {
    for s in Scheme::ALL {
        assert_eq!(s.as_str().parse::<Scheme>().unwrap(), s);
        assert_eq!(s.to_string(), s.as_str());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Scheme>(&json).unwrap(), s);
    }
    assert_eq!(
        Scheme::ALL.map(|s| s.as_str()),
        [
            "standard-webhooks",
            "standard-webhooks-v1a",
            "github-sha256",
            "hub-sha1",
            "date-sha1"
        ]
    );
    for bad in ["", "Standard-Webhooks", "github", "sha256", " hub-sha1"] {
        assert!(bad.parse::<Scheme>().is_err(), "{bad:?}");
    }
    assert_eq!(
        "nope".parse::<Scheme>().unwrap_err().to_string(),
        "unknown signature scheme \"nope\" (expected one of: standard-webhooks, standard-webhooks-v1a, github-sha256, hub-sha1, date-sha1)"
    );
}

/// The example used by the Standard Webhooks reference libraries' test suites (and
/// Svix's documentation).
#[test]
fn standard_webhooks_reference_example() {
    let m = Outbound {
        msg_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1_614_265_330,
        body: br#"{"test": 2432232314}"#,
    };
    let h = sign(Scheme::StandardWebhooks, &[SEC1], &m).unwrap();
    assert_eq!(
        h,
        vec![
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned()),
            ("webhook-timestamp", "1614265330".to_owned()),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()
            ),
        ]
    );
    // The same secret without the whsec_ prefix is read as raw base64.
    let bare = SEC1.trim_start_matches("whsec_");
    assert_eq!(sign(Scheme::StandardWebhooks, &[bare], &m).unwrap(), h);
    let map = signed_map(Scheme::StandardWebhooks, &[SEC1], &m);
    verify(
        Scheme::StandardWebhooks,
        &[bare],
        &map,
        m.body,
        1_614_265_330,
        300,
    )
    .unwrap();
}

#[test]
fn known_answers_every_scheme() {
    let m = msg();
    assert_eq!(
        sign(Scheme::StandardWebhooks, &[SEC1], &m).unwrap(),
        vec![
            ("webhook-id", "msg_2Kx".to_owned()),
            ("webhook-timestamp", "1795428000".to_owned()),
            ("webhook-signature", SW_SIG1.to_owned()),
        ]
    );
    assert_eq!(
        sign(Scheme::GithubSha256, &[SEC1], &m).unwrap(),
        vec![("x-hub-signature-256", GH_SIG1.to_owned())]
    );
    assert_eq!(
        sign(Scheme::HubSha1, &[SEC1], &m).unwrap(),
        vec![("x-hub-signature", SHA1_SIG1.to_owned())]
    );
    assert_eq!(
        sign(Scheme::DateSha1, &[SEC1], &m).unwrap(),
        vec![
            ("x-hookwarden-auth-date", "2026-11-23T10:00:00Z".to_owned()),
            ("x-hookwarden-auth-signature", DATE_SIG1.to_owned()),
        ]
    );
    for s in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        let h = signed_map(s, &[SEC1], &m);
        verify(s, &[SEC1], &h, BODY, TS, 300).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// GitHub's documented example: secret "It's a Secret to Everybody", payload
/// "Hello, World!".
#[test]
fn github_documented_example() {
    let m = Outbound {
        msg_id: "x",
        timestamp: 0,
        body: b"Hello, World!",
    };
    let h = sign(Scheme::GithubSha256, &["It's a Secret to Everybody"], &m).unwrap();
    assert_eq!(
        h[0].1,
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn rotation_standard_webhooks_signs_with_every_secret() {
    let m = msg();
    let h = sign(Scheme::StandardWebhooks, &[SEC2, SEC1], &m).unwrap();
    assert_eq!(h[2].1, format!("{SW_SIG2} {SW_SIG1}"));
    let map = signed_map(Scheme::StandardWebhooks, &[SEC2, SEC1], &m);
    // A receiver that knows only the old, or only the new secret accepts it.
    verify(Scheme::StandardWebhooks, &[SEC1], &map, BODY, TS, 300).unwrap();
    verify(Scheme::StandardWebhooks, &[SEC2], &map, BODY, TS, 300).unwrap();
    verify(Scheme::StandardWebhooks, &[SEC2, SEC1], &map, BODY, TS, 300).unwrap();
    let other = "whsec_b3RoZXItc2VjcmV0LW5vdC11c2VkLWFueXdoZXJl";
    assert_eq!(
        verify(Scheme::StandardWebhooks, &[other], &map, BODY, TS, 300),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn rotation_single_signature_schemes_sign_with_first_and_accept_any() {
    let m = msg();
    for s in [Scheme::GithubSha256, Scheme::HubSha1, Scheme::DateSha1] {
        let newest_first = sign(s, &[SEC2, SEC1], &m).unwrap();
        assert_eq!(newest_first, sign(s, &[SEC2], &m).unwrap(), "{s}");
        assert_ne!(newest_first, sign(s, &[SEC1], &m).unwrap(), "{s}");
        let h = signed_map(s, &[SEC1], &m);
        verify(s, &[SEC2, SEC1], &h, BODY, TS, 300).unwrap();
        verify(s, &[SEC1, SEC2], &h, BODY, TS, 300).unwrap();
        assert_eq!(
            verify(s, &[SEC2], &h, BODY, TS, 300),
            Err(VerifyError::SignatureMismatch),
            "{s}"
        );
    }
}

#[test]
fn wrong_secret_and_tampered_body_are_rejected() {
    let m = msg();
    for s in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        let h = signed_map(s, &[SEC1], &m);
        assert_eq!(
            verify(s, &["whsec_d3JvbmctYnV0LXZhbGlk"], &h, BODY, TS, 300),
            Err(VerifyError::SignatureMismatch),
            "{s}"
        );
        let tampered = verify(s, &[SEC1], &h, b"{\"type\":\"invoice.paid\"}", TS, 300);
        if s.signs_body() {
            assert_eq!(tampered, Err(VerifyError::SignatureMismatch), "{s}");
        } else {
            // date-sha1 does not cover the body, by design.
            assert_eq!(tampered, Ok(()));
        }
    }
}

#[test]
fn no_secrets_and_invalid_secrets() {
    let m = msg();
    let h = signed_map(Scheme::StandardWebhooks, &[SEC1], &m);
    for s in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        assert_eq!(sign(s, &[], &m), Err(SignError::NoSecrets));
        assert_eq!(
            verify(s, &[], &h, BODY, TS, 300),
            Err(VerifyError::NoSecrets)
        );
        assert_eq!(sign(s, &[""], &m), Err(SignError::InvalidSecret));
    }
    for bad in [
        "whsec_",
        "whsec_not base64!",
        "whsec_@@@@",
        "whpk_AAAA",
        "whsk_AAAA",
    ] {
        assert_eq!(
            sign(Scheme::StandardWebhooks, &[SEC1, bad], &m),
            Err(SignError::InvalidSecret),
            "{bad}"
        );
        assert_eq!(
            verify(Scheme::StandardWebhooks, &[SEC1, bad], &h, BODY, TS, 300),
            Err(VerifyError::InvalidSecret),
            "{bad}"
        );
    }
    // An empty secret in the verification list is a configuration error.
    let gh = signed_map(Scheme::GithubSha256, &[SEC1], &m);
    assert_eq!(
        verify(Scheme::GithubSha256, &[SEC1, ""], &gh, BODY, TS, 300),
        Err(VerifyError::InvalidSecret)
    );
    // ... and so it is when signing, for every scheme, even those that sign with the first
    // secret only: `sign` must not accept a list that `verify` refuses (found by fuzzing).
    for s in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        assert_eq!(
            sign(s, &[SEC1, ""], &m),
            Err(SignError::InvalidSecret),
            "{s}"
        );
    }
}

#[test]
fn sign_rejects_unusable_ids_and_timestamps() {
    let long = "a".repeat(257);
    for id in [
        "",
        "has space",
        "tab\there",
        "naïve",
        "new\nline",
        long.as_str(),
    ] {
        let m = Outbound {
            msg_id: id,
            ..msg()
        };
        assert_eq!(
            sign(Scheme::StandardWebhooks, &[SEC1], &m),
            Err(SignError::InvalidMessageId),
            "{id:?}"
        );
    }
    let ok_id = "a".repeat(256);
    let m = Outbound {
        msg_id: &ok_id,
        ..msg()
    };
    assert!(sign(Scheme::StandardWebhooks, &[SEC1], &m).is_ok());
    let m = Outbound {
        timestamp: -1,
        ..msg()
    };
    assert_eq!(
        sign(Scheme::StandardWebhooks, &[SEC1], &m),
        Err(SignError::InvalidTimestamp)
    );
    for ts in [253_402_300_800, i64::MAX, i64::MIN] {
        let m = Outbound {
            timestamp: ts,
            ..msg()
        };
        assert_eq!(
            sign(Scheme::DateSha1, &[SEC1], &m),
            Err(SignError::InvalidTimestamp)
        );
    }
    // 9999-12-31T23:59:59Z is still representable.
    let m = Outbound {
        timestamp: 253_402_300_799,
        ..msg()
    };
    assert_eq!(
        sign(Scheme::DateSha1, &[SEC1], &m).unwrap()[0].1,
        "9999-12-31T23:59:59Z"
    );
    // standard-webhooks: receivers read at most 15 digits, so a larger timestamp could never
    // verify; sign refuses it (found by fuzzing).
    for ts in [1_000_000_000_000_000, i64::MAX] {
        let m = Outbound {
            timestamp: ts,
            ..msg()
        };
        assert_eq!(
            sign(Scheme::StandardWebhooks, &[SEC1], &m),
            Err(SignError::InvalidTimestamp),
            "{ts}"
        );
    }
    let m = Outbound {
        timestamp: 999_999_999_999_999,
        ..msg()
    };
    let h = signed_map(Scheme::StandardWebhooks, &[SEC1], &m);
    assert_eq!(
        verify(Scheme::StandardWebhooks, &[SEC1], &h, BODY, m.timestamp, 0),
        Ok(())
    );
}

#[test]
fn standard_webhooks_malformed_signature_headers() {
    let sig = SW_SIG1.trim_start_matches("v1,");
    let seventeen = vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; 17].join(" ");
    let sixteen_last_valid = {
        let mut v = vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; 15];
        v.push(SW_SIG1);
        v.join(" ")
    };
    let huge = format!("{SW_SIG1} {}", "x".repeat(5000));
    let malformed = VerifyError::MalformedHeader("webhook-signature");
    let cases: Vec<(String, Result<(), VerifyError>)> = vec![
        (SW_SIG1.into(), Ok(())),
        (format!("  {SW_SIG1}  "), Ok(())),
        (format!("v2,abc {SW_SIG1}"), Ok(())),
        (format!("garbage {SW_SIG1}"), Ok(())),
        (format!("v1,!!!! {SW_SIG1}"), Ok(())),
        (format!("{SW_SIG1}  {SW_SIG2}"), Ok(())),
        (sixteen_last_valid, Ok(())),
        (
            "".into(),
            Err(VerifyError::MissingHeader("webhook-signature")),
        ),
        (
            "   ".into(),
            Err(VerifyError::MissingHeader("webhook-signature")),
        ),
        (sig.into(), Err(malformed.clone())),
        ("v1".into(), Err(malformed.clone())),
        ("v1,".into(), Err(VerifyError::SignatureMismatch)),
        (
            "v1,!!!notbase64!!!".into(),
            Err(VerifyError::SignatureMismatch),
        ),
        (
            format!("v1,{}", &sig[..40]),
            Err(VerifyError::SignatureMismatch),
        ),
        (
            format!("v1,{}", sig.trim_end_matches('=')),
            Err(VerifyError::SignatureMismatch),
        ),
        (format!("V1,{sig}"), Err(VerifyError::SignatureMismatch)),
        (format!("v1a,{sig}"), Err(VerifyError::SignatureMismatch)),
        (format!("v1, {sig}"), Err(VerifyError::SignatureMismatch)),
        (format!("v1;{sig}"), Err(malformed.clone())),
        (format!("v1={sig}"), Err(malformed.clone())),
        (seventeen, Err(malformed.clone())),
        (huge, Err(malformed.clone())),
    ];
    for (value, expected) in cases {
        assert_eq!(sw_verify(&sw_headers(&value)), expected, "{value:?}");
    }
}

#[test]
fn standard_webhooks_missing_repeated_and_bad_headers() {
    let full = sw_headers(SW_SIG1);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut h = full.clone();
        h.remove(name);
        let expected = match name {
            "webhook-id" => "webhook-id",
            "webhook-timestamp" => "webhook-timestamp",
            _ => "webhook-signature",
        };
        assert_eq!(sw_verify(&h), Err(VerifyError::MissingHeader(expected)));
        // Repeated headers are ambiguous: refused.
        let mut h = full.clone();
        h.append(
            HeaderName::from_static(expected),
            HeaderValue::from_static("x"),
        );
        assert_eq!(sw_verify(&h), Err(VerifyError::MalformedHeader(expected)));
        // Non-ASCII bytes.
        let mut h = full.clone();
        h.insert(
            HeaderName::from_static(expected),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(
            matches!(sw_verify(&h), Err(VerifyError::MalformedHeader(_))),
            "{name}"
        );
    }
    // Upper-case header names are the same header in HTTP.
    let h = to_map(&[
        ("Webhook-Id", "msg_2Kx"),
        ("WEBHOOK-TIMESTAMP", "1795428000"),
        ("Webhook-Signature", SW_SIG1),
    ]);
    assert_eq!(sw_verify(&h), Ok(()));
    // A different id is a different signed content.
    let mut h = full.clone();
    h.insert("webhook-id", HeaderValue::from_static("msg_other"));
    assert_eq!(sw_verify(&h), Err(VerifyError::SignatureMismatch));
    let long_id = "m".repeat(300);
    h.insert("webhook-id", HeaderValue::from_str(&long_id).unwrap());
    assert_eq!(
        sw_verify(&h),
        Err(VerifyError::MalformedHeader("webhook-id"))
    );
    for ts in [
        "",
        "abc",
        "-1795428000",
        "+1795428000",
        "01795428000",
        "1795428000.0",
        "1e9",
        "17954280000000000",
    ] {
        let mut h = full.clone();
        h.insert("webhook-timestamp", HeaderValue::from_str(ts).unwrap());
        let r = sw_verify(&h);
        if ts.is_empty() {
            assert_eq!(r, Err(VerifyError::MissingHeader("webhook-timestamp")));
        } else {
            assert_eq!(
                r,
                Err(VerifyError::MalformedHeader("webhook-timestamp")),
                "{ts:?}"
            );
        }
    }
}

#[test]
fn standard_webhooks_tolerance_boundaries() {
    let h = sw_headers(SW_SIG1);
    let v = |now, tol| verify(Scheme::StandardWebhooks, &[SEC1], &h, BODY, now, tol);
    assert_eq!(v(TS + 300, 300), Ok(()));
    assert_eq!(v(TS - 300, 300), Ok(()));
    assert_eq!(
        v(TS + 301, 300),
        Err(VerifyError::TimestampOutOfTolerance {
            timestamp: TS,
            now: TS + 301,
            tolerance_secs: 300
        })
    );
    assert!(matches!(
        v(TS - 301, 300),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    assert_eq!(v(TS, 0), Ok(()));
    assert!(v(TS + 1, 0).is_err());
    assert!(v(TS + 1, -5).is_err());
    assert!(v(i64::MIN, i64::MAX).is_err());
    assert!(v(i64::MAX, 300).is_err());
    // A wrong signature is reported as such even when the timestamp is stale.
    let bad = sw_headers(SW_SIG2);
    assert_eq!(
        verify(
            Scheme::StandardWebhooks,
            &[SEC1],
            &bad,
            BODY,
            TS + 10_000,
            300
        ),
        Err(VerifyError::SignatureMismatch)
    );
}

#[test]
fn hub_schemes_malformed_headers() {
    let hex256 = GH_SIG1.trim_start_matches("sha256=");
    let m = VerifyError::MalformedHeader("x-hub-signature-256");
    let cases: Vec<(String, Result<(), VerifyError>)> = vec![
        (GH_SIG1.into(), Ok(())),
        (format!(" {GH_SIG1} "), Ok(())),
        (format!("sha256={}", hex256.to_uppercase()), Ok(())),
        (
            "".into(),
            Err(VerifyError::MissingHeader("x-hub-signature-256")),
        ),
        (hex256.into(), Err(m.clone())),
        (format!("SHA256={hex256}"), Err(m.clone())),
        (format!("Sha256={hex256}"), Err(m.clone())),
        (format!("sha256:{hex256}"), Err(m.clone())),
        (format!("sha256= {hex256}"), Err(m.clone())),
        (format!("sha256={}", &hex256[..63]), Err(m.clone())),
        (format!("sha256={hex256}0"), Err(m.clone())),
        (format!("sha256={}zz", &hex256[..62]), Err(m.clone())),
        (format!("sha256={hex256},sha256={hex256}"), Err(m.clone())),
        (SHA1_SIG1.into(), Err(m.clone())),
        (format!("sha256={}", "x".repeat(5000)), Err(m.clone())),
        (
            format!("sha256={}", "0".repeat(64)),
            Err(VerifyError::SignatureMismatch),
        ),
    ];
    for (value, expected) in cases {
        let h = to_map(&[("x-hub-signature-256", &value)]);
        assert_eq!(
            verify(Scheme::GithubSha256, &[SEC1], &h, BODY, TS, 300),
            expected,
            "{value:?}"
        );
    }
    let hex1 = SHA1_SIG1.trim_start_matches("sha1=");
    let m = VerifyError::MalformedHeader("x-hub-signature");
    for (value, expected) in [
        (SHA1_SIG1.to_owned(), Ok(())),
        (format!("SHA1={hex1}"), Err(m.clone())),
        (format!("sha1={}", &hex1[..39]), Err(m.clone())),
        (hex1.to_owned(), Err(m.clone())),
        (GH_SIG1.to_owned(), Err(m.clone())),
    ] {
        let h = to_map(&[("x-hub-signature", &value)]);
        assert_eq!(
            verify(Scheme::HubSha1, &[SEC1], &h, BODY, TS, 300),
            expected,
            "{value:?}"
        );
    }
    assert_eq!(
        verify(Scheme::HubSha1, &[SEC1], &HeaderMap::new(), BODY, TS, 300),
        Err(VerifyError::MissingHeader("x-hub-signature"))
    );
}

#[test]
fn date_sha1_tolerance_and_malformed_dates() {
    let h = signed_map(Scheme::DateSha1, &[SEC1], &msg());
    let v = |h: &HeaderMap, now| verify(Scheme::DateSha1, &[SEC1], h, b"", now, 300);
    assert_eq!(v(&h, TS), Ok(()));
    assert_eq!(v(&h, TS + 300), Ok(()));
    assert_eq!(v(&h, TS - 300), Ok(()));
    assert!(matches!(
        v(&h, TS + 301),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    assert!(matches!(
        v(&h, TS - 301),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    // The exact date string is what is signed: an equivalent spelling does not verify.
    let mut h2 = h.clone();
    h2.insert(
        "x-hookwarden-auth-date",
        HeaderValue::from_static("2026-11-23T11:00:00+01:00"),
    );
    assert_eq!(v(&h2, TS), Err(VerifyError::SignatureMismatch));
    for bad in [
        "2026-11-23 10:00:00",
        "1795428000",
        "yesterday",
        "2026-13-23T10:00:00Z",
    ] {
        let mut h2 = h.clone();
        h2.insert("x-hookwarden-auth-date", HeaderValue::from_static(bad));
        assert_eq!(
            v(&h2, TS),
            Err(VerifyError::MalformedHeader("x-hookwarden-auth-date")),
            "{bad}"
        );
    }
    let mut h2 = h.clone();
    h2.remove("x-hookwarden-auth-date");
    assert_eq!(
        v(&h2, TS),
        Err(VerifyError::MissingHeader("x-hookwarden-auth-date"))
    );
    let mut h2 = h.clone();
    h2.insert(
        "x-hookwarden-auth-signature",
        HeaderValue::from_static("sha1=zz"),
    );
    assert_eq!(
        v(&h2, TS),
        Err(VerifyError::MalformedHeader("x-hookwarden-auth-signature"))
    );
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(VerifyError::NoSecrets.code(), "SECRET_MISSING");
    assert_eq!(VerifyError::InvalidSecret.code(), "SECRET_INVALID");
    assert_eq!(VerifyError::MissingHeader("x").code(), "SIGNATURE_MISSING");
    assert_eq!(
        VerifyError::MalformedHeader("x").code(),
        "SIGNATURE_MALFORMED"
    );
    assert_eq!(VerifyError::SignatureMismatch.code(), "SIGNATURE_INVALID");
    assert_eq!(
        VerifyError::TimestampOutOfTolerance {
            timestamp: 0,
            now: 0,
            tolerance_secs: 0
        }
        .code(),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
    assert_eq!(SignError::NoSecrets.code(), "SECRET_MISSING");
    assert_eq!(SignError::InvalidSecret.code(), "SECRET_INVALID");
    assert_eq!(SignError::InvalidMessageId.code(), "MESSAGE_ID_INVALID");
    assert_eq!(SignError::InvalidTimestamp.code(), "TIMESTAMP_INVALID");
}

#[test]
fn signed_values_are_valid_header_values() {
    let m = msg();
    for s in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        for (name, value) in sign(s, &[SEC1, SEC2], &m).unwrap() {
            assert_eq!(name, name.to_ascii_lowercase());
            HeaderName::from_static(name);
            HeaderValue::from_str(&value).unwrap();
        }
    }
}

/// `standard-webhooks-v1a`: ed25519 signatures of `{id}.{timestamp}.{body}`, verified with the
/// `whpk_` public key only; one entry per key; tampering, another key and a shared secret fail.
#[test]
fn v1a_signs_with_private_keys_and_verifies_with_public_ones() {
    let m = msg();
    let (k1, k2) = (
        crate::ed25519_private_key([7; 32]),
        crate::ed25519_private_key([8; 32]),
    );
    let (p1, p2) = (
        crate::ed25519_public_key(&k1).unwrap(),
        crate::ed25519_public_key(&k2).unwrap(),
    );
    assert!(p1.starts_with("whpk_") && p1 != p2);
    assert_eq!(crate::ed25519_public_key("whsec_abc"), None);
    let h = signed_map(Scheme::StandardWebhooksV1a, &[&k1, &k2], &m);
    let sig = h["webhook-signature"].to_str().unwrap();
    assert_eq!(sig.matches("v1a,").count(), 2, "{sig}");
    assert!(!sig.contains("v1,"));
    for p in [&p1, &p2] {
        verify(Scheme::StandardWebhooksV1a, &[p], &h, BODY, TS, 300).unwrap();
    }
    let other = crate::ed25519_public_key(&crate::ed25519_private_key([9; 32])).unwrap();
    assert!(verify(Scheme::StandardWebhooksV1a, &[&other], &h, BODY, TS, 300).is_err());
    assert!(verify(Scheme::StandardWebhooksV1a, &[&p1], &h, b"{}x", TS, 300).is_err());
    assert!(
        verify(
            Scheme::StandardWebhooksV1a,
            &[&p1],
            &h,
            BODY,
            TS + 1000,
            300
        )
        .is_err()
    );
    // v1a verifies with public keys only.
    assert!(verify(Scheme::StandardWebhooksV1a, &[SEC1], &h, BODY, TS, 300).is_err());
    // A private key is not a shared secret, and a shared secret cannot sign v1a.
    assert!(sign(Scheme::StandardWebhooks, &[&k1], &m).is_err());
    assert!(sign(Scheme::StandardWebhooksV1a, &[SEC1], &m).is_err());
    assert!(sign(Scheme::StandardWebhooksV1a, &[], &m).is_err());
    // Deterministic (ed25519): the same message and key sign the same.
    assert_eq!(h, signed_map(Scheme::StandardWebhooksV1a, &[&k1, &k2], &m));
}
