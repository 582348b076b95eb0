//! `standard-webhooks-v1a` (ed25519) over real HTTP on 127.0.0.1: deliveries verified by
//! independent implementations (PyNaCl from PyPI and Node's `crypto`) over exactly what the
//! Standard Webhooks specification signs (`{id}.{timestamp}.{body}`), and by Hookwarden's own
//! inbound `standard-webhooks` preset holding only the public key; rotation; the probe.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::inproc::InProcess;
use common::*;
use hookwarden_signatures::Scheme;
use hyper::StatusCode;
use serde_json::json;
use std::process::Command;

fn v1a_entries(c: &Captured) -> Vec<String> {
    c.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .filter_map(|e| e.strip_prefix("v1a,"))
        .map(str::to_owned)
        .collect()
}

fn signed_content(c: &Captured) -> String {
    format!(
        "{}.{}.{}",
        c.headers["webhook-id"].to_str().unwrap(),
        c.headers["webhook-timestamp"].to_str().unwrap(),
        String::from_utf8(c.body.to_vec()).unwrap()
    )
}

/// PyNaCl verifies `sig` (base64) over `content` with the `whpk_` key.
fn pynacl_verifies(public_key: &str, content: &str, sig: &str) -> bool {
    let script = r#"
import base64, os, sys
from nacl.signing import VerifyKey
from nacl.exceptions import BadSignatureError
key = VerifyKey(base64.b64decode(os.environ["PK"].removeprefix("whpk_")))
try:
    key.verify(os.environ["CONTENT"].encode(), base64.b64decode(os.environ["SIG"]))
    print("valid")
except BadSignatureError:
    print("invalid")
"#;
    let out = Command::new(interop_python())
        .args(["-c", script])
        .env("PK", public_key)
        .env("CONTENT", content)
        .env("SIG", sig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim() == "valid"
}

/// Node's `crypto.verify` (ed25519) over `content` with the `whpk_` key.
fn node_verifies(public_key: &str, content: &str, sig: &str) -> bool {
    let script = r#"
const crypto = require("crypto");
const raw = Buffer.from(process.env.PK.replace(/^whpk_/, ""), "base64");
const key = crypto.createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]), format: "der", type: "spki" });
const ok = crypto.verify(null, Buffer.from(process.env.CONTENT), key, Buffer.from(process.env.SIG, "base64"));
console.log(ok ? "valid" : "invalid");
"#;
    let out = Command::new("node")
        .args(["-e", script])
        .env("PK", public_key)
        .env("CONTENT", content)
        .env("SIG", sig)
        .output()
        .expect("node is required (the interop tests use it): run .ci/setup-interop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim() == "valid"
}

#[tokio::test]
async fn v1a_deliveries_verify_with_independent_implementations_and_rotate() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let rx = Receiver::start().await;
    let (st, created) = api
        .post(
            "/api/v1/endpoints",
            json!({"url": rx.url("/hook"), "signature_schemes": ["standard-webhooks", "standard-webhooks-v1a"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let ep = created["id"].as_str().unwrap().to_string();
    let pk = created["public_key"].as_str().unwrap().to_string();
    let whsec = created["secret"].as_str().unwrap().to_string();
    assert!(pk.starts_with("whpk_"), "{created}");
    assert!(
        !created.to_string().contains("whsk_"),
        "the private key never leaves"
    );
    let (_, keys) = api
        .get(&format!("/api/v1/endpoints/{ep}/public-keys"))
        .await;
    assert_eq!(keys["data"][0]["public_key"], pk.as_str());
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);

    api.event("invoice.paid", json!({"amount": 42, "note": "ünïcode"}))
        .await;
    let got = rx.wait_count(1, 30).await;
    let c = &got[0];
    // One header with the v1 and the v1a entries.
    let entries = v1a_entries(c);
    assert_eq!(entries.len(), 1, "{:?}", c.headers);
    assert!(
        c.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .contains("v1,")
    );
    let content = signed_content(c);
    assert!(pynacl_verifies(&pk, &content, &entries[0]), "PyNaCl");
    assert!(node_verifies(&pk, &content, &entries[0]), "Node crypto");
    // Anything else does not verify.
    assert!(!pynacl_verifies(&pk, &format!("{content} "), &entries[0]));
    assert!(!node_verifies(
        &pk,
        &content.replace("42", "43"),
        &entries[0]
    ));
    let now = c.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    hookwarden_signatures::verify(
        Scheme::StandardWebhooksV1a,
        &[&pk],
        &c.headers,
        &c.body,
        now,
        300,
    )
    .unwrap();
    hookwarden_signatures::verify(
        Scheme::StandardWebhooks,
        &[&whsec],
        &c.headers,
        &c.body,
        now,
        300,
    )
    .unwrap();
    // v1a verifies with public keys only: the HMAC secret is refused as a v1a key.
    assert!(
        hookwarden_signatures::verify(
            Scheme::StandardWebhooksV1a,
            &[&whsec],
            &c.headers,
            &c.body,
            now,
            300
        )
        .is_err()
    );

    // Hookwarden's inbound standard-webhooks preset, holding only the public key, accepts the
    // delivery as it arrived, and refuses it with a byte changed.
    let (st, src) = api
        .post(
            "/api/v1/sources",
            json!({"name": "v1a", "verification": {"type": "standard-webhooks", "secret": pk}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{src}");
    let url = src["url"].as_str().unwrap();
    let path = &url[url.find("/in/").unwrap()..];
    let fwd: Vec<(&str, &str)> = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
    ]
    .iter()
    .map(|h| (*h, c.headers[*h].to_str().unwrap()))
    .collect();
    let (st, _, body) = api.raw("POST", path, &fwd, c.body.to_vec()).await;
    assert_eq!(
        st,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let mut tampered = c.body.to_vec();
    tampered[10] ^= 1;
    let (st, _, _) = api.raw("POST", path, &fwd, tampered).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Rotation: during the grace both keys sign; the public keys list both, newest first.
    let (st, rot) = api
        .post(
            &format!("/api/v1/endpoints/{ep}/signing-key/rotate"),
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rot}");
    let pk2 = rot["public_key"].as_str().unwrap().to_string();
    assert_ne!(pk2, pk);
    let (_, keys) = api
        .get(&format!("/api/v1/endpoints/{ep}/public-keys"))
        .await;
    let listed: Vec<&str> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["public_key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [pk2.as_str(), pk.as_str()]);
    api.event("invoice.paid", json!({"n": 2})).await;
    let got = rx.wait_count(2, 30).await;
    let c = &got[1];
    let entries = v1a_entries(c);
    assert_eq!(entries.len(), 2);
    let content = signed_content(c);
    assert!(pynacl_verifies(&pk2, &content, &entries[0]));
    assert!(pynacl_verifies(&pk, &content, &entries[1]));
    // The HMAC secret did not rotate.
    let now = c.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    hookwarden_signatures::verify(
        Scheme::StandardWebhooks,
        &[&whsec],
        &c.headers,
        &c.body,
        now,
        300,
    )
    .unwrap();
    // After the grace only the new key signs.
    s.advance_ms(3_601_000);
    api.event("invoice.paid", json!({"n": 3})).await;
    let got = rx.wait_count(3, 30).await;
    let c = &got[2];
    let entries = v1a_entries(c);
    assert_eq!(entries.len(), 1);
    assert!(pynacl_verifies(&pk2, &signed_content(c), &entries[0]));

    // An endpoint without v1a has no keys and cannot rotate one; adding v1a makes one.
    let (plain, _) = api.endpoint(json!({"url": rx.url("/plain")})).await;
    let (_, keys) = api
        .get(&format!("/api/v1/endpoints/{plain}/public-keys"))
        .await;
    assert_eq!(keys["data"], json!([]));
    let (st, v) = api
        .post(
            &format!("/api/v1/endpoints/{plain}/signing-key/rotate"),
            json!(null),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{plain}"),
            Some(json!({"signature_schemes": ["standard-webhooks-v1a"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, keys) = api
        .get(&format!("/api/v1/endpoints/{plain}/public-keys"))
        .await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    s.shutdown().await;
}

/// A receiver that verifies `v1a` signatures with the public key alone and keeps a replay
/// cache: every v1a case of the probe passes.
#[tokio::test]
async fn the_probe_checks_v1a_receivers_too() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    let s = InProcess::start(&test_config("[probe]\nmin_interval_secs = 0\n")).await;
    let api = s.api();
    let public = Arc::new(Mutex::new(String::new()));
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (public2, seen2) = (public.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (public, seen) = (public2.clone(), seen2.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (public, seen) = (public.clone(), seen.clone());
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_secs() as i64;
                            let pk = public.lock().unwrap().clone();
                            let ok = hookwarden_signatures::verify(
                                Scheme::StandardWebhooksV1a,
                                &[&pk],
                                &headers,
                                &body,
                                now,
                                300,
                            )
                            .is_ok()
                                && seen
                                    .lock()
                                    .unwrap()
                                    .insert(headers["webhook-id"].to_str().unwrap().to_string());
                            let status = if ok { 204 } else { 401 };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let (st, created) = api
        .post(
            "/api/v1/endpoints",
            json!({"url": format!("http://{addr}/hook"), "signature_schemes": ["standard-webhooks-v1a"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    *public.lock().unwrap() = created["public_key"].as_str().unwrap().to_string();
    let ep = created["id"].as_str().unwrap();
    let (st, report) = api
        .post(&format!("/api/v1/endpoints/{ep}/probe"), json!(null))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{report}");
    assert_eq!(report["grade"], "A", "{report:#}");
    let v1a_cases = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["scheme"] == "standard-webhooks-v1a")
        .count();
    assert_eq!(v1a_cases, 9, "{report:#}");
    s.shutdown().await;
}
