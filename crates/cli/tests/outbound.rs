//! Outbound delivery against the real binary over real HTTP on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::inproc::{self, InProcess};
use common::*;
use hookwarden_signatures::Scheme;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn verify(scheme: Scheme, secrets: &[&str], c: &Captured) -> Result<(), String> {
    hookwarden_signatures::verify(scheme, secrets, &c.headers, &c.body, unix_now(), 300)
        .map_err(|e| e.code().to_string())
}

async fn start(extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &test_config(extra), None);
    (dir, server)
}

#[tokio::test]
async fn first_start_prints_key_once_and_keys_create_works_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &test_config(""), None);
    assert!(s.key.starts_with("hwk_"));
    let api = s.api();
    let (st, _) = api.get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);

    // A second key from the CLI, usable at once by the running server.
    let out = std::process::Command::new(BIN)
        .args(["keys", "create", "--config"])
        .arg(&s.config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    let key2 = stdout.trim().to_string();
    assert!(key2.starts_with("hwk_") && key2 != s.key);
    let (st, _) = api.with_key(&key2).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);

    // A second serve on the same data directory is refused.
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&s.config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another hookwarden process"));

    // SIGTERM exits 0; the next start prints no key.
    assert_eq!(s.terminate(), Some(0));
    drop(s);
    let s2 = Server::start_in(dir.path(), &test_config(""), Some(key2.clone()));
    assert!(
        !s2.stdout_lines.iter().any(|l| l.contains("admin API key")),
        "{:?}",
        s2.stdout_lines
    );
    let (st, _) = s2.api().get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn api_requires_a_valid_key_and_answers_json_errors() {
    let (_d, s) = start("[server]\nmax_body_bytes = 65536\n").await;
    let api = s.api();
    let (st, _, body) = api.raw("GET", "/api/v1/endpoints", &[], vec![]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "UNAUTHORIZED");
    let (st, v) = api.with_key("hwk_wrong").get("/api/v1/endpoints").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_API_KEY"))
    );
    for bad in ["Basic abc", "Bearer", "Bearer ", "bearer  "] {
        let (st, _, _) = api
            .raw(
                "GET",
                "/api/v1/endpoints",
                &[("authorization", bad)],
                vec![],
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Health is public.
    let (st, _, _) = api.raw("GET", "/health", &[], vec![]).await;
    assert_eq!(st, StatusCode::OK);
    // Metrics need a key by default.
    let (st, _, _) = api.raw("GET", "/metrics", &[], vec![]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = api.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v.as_str().unwrap().contains("hookwarden_deliveries"));

    let auth = format!("Bearer {}", s.key);
    // Malformed JSON, wrong content type, unknown fields, huge bodies: clear 4xx, JSON errors.
    let (st, _, body) = api
        .raw(
            "POST",
            "/api/v1/endpoints",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "INVALID_JSON"
    );
    let (st, _, _) = api
        .raw(
            "POST",
            "/api/v1/endpoints",
            &[("authorization", &auth)],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (st, v) = api
        .post(
            "/api/v1/endpoints",
            json!({"url": "http://127.0.0.1:9/x", "urll": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let big = vec![b' '; 100_000];
    let (st, _, body) = api
        .raw(
            "POST",
            "/api/v1/events",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            big,
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "PAYLOAD_TOO_LARGE"
    );
    let (st, v) = api.get("/api/v1/nope").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (st, v) = api.call("PUT", "/api/v1/events", None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED"))
    );
    let (st, v) = api.get("/api/v1/endpoints?limit=0").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_QUERY"))
    );
    let (st, _) = api.get("/api/v1/deliveries?status=bogus").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Nothing crashed.
    let (st, _, _) = api.raw("GET", "/health", &[], vec![]).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn endpoint_crud_validation_and_pagination() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (st, v) = api
        .post(
            "/api/v1/endpoints",
            json!({
                "url": rx.url("/hook"), "description": "billing", "event_types": ["invoice.paid", "invoice.paid"],
                "headers": {"X-Customer-Waf": "let-me-in", "Authorization": "Bearer receiver-token-123"},
                "developer_payload": "dp-secret", "signature_schemes": ["standard-webhooks", "hub-sha1"],
                "rate_limit_per_second": 100
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ep_"));
    let secret = v["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() >= 6 + 32);
    assert_eq!(v["event_types"], json!(["invoice.paid"]));
    assert_eq!(v["developer_payload"], "dp-secret");

    let (st, got) = api.get(&format!("/api/v1/endpoints/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        got.get("secret").is_none(),
        "the secret is shown only at creation"
    );
    assert!(got.get("developer_payload").is_none());
    assert_eq!(got["has_developer_payload"], true);
    assert_eq!(got["headers"]["x-customer-waf"], "let-me-in");
    assert_eq!(got["headers"]["authorization"], "****-123");

    let (st, v) = api.call("PATCH", &format!("/api/v1/endpoints/{id}"), Some(json!({"description": "changed", "rate_limit_per_second": null, "developer_payload": null}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "changed");
    assert_eq!(v["rate_limit_per_second"], Value::Null);
    assert_eq!(v["has_developer_payload"], false);

    for (body, code) in [
        (
            json!({"url": "ftp://127.0.0.1/x"}),
            "URL_SCHEME_NOT_ALLOWED",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1/x"}),
            "URL_USERINFO_NOT_ALLOWED",
        ),
        (
            json!({"url": rx.url("/"), "signature_schemes": ["md5"]}),
            "INVALID_SIGNATURE_SCHEME",
        ),
        (
            json!({"url": rx.url("/"), "headers": {"Content-Length": "1"}}),
            "RESERVED_HEADER",
        ),
        (
            json!({"url": rx.url("/"), "headers": {"X-A": "a\r\nb: c"}}),
            "INVALID_HEADER",
        ),
        (
            json!({"url": rx.url("/"), "event_types": ["has space"]}),
            "INVALID_EVENT_TYPE",
        ),
        (
            json!({"url": rx.url("/"), "secret": "whsec_short"}),
            "INVALID_SECRET",
        ),
        (json!({"url": "http://10.0.0.1/x"}), "URL_ADDRESS_DENIED"),
        (
            json!({"url": "http://169.254.169.254/latest"}),
            "URL_ADDRESS_DENIED",
        ),
    ] {
        let (st, v) = api.post("/api/v1/endpoints", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {v}");
        assert_eq!(v["error"]["code"], code, "{body} -> {v}");
    }

    for i in 0..4 {
        api.endpoint(json!({"url": rx.url(&format!("/{i}"))})).await;
    }
    let (_, p1) = api.get("/api/v1/endpoints?limit=3").await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    assert_eq!(p1["has_more"], true);
    let before = p1["next_before"].as_str().unwrap();
    let (_, p2) = api
        .get(&format!("/api/v1/endpoints?limit=3&before={before}"))
        .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 2);
    assert_eq!(p2["has_more"], false);

    let (st, _) = api
        .call("DELETE", &format!("/api/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = api.get(&format!("/api/v1/endpoints/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn loopback_is_refused_without_operator_allow_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        dir.path(),
        "[storage]\nsqlite_synchronous = \"normal\"\n",
        None,
    );
    let api = s.api();
    for url in [
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://2130706433/x",
        "https://0x7f.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://10.1.2.3/",
    ] {
        let (st, v) = api.post("/api/v1/endpoints", json!({"url": url})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert_eq!(v["error"]["code"], "URL_ADDRESS_DENIED", "{url}: {v}");
        // The refusal says what to change when such a receiver is wanted on purpose.
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("egress.allow_ranges"), "{url}: {msg}");
    }
    let (st, v) = api
        .post("/api/v1/endpoints", json!({"url": "http://example.com/x"}))
        .await;
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("egress.allow_http = true"), "{msg}");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("URL_SCHEME_NOT_ALLOWED")
        )
    );
}

#[tokio::test]
async fn delivers_signed_with_every_scheme_headers_and_developer_payload() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (ep, secret) = api
        .endpoint(json!({
            "url": rx.url("/hook"),
            "headers": {"X-Customer-Waf": "let-me-in"},
            "developer_payload": "only-we-know",
            "signature_schemes": ["standard-webhooks", "github-sha256", "hub-sha1", "date-sha1"],
        }))
        .await;
    let evt = api
        .event(
            "invoice.paid",
            json!({"amount": 4200, "currency": "EUR", "note": "ünïcode \"quoted\""}),
        )
        .await;
    let got = rx.wait_count(1, 20).await;
    let c = &got[0];
    // The HMAC schemes (v1a: tests/asymmetric.rs).
    for scheme in Scheme::ALL.into_iter().filter(|s| !s.is_asymmetric()) {
        verify(scheme, &[&secret], c).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        assert!(
            verify(scheme, &["whsec_dGhpcyBpcyB0aGUgd3Jvbmcgc2VjcmV0ISE="], c).is_err(),
            "{scheme:?} accepts a wrong secret"
        );
    }
    assert_eq!(c.headers["webhook-id"], evt.as_str());
    assert_eq!(c.headers["x-customer-waf"], "let-me-in");
    assert_eq!(c.headers["content-type"], "application/json");
    assert_eq!(c.headers["x-hookwarden-event-type"], "invoice.paid");
    assert_eq!(c.headers["x-hookwarden-attempt"], "1");
    let body: Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(body["id"], evt.as_str());
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"]["amount"], 4200);
    assert_eq!(body["data"]["note"], "ünïcode \"quoted\"");
    assert_eq!(body["developer_payload"], "only-we-know");

    // The delivery and its attempt are recorded with what happened.
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 10, |v| {
            v["data"][0]["status"] == "succeeded"
        })
        .await;
    let dlv = v["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["data"][0]["endpoint_id"], ep.as_str());
    let (_, att) = api.get(&format!("/api/v1/deliveries/{dlv}/attempts")).await;
    let a = &att["data"][0];
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["response_body"], "ok");
    assert_eq!(a["outcome"], "succeeded");
    assert!(
        a["source_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{a}"
    );
    assert_eq!(a["remote_address"], rx.addr.to_string());
    let (_, e) = api.get(&format!("/api/v1/events/{evt}")).await;
    assert_eq!(e["payload"]["amount"], 4200);

    // Only subscribed endpoints get an event.
    let rx2 = Receiver::start().await;
    api.endpoint(json!({"url": rx2.url("/only-users"), "event_types": ["user.created"]}))
        .await;
    api.event("invoice.paid", json!({})).await;
    api.event("user.created", json!({})).await;
    rx.wait_count(3, 20).await;
    let got2 = rx2.wait_count(1, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx2.count(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&got2[0].body).unwrap()["type"],
        "user.created"
    );
}

#[tokio::test]
async fn standard_webhooks_deliveries_verify_with_the_pypi_library() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (ep, secret) = api.endpoint(json!({"url": rx.url("/hook")})).await;
    // Rotate so the delivery carries two signatures; the library must accept either secret.
    let (_, rot) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/secret/rotate"),
            json!({"grace_period_seconds": 600}),
        )
        .await;
    let new_secret = rot["secret"].as_str().unwrap().to_string();
    api.event("order.created", json!({"order": 17, "items": ["a", "b"]}))
        .await;
    let c = rx.wait_count(1, 20).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body");
    std::fs::write(&body_path, &c.body).unwrap();
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    Value::String(c.headers[*h].to_str().unwrap().to_string()),
                )
            })
            .collect();
    assert_eq!(
        c.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, body_path, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = open(body_path, "rb").read()
try:
    Webhook(secret).verify(body, headers)
    print("valid")
except Exception as e:
    print("invalid", type(e).__name__, e)
"#;
    let run = |secret: &str, body: &std::path::Path| {
        let out = std::process::Command::new(interop_python())
            .args(["-c", script, secret])
            .arg(body)
            .arg(Value::Object(headers.clone()).to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&secret, &body_path).trim(), "valid");
    assert_eq!(run(&new_secret, &body_path).trim(), "valid");
    let tampered = dir.path().join("tampered");
    let mut t = c.body.to_vec();
    t[5] ^= 1;
    std::fs::write(&tampered, t).unwrap();
    assert!(
        run(&secret, &tampered).starts_with("invalid"),
        "tampered body must fail"
    );
    assert!(run("whsec_dGhpcyBpcyB0aGUgd3Jvbmcgc2VjcmV0ISE=", &body_path).starts_with("invalid"));
}

/// In process, on a manual clock: the grace period is crossed by setting the time, and its
/// boundary shows (both secrets sign just before its end, only the new one just after).
#[tokio::test]
async fn secret_rotation_signs_with_both_secrets_during_grace() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (ep, old) = api.endpoint(json!({"url": rx.url("/hook")})).await;
    let (st, rot) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/secret/rotate"),
            json!({"grace_period_seconds": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rot}");
    let new = rot["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    api.event("a", json!({})).await;
    let c = rx.wait_count(1, 20).await.remove(0);
    verify(Scheme::StandardWebhooks, &[&old], &c).unwrap();
    verify(Scheme::StandardWebhooks, &[&new], &c).unwrap();
    // Just before the end of the grace period both still sign.
    s.advance_ms(1_900);
    api.event("a", json!({})).await;
    let c = rx.wait_count(2, 20).await.remove(1);
    verify(Scheme::StandardWebhooks, &[&old], &c).unwrap();
    verify(Scheme::StandardWebhooks, &[&new], &c).unwrap();
    // After the grace period only the new secret signs.
    s.advance_ms(200);
    api.event("b", json!({})).await;
    let c = rx.wait_count(3, 20).await.remove(2);
    verify(Scheme::StandardWebhooks, &[&new], &c).unwrap();
    assert!(verify(Scheme::StandardWebhooks, &[&old], &c).is_err());
    // Bounds and unknown endpoints.
    let (st, _) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/secret/rotate"),
            json!({"grace_period_seconds": 99999999}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = api
        .post("/api/v1/endpoints/ep_nope/secret/rotate", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.shutdown().await;
}

/// A key names one request: the same event again (whitespace and member order aside) returns
/// the first; another event under the same key is refused, as payment APIs do.
#[tokio::test]
async fn idempotency_key_returns_the_first_event() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    api.endpoint(json!({"url": rx.url("/hook")})).await;
    let (st, a) = api
        .post(
            "/api/v1/events",
            json!({"type": "t", "payload": {"n": 1}, "idempotency_key": "order-17"}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(a["deliveries"], 1);
    // The same event, written differently: the first one.
    let auth = format!("Bearer {}", s.key);
    let (st, _, body) = api
        .raw(
            "POST",
            "/api/v1/events",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            br#"{"idempotency_key":"order-17","payload":{ "n" : 1 },"type":"t"}"#.to_vec(),
        )
        .await;
    let b: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["id"], a["id"]);
    assert_eq!(b["duplicate"], true);
    // Another payload, or another type, under the same key: refused, nothing created.
    for other in [
        json!({"type": "t", "payload": {"n": 2}, "idempotency_key": "order-17"}),
        json!({"type": "u", "payload": {"n": 1}, "idempotency_key": "order-17"}),
    ] {
        let (st, v) = api.post("/api/v1/events", other).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    }
    rx.wait_count(1, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1, "a duplicate must not create deliveries");
}

/// With `had` requests received (the last one answered with a retry `delay_ms` later on the
/// clock): nothing comes 100 ms before the delay is over, the retry once it is 100 ms past.
async fn retried_after(s: &InProcess, rx: &Receiver, had: usize, delay_ms: u64) -> Vec<Captured> {
    tokio::time::sleep(inproc::NOTICE).await;
    s.advance_ms(delay_ms - 100);
    tokio::time::sleep(inproc::NOTICE).await;
    assert_eq!(rx.count(), had, "retried before its {delay_ms} ms delay");
    s.advance_ms(200);
    rx.wait_count(had + 1, 30).await
}

/// In process, on a manual clock: the backoff and `Retry-After` delays pass on the clock, and
/// each retry comes neither before its delay nor later than the poll after it.
#[tokio::test]
async fn retries_with_backoff_then_succeeds_and_final_4xx_stops() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let rx = Receiver::start().await;
    rx.push(Reply::status(500));
    rx.push(Reply {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        body: "slow down".into(),
        delay: Duration::ZERO,
    });
    let (_ep, _) = api.endpoint(json!({"url": rx.url("/hook")})).await;
    let evt = api.event("t", json!({})).await;
    rx.wait_count(1, 30).await;
    // 1 s backoff after the 500, then Retry-After: 2 honoured after the 429.
    retried_after(&s, &rx, 1, 1_000).await;
    let got = retried_after(&s, &rx, 2, 2_000).await;
    assert_eq!(
        got[0].headers["webhook-id"], got[2].headers["webhook-id"],
        "webhook-id is stable across retries"
    );
    assert_eq!(got[2].headers["x-hookwarden-attempt"], "3");
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 10, |v| {
            v["data"][0]["status"] == "succeeded"
        })
        .await;
    let dlv = v["data"][0]["id"].as_str().unwrap();
    let (_, att) = api.get(&format!("/api/v1/deliveries/{dlv}/attempts")).await;
    let outcomes: Vec<_> = att["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["status_code"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (500, "retrying".into()),
            (429, "retrying".into()),
            (200, "succeeded".into())
        ]
    );
    assert_eq!(att["data"][1]["response_body"], "slow down");

    // A 400 is final: one attempt, status failed. Then a manual retry re-queues it.
    rx.push(Reply::status(400));
    let evt2 = api.event("t", json!({})).await;
    let v = api
        .wait_for(&format!("/api/v1/events/{evt2}/deliveries"), 10, |v| {
            v["data"][0]["status"] == "failed"
        })
        .await;
    assert_eq!(v["data"][0]["attempt_count"], 1);
    assert_eq!(v["data"][0]["last_status_code"], 400);
    let dlv2 = v["data"][0]["id"].as_str().unwrap().to_string();
    let (st, _) = api
        .post(&format!("/api/v1/deliveries/{dlv2}/retry"), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    api.wait_for(&format!("/api/v1/deliveries/{dlv2}"), 10, |v| {
        v["status"] == "succeeded"
    })
    .await;
    let (st, _) = api
        .post("/api/v1/deliveries/dlv_nope/retry", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // With its endpoint disabled, a retry says why it cannot go out instead of a silent 202.
    let (_, d) = api.get(&format!("/api/v1/deliveries/{dlv2}")).await;
    let ep = d["endpoint_id"].as_str().unwrap().to_string();
    let (st, _) = api
        .post(&format!("/api/v1/endpoints/{ep}/disable"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = api
        .post(&format!("/api/v1/deliveries/{dlv2}/retry"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "ENDPOINT_DISABLED");
    let (_, after) = api.get(&format!("/api/v1/deliveries/{dlv2}")).await;
    assert_eq!(
        after["status"], "succeeded",
        "a refused retry changes nothing"
    );
    s.shutdown().await;
}

/// An endpoint's own retry schedule: each retry comes exactly its delay later (no jitter), the
/// delivery fails for good after one attempt more than the schedule has, and the schedule is
/// validated, shown, changed and removed through the API (on SQLite here; the conformance suite
/// stores it on both backends).
#[tokio::test]
async fn a_per_endpoint_retry_schedule_replaces_the_backoff() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    for bad in [
        json!([0]),
        json!([2_592_001]),
        json!(vec![1; 51]),
        json!("5"),
    ] {
        let (st, v) = api
            .post(
                "/api/v1/endpoints",
                json!({"url": rx.url("/hook"), "retry_schedule": bad}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (ep, _) = api
        .endpoint(json!({"url": rx.url("/hook"), "retry_schedule": [3, 30]}))
        .await;
    let (_, v) = api.get(&format!("/api/v1/endpoints/{ep}")).await;
    assert_eq!(v["retry_schedule"], json!([3, 30]));
    let evt = api.event("t", json!({})).await;
    rx.wait_count(1, 30).await;
    retried_after(&s, &rx, 1, 3_000).await;
    retried_after(&s, &rx, 2, 30_000).await;
    // Three attempts: failed for good, although [delivery] allows many more.
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 10, |v| {
            v["data"][0]["status"] == "failed"
        })
        .await;
    assert_eq!(v["data"][0]["attempt_count"], 3);
    s.advance_ms(3_600_000);
    tokio::time::sleep(inproc::NOTICE).await;
    assert_eq!(rx.count(), 3);
    // Removed: the deployment's backoff again (test_config: 1 s, many attempts).
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{ep}"),
            Some(json!({"retry_schedule": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["retry_schedule"], json!([]));
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{ep}"),
            Some(json!({"retry_schedule": [0]})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("VALIDATION_FAILED"))
    );
    api.event("t", json!({})).await;
    rx.wait_count(4, 30).await;
    retried_after(&s, &rx, 4, 1_000).await;
    s.shutdown().await;
}

/// Subscriptions with a trailing wildcard over real HTTP: `invoice.*` gets every type under
/// `invoice.` at any depth, and nothing else; `*` is every type; a wildcard anywhere else is
/// refused.
#[tokio::test]
async fn wildcard_subscriptions_route_by_prefix() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (_ep, _) = api
        .endpoint(json!({"url": rx.url("/inv"), "event_types": ["invoice.*"]}))
        .await;
    for bad in ["invoice*", "*.paid", "a.*.b"] {
        let (st, v) = api
            .post(
                "/api/v1/endpoints",
                json!({"url": rx.url("/x"), "event_types": [bad]}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (st, v) = api
        .post(
            "/api/v1/endpoints",
            json!({"url": rx.url("/all"), "event_types": ["*"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["event_types"], json!([]));
    let (st, v) = api
        .post(
            "/api/v1/events",
            json!({"type": "invoice.*", "payload": {}}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an event type has no wildcard: {v}"
    );
    for (ty, deliveries) in [
        ("invoice.paid", 2),
        ("invoice.paid.late", 2),
        ("invoice", 1),
        ("user.created", 1),
    ] {
        let (st, v) = api
            .post("/api/v1/events", json!({"type": ty, "payload": {}}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["deliveries"], deliveries, "{ty}");
    }
    let got = rx.wait_count(6, 20).await;
    let to_inv: Vec<String> = got
        .iter()
        .filter(|c| {
            c.headers["x-hookwarden-event-type"] != "user.created"
                && c.headers["x-hookwarden-event-type"] != "invoice"
        })
        .map(|c| {
            c.headers["x-hookwarden-event-type"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(to_inv.len(), 4);
}

#[tokio::test]
async fn attempts_are_bounded_and_errors_classified() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(
        "",
        "max_attempts = 2\nmax_response_body_bytes = 8192\nstored_response_bytes = 4096",
    )
    .replace("request_timeout_secs = 5", "request_timeout_secs = 1");
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    // A receiver that always answers 503 with a 10 KiB body: 2 attempts, then failed, body cut at 4 KiB.
    let rx = Receiver::start().await;
    rx.set_default(Reply {
        status: 503,
        headers: vec![],
        body: "x".repeat(10_000),
        delay: Duration::ZERO,
    });
    api.endpoint(json!({"url": rx.url("/hook"), "event_types": ["t"]}))
        .await;
    let evt = api.event("t", json!({})).await;
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), 20, |v| {
            v["data"][0]["status"] == "failed"
        })
        .await;
    assert_eq!(v["data"][0]["attempt_count"], 2);
    let dlv = v["data"][0]["id"].as_str().unwrap();
    let (_, att) = api.get(&format!("/api/v1/deliveries/{dlv}/attempts")).await;
    let a0 = &att["data"][0];
    assert_eq!(a0["response_body"].as_str().unwrap().len(), 4096);
    assert_eq!(a0["response_truncated"], true);
    assert_eq!(a0["error_class"], "http_status");

    // A slow receiver times out; a closed port is a connect error. Both retried, then failed.
    let slow = Receiver::start().await;
    slow.set_default(Reply {
        status: 200,
        headers: vec![],
        body: String::new(),
        delay: Duration::from_secs(3),
    });
    let (slow_ep, _) = api
        .endpoint(json!({"url": slow.url("/slow"), "event_types": ["slow"]}))
        .await;
    let _ = slow_ep;
    let evt = api.event("slow", json!({})).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    api.endpoint(
        json!({"url": format!("http://127.0.0.1:{closed_port}/x"), "event_types": ["closed"]}),
    )
    .await;
    let evt2 = api.event("closed", json!({})).await;
    for (e, class) in [(&evt, "timeout"), (&evt2, "connect")] {
        let v = api
            .wait_for(&format!("/api/v1/events/{e}/deliveries"), 20, |v| {
                v["data"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["status"] == "failed"))
            })
            .await;
        let d = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["status"] == "failed")
            .unwrap();
        let (_, att) = api
            .get(&format!(
                "/api/v1/deliveries/{}/attempts",
                d["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(att["data"][0]["error_class"], class, "{att}");
        assert_eq!(att["data"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (_d, s) = start("").await;
    let api = s.api();
    let target = Receiver::start().await;
    let rx = Receiver::start().await;
    rx.set_default(Reply {
        status: 302,
        headers: vec![("location".into(), target.url("/elsewhere"))],
        body: String::new(),
        delay: Duration::ZERO,
    });
    api.endpoint(json!({"url": rx.url("/hook")})).await;
    let evt = api.event("t", json!({})).await;
    api.wait_for(&format!("/api/v1/events/{evt}/deliveries"), 10, |v| {
        v["data"][0]["status"] == "failed"
    })
    .await;
    assert_eq!(target.count(), 0);
}

#[tokio::test]
async fn circuit_breaker_disables_emits_event_and_resumes_on_enable() {
    let (_d, s) = start("[circuit_breaker]\nfailure_threshold = 3\nmin_failing_secs = 0\n").await;
    let api = s.api();
    let bad = Receiver::start().await;
    bad.set_default(Reply::status(500));
    let ops = Receiver::start().await;
    let (bad_ep, _) = api
        .endpoint(json!({"url": bad.url("/bad"), "event_types": ["job.done"]}))
        .await;
    api.endpoint(json!({"url": ops.url("/ops"), "event_types": ["endpoint.disabled"]}))
        .await;
    for i in 0..3 {
        api.event("job.done", json!({"i": i})).await;
    }
    let got = ops.wait_count(1, 20).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "endpoint.disabled");
    assert_eq!(body["data"]["endpoint_id"], bad_ep.as_str());
    assert_eq!(body["data"]["reason"], "circuit_breaker");
    let (_, ep) = api.get(&format!("/api/v1/endpoints/{bad_ep}")).await;
    assert_eq!(ep["enabled"], false);
    assert_eq!(ep["disabled_reason"], "circuit_breaker");
    // Pending deliveries wait while disabled (new ones too).
    api.event("job.done", json!({"i": 99})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = bad.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        bad.count(),
        before,
        "a disabled endpoint must not be called"
    );
    let (_, paused) = api
        .get(&format!(
            "/api/v1/endpoints/{bad_ep}/deliveries?status=paused"
        ))
        .await;
    assert_eq!(paused["data"].as_array().unwrap().len(), 4, "{paused}");
    // Fixed and re-enabled: everything that waited is delivered.
    bad.set_default(Reply::status(200));
    let (st, ep) = api
        .post(&format!("/api/v1/endpoints/{bad_ep}/enable"), json!({}))
        .await;
    assert_eq!((st, ep["enabled"].as_bool()), (StatusCode::OK, Some(true)));
    api.wait_for(
        &format!("/api/v1/endpoints/{bad_ep}/deliveries?status=succeeded"),
        20,
        |v| v["data"].as_array().is_some_and(|d| d.len() == 4),
    )
    .await;
}

#[tokio::test]
async fn rate_limit_spaces_deliveries_without_dropping_any() {
    let (_d, s) = start("").await;
    let api = s.api();
    let rx = Receiver::start().await;
    api.endpoint(json!({"url": rx.url("/hook"), "rate_limit_per_second": 5}))
        .await;
    let t0 = Instant::now();
    for i in 0..20 {
        api.event("t", json!({"i": i})).await;
    }
    let got = rx.wait_count(20, 30).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(3500),
        "20 at 5/s took {:?}",
        t0.elapsed()
    );
    let mut times: Vec<_> = got.iter().map(|c| c.at).collect();
    times.sort();
    for (i, t) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|x| **x < *t + Duration::from_secs(1))
            .count();
        assert!(n <= 6, "{n} deliveries within one second at 5/s");
    }
    let mut ids: Vec<_> = got
        .iter()
        .map(|c| {
            serde_json::from_slice::<Value>(&c.body).unwrap()["data"]["i"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn killed_mid_burst_then_restarted_delivers_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config("");
    let mut s = Server::start_in(dir.path(), &cfg, None);
    let key = s.key.clone();
    let api = s.api();
    let rx = Receiver::start().await;
    // A slow receiver keeps many deliveries in flight (received, not yet acknowledged) when the
    // process dies: those must be delivered again after the restart.
    rx.set_default(Reply {
        status: 200,
        headers: vec![],
        body: String::new(),
        delay: Duration::from_millis(400),
    });
    api.endpoint(json!({"url": rx.url("/hook")})).await;
    let total = 600;
    let mut accepted = Vec::new();
    for i in 0..total {
        let (st, v) = api
            .post("/api/v1/events", json!({"type": "t", "payload": {"i": i}}))
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
        accepted.push(v["id"].as_str().unwrap().to_string());
        if i == total / 2 {
            // Mid-burst: make sure some deliveries are under way, then SIGKILL.
            while rx.count() < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s.kill9();
            break;
        }
    }
    let acked_at_kill = rx.acked.load(std::sync::atomic::Ordering::SeqCst);
    // Requests the killed process had already written still reach the receiver after the kill
    // (the kernel sends buffered data before closing): wait until arrivals settle, so every
    // delivery the killed process started is counted as in flight.
    let mut received_at_kill = rx.count();
    let settle = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = std::mem::replace(&mut received_at_kill, rx.count());
        if n == received_at_kill || Instant::now() > settle {
            break;
        }
    }
    assert!(
        acked_at_kill < received_at_kill,
        "the kill must interrupt deliveries in flight"
    );
    // What the killed process had recorded as delivered: everything else it had sent was in
    // flight and may legitimately be delivered twice (at-least-once).
    let recorded = {
        use hookwarden_store::Store;
        let store = hookwarden_store::sqlite::SqliteStore::open(
            &dir.path().join("data/hookwarden.db"),
            Default::default(),
        )
        .unwrap();
        let c = store
            .delivery_counts(hookwarden_store::now_millis())
            .await
            .unwrap();
        store.close();
        c.succeeded as usize
    };
    let in_flight = received_at_kill - recorded;
    let s2 = Server::start_in(dir.path(), &cfg, Some(key));
    let api2 = s2.api();
    for i in accepted.len()..total {
        let id = api2.event("t", json!({"i": i})).await;
        accepted.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = rx
            .all()
            .iter()
            .map(|c| c.headers["webhook-id"].to_str().unwrap().to_string())
            .collect();
        let missing = accepted.iter().filter(|id| !got.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted events never delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dups = rx.count() - total;
    eprintln!(
        "crash test: {total} events; at the kill {received_at_kill} received, {acked_at_kill} acknowledged, {recorded} recorded, {in_flight} in flight; {dups} duplicates"
    );
    assert!(
        dups <= in_flight,
        "duplicates ({dups}) beyond the deliveries in flight at the kill ({in_flight})"
    );
    let stats = api2
        .wait_for("/api/v1/stats", 30, |v| v["deliveries"]["pending"] == 0)
        .await;
    assert_eq!(
        stats["deliveries"]["succeeded"].as_i64().unwrap() as usize,
        total,
        "{stats}"
    );
}
