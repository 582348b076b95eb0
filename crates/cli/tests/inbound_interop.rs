//! Inbound interop, end to end: webhooks signed by the providers' own, unmodified libraries
//! (PyPI: `stripe`, `slack_sdk`, `twilio`, `svix`, `pynacl`, `sendgrid`, `paddle-python-sdk`; npm:
//! `@octokit/webhooks-methods`) are POSTed to the real `hookwarden serve` over HTTP and must be
//! accepted (202); the same request with a tampered body must be refused (401), and the same
//! request again is a replay (409). The libraries come from `.ci/setup-interop`; when they are
//! missing these tests fail, they never skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BODY: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"note":"héllo ✓"}}"#;
const TAMPERED: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"invoice.paid","data":{"note":"hello ✓"}}"#;
const PUBLIC: &str = "https://hooks.example.test";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn run_json(mut cmd: Command, what: &str, input: &Value) -> Vec<Value> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}: run .ci/setup-interop first"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed (run .ci/setup-interop first?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON list")
}

/// The provider libraries, through the signatures crate's interop script.
fn python_sign(ops: &Value) -> Vec<Value> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../signatures/tests/interop/providers_sign.py");
    let mut cmd = Command::new(interop_python());
    cmd.arg(script);
    run_json(cmd, "providers_sign.py", ops)
}

fn octokit_sign(secret: &str, payload: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.interop");
    assert!(
        root.join("node_modules/@octokit/webhooks-methods/package.json")
            .exists(),
        "@octokit/webhooks-methods missing: run .ci/setup-interop first"
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../signatures/tests/interop/octokit.mjs");
    let mut cmd = Command::new("node");
    cmd.current_dir(&root)
        .arg("--input-type=module")
        .arg("--eval")
        .arg(std::fs::read_to_string(script).unwrap());
    let out = run_json(
        cmd,
        "octokit.mjs",
        &json!([{"op": "sign", "secret": secret, "payload": payload}]),
    );
    out[0]["signature"].as_str().unwrap().to_string()
}

struct Ingest {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
}

impl Ingest {
    async fn post(
        &self,
        path_and_query: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> (StatusCode, String) {
        let mut b = Request::builder()
            .method("POST")
            .uri(format!("{}{path_and_query}", self.base));
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .unwrap()
            .unwrap();
        let st = resp.status();
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        (st, String::from_utf8_lossy(&b).into_owned())
    }

    /// Accepted; tampered body refused; the same request again refused as a replay.
    async fn check(
        &self,
        what: &str,
        path: &str,
        headers: &[(String, String)],
        body: &str,
        tampered: &str,
    ) {
        let (st, b) = self.post(path, headers, body).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{what}: {b}");
        let (st, b) = self.post(path, headers, tampered).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what} tampered: {b}");
        assert!(b.contains("SIGNATURE_INVALID"), "{what}: {b}");
        let (st, b) = self.post(path, headers, body).await;
        assert_eq!(st, StatusCode::CONFLICT, "{what} replay: {b}");
    }
}

fn headers(r: &Value, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                r[*n]
                    .as_str()
                    .unwrap_or_else(|| panic!("{n} in {r}"))
                    .to_string(),
            )
        })
        .collect()
}

async fn source(api: &Api, verification: Value) -> String {
    let (st, v) = api
        .post(
            "/api/v1/sources",
            json!({"name": verification["type"], "verification": verification}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with(PUBLIC), "{url}");
    url[PUBLIC.len()..].to_string()
}

#[tokio::test]
async fn provider_libraries_sign_and_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        dir.path(),
        &test_config(&format!("[server]\npublic_url = \"{PUBLIC}/\"\n")),
        None,
    );
    let api = s.api();
    let ingest = Ingest {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{}", s.addr),
    };
    let now = unix_now();
    let stripe_secret = "whsec_5f1c0ffee0ddba11decafbadc0de1234";
    let slack_secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let twilio_token = "12345678901234567890123456789012";
    let svix_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    let stripe = source(
        &api,
        json!({"type": "stripe", "secrets": [stripe_secret, "whsec_other"]}),
    )
    .await;
    let slack = source(&api, json!({"type": "slack", "secret": slack_secret})).await;
    let twilio_form = source(&api, json!({"type": "twilio", "secret": twilio_token})).await;
    let twilio_json = source(&api, json!({"type": "twilio", "secret": twilio_token})).await;
    let svix = source(
        &api,
        json!({"type": "standard-webhooks", "secret": svix_secret}),
    )
    .await;
    let params = json!({"To": "+15550001", "From": "+15550002", "Body": "héllo & more = ✓"});

    let res = python_sign(&json!([
        {"provider": "stripe", "secret": stripe_secret, "timestamp": now, "body": BODY},
        {"provider": "slack", "secret": slack_secret, "timestamp": now, "body": BODY},
        {"provider": "twilio", "secret": twilio_token, "url": format!("{PUBLIC}{twilio_form}?x=1"), "params": params},
        {"provider": "twilio", "secret": twilio_token, "url": format!("{PUBLIC}{twilio_json}"), "json": true, "body": BODY},
        {"provider": "svix", "secret": svix_secret, "msg_id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "timestamp": now, "body": BODY},
        {"provider": "discord", "seed_hex": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "timestamp": now, "body": BODY},
        {"provider": "discord", "seed_hex": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "timestamp": now, "body": "{\"type\":1}"},
        {"provider": "sendgrid", "timestamp": now, "body": BODY},
    ]));
    assert_eq!(res.len(), 8);
    for r in &res {
        assert_eq!(
            r["self_check"], true,
            "the library rejects its own output: {r}"
        );
    }

    ingest
        .check(
            "stripe",
            &stripe,
            &headers(&res[0], &["stripe-signature"]),
            BODY,
            TAMPERED,
        )
        .await;
    ingest
        .check(
            "slack",
            &slack,
            &headers(&res[1], &["x-slack-request-timestamp", "x-slack-signature"]),
            BODY,
            TAMPERED,
        )
        .await;

    // Twilio form: the signature covers the public URL (query included) and the parameters.
    let form = res[2]["form_body"].as_str().unwrap();
    let mut h = headers(&res[2], &["x-twilio-signature"]);
    h.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let tampered_form = form.replace("15550002", "15550003");
    ingest
        .check(
            "twilio form",
            &format!("{twilio_form}?x=1"),
            &h,
            form,
            &tampered_form,
        )
        .await;
    // Twilio JSON: bodySHA256 in the signed URL.
    let url = res[3]["url"].as_str().unwrap();
    let mut h = headers(&res[3], &["x-twilio-signature"]);
    h.push(("content-type".into(), "application/json".into()));
    ingest
        .check("twilio json", &url[PUBLIC.len()..], &h, BODY, TAMPERED)
        .await;

    ingest
        .check(
            "svix",
            &svix,
            &headers(&res[4], &["svix-id", "svix-timestamp", "svix-signature"]),
            BODY,
            TAMPERED,
        )
        .await;

    // Discord (ed25519 via PyNaCl): events, and the PING handshake answered with PONG.
    let discord = source(
        &api,
        json!({"type": "discord", "public_key": res[5]["public_key"]}),
    )
    .await;
    let dh = ["x-signature-ed25519", "x-signature-timestamp"];
    ingest
        .check("discord", &discord, &headers(&res[5], &dh), BODY, TAMPERED)
        .await;
    let (st, b) = ingest
        .post(&discord, &headers(&res[6], &dh), "{\"type\":1}")
        .await;
    assert_eq!((st, b.as_str()), (StatusCode::OK, "{\"type\":1}"));

    // SendGrid (ECDSA P-256 via starkbank-ecdsa, verified by the sendgrid package).
    let sendgrid = source(
        &api,
        json!({"type": "sendgrid", "public_key": res[7]["public_key"]}),
    )
    .await;
    ingest
        .check(
            "sendgrid",
            &sendgrid,
            &headers(
                &res[7],
                &[
                    "x-twilio-email-event-webhook-signature",
                    "x-twilio-email-event-webhook-timestamp",
                ],
            ),
            BODY,
            TAMPERED,
        )
        .await;

    // Paddle Billing (paddle-python-sdk) and Standard Webhooks v1a (ed25519 via PyNaCl).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/inbound_sign.py");
    let mut cmd = Command::new(interop_python());
    cmd.arg(script);
    let paddle_secret = "pdl_ntfset_01hv8wptq8987qeep44cyrs_tqoNrB5BKJXcNb0HuLfHZ3bsBOCxMQ5w";
    let more = run_json(
        cmd,
        "inbound_sign.py",
        &json!([
            {"provider": "paddle", "secret": paddle_secret, "timestamp": now, "body": BODY},
            {"provider": "standard-webhooks-v1a", "seed_hex": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "msg_id": "msg_v1a_1", "timestamp": now, "body": BODY},
        ]),
    );
    for r in &more {
        assert_eq!(
            r["self_check"], true,
            "the library rejects its own output: {r}"
        );
    }
    let paddle = source(&api, json!({"type": "paddle", "secret": paddle_secret})).await;
    ingest
        .check(
            "paddle",
            &paddle,
            &headers(&more[0], &["paddle-signature"]),
            BODY,
            TAMPERED,
        )
        .await;
    let v1a = source(
        &api,
        json!({"type": "standard-webhooks", "public_keys": [more[1]["public_key"]]}),
    )
    .await;
    ingest
        .check(
            "standard-webhooks v1a",
            &v1a,
            &headers(
                &more[1],
                &["webhook-id", "webhook-timestamp", "webhook-signature"],
            ),
            BODY,
            TAMPERED,
        )
        .await;

    // GitHub via Octokit (npm).
    let gh_secret = "It's a Secret to Everybody";
    let github = source(&api, json!({"type": "github", "secret": gh_secret})).await;
    let sig = octokit_sign(gh_secret, BODY);
    ingest
        .check(
            "github",
            &github,
            &[("x-hub-signature-256".to_string(), sig)],
            BODY,
            TAMPERED,
        )
        .await;
}
