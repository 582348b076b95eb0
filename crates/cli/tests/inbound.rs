//! Inbound webhooks against the real binary over real HTTP(S) on 127.0.0.0/8: sources API,
//! every refusal code in order, allowlists and trusted proxies, rotation and revocation, replay
//! protection across restarts, TLS termination, provider handshakes, routing to endpoints and
//! the audit log.

mod common;

use bytes::Bytes;
use common::*;
use hmac::{Hmac, Mac};
use hookwarden_signatures::{Outbound, Scheme};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), &[body]))
}

/// Standard Webhooks headers for `body`.
fn sw_headers(secret: &str, id: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    hookwarden_signatures::sign(
        Scheme::StandardWebhooks,
        &[secret],
        &Outbound {
            msg_id: id,
            timestamp: ts,
            body,
        },
    )
    .unwrap()
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GH_SECRET: &str = "It's a Secret to Everybody";

/// A plain-HTTP client whose connections leave from `local` (any 127.0.0.0/8 address).
#[derive(Clone)]
struct From {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl From {
    fn new(server: SocketAddr, local: &str) -> From {
        let mut c = HttpConnector::new();
        c.set_local_address(Some(local.parse::<IpAddr>().unwrap()));
        From {
            client: Client::builder(TokioExecutor::new()).build(c),
            base: format!("http://{server}"),
        }
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (StatusCode, Value, String) {
        let mut b = Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let req = b.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let v = if ct.starts_with("application/json") {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        (status, v, text)
    }
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn start(extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &test_config(extra), None);
    (dir, server)
}

/// Creates a source; returns (id, path `/in/wh_…`, full response).
async fn source(api: &Api, body: Value) -> (String, String, Value) {
    let (s, v) = api.post("/api/v1/sources", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let url = v["url"].as_str().unwrap();
    let path = url[url.find("/in/").unwrap()..].to_string();
    (v["id"].as_str().unwrap().to_string(), path, v)
}

async fn audit(api: &Api, id: &str, query: &str) -> Vec<Value> {
    let (s, v) = api
        .get(&format!("/api/v1/sources/{id}/audit?limit=250{query}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn sources_api_and_every_refusal_code_in_order() {
    let (_d, s) = start("[inbound]\nmax_body_bytes = 2048\n").await;
    let api = s.api();
    let local = From::new(s.addr, "127.0.0.1");

    // Creation: id, the full URL once (≥ 128 bits of token), stored only as a prefix.
    let (id, path, created) = source(
        &api,
        json!({"name": "github", "verification": {"type": "github", "secret": GH_SECRET},
               "allowed_cidrs": ["127.0.0.1"]}),
    )
    .await;
    assert!(id.starts_with("src_"), "{created}");
    let url = created["url"].as_str().unwrap();
    assert_eq!(url, format!("http://{}{path}", s.addr));
    let token = path.trim_start_matches("/in/");
    assert!(token.starts_with("wh_") && token.len() >= 3 + 22, "{token}");
    assert_eq!(created["token_prefix"], &token[..9]);
    assert_eq!(created["verification"]["type"], "github");
    assert_eq!(created["secrets_count"], 1);
    assert_eq!(created["replay_window_seconds"], 300);
    assert_eq!(created["event_type"], "inbound.github");
    let (st, got) = api.get(&format!("/api/v1/sources/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    let text = got.to_string();
    assert!(!text.contains(token) && !text.contains(GH_SECRET), "{text}");
    assert!(got.get("url").is_none());
    assert_eq!(got["token_prefix"], &token[..9]);
    let (_, list) = api.get("/api/v1/sources").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(token));

    // Configuration errors are refused, never silently accepted.
    for (body, want) in [
        (
            json!({"name": "x", "verification": {"type": "nope"}}),
            "INVALID_VERIFICATION",
        ),
        (
            json!({"name": "x", "verification": {"type": "none"}}),
            "ALLOWLIST_REQUIRED",
        ),
        (
            json!({"name": "x", "verification": {"type": "stripe"}}),
            "SECRET_REQUIRED",
        ),
        (
            json!({"name": "x", "verification": {"type": "standard-webhooks", "secret": "not-whsec"}}),
            "INVALID_SECRET",
        ),
        (
            json!({"name": "x", "verification": {"type": "github", "secret": "s"}, "allowed_cidrs": ["10.0.0.300"]}),
            "INVALID_CIDR",
        ),
        (
            json!({"name": "x", "verification": {"type": "github", "secret": "s"}, "forward_to": ["ep_missing"]}),
            "UNKNOWN_ENDPOINT",
        ),
        (
            json!({"name": "x", "verification": {"type": "github", "secret": "s"}, "replay_window_seconds": -1}),
            "INVALID_REPLAY_WINDOW",
        ),
    ] {
        let (st, v) = api.post("/api/v1/sources", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
        assert_eq!(code(&v), want, "{body} → {v}");
    }

    let body = br#"{"action":"opened","number":1}"#;
    let signed = h(&[
        ("x-hub-signature-256", &github_sig(GH_SECRET, body)),
        ("content-type", "application/json"),
        ("user-agent", "GitHub-Hookshot/test"),
    ]);

    // 404: unknown or malformed tokens.
    let (st, v, _) = local
        .post("/in/wh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &signed, body)
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::NOT_FOUND, "WEBHOOK_NOT_FOUND"),
        "{v}"
    );
    let (st, v, _) = local.post("/in/not-a-token", &signed, body).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "WEBHOOK_NOT_FOUND"));

    // 202: accepted; the event is stored with its source.
    let (st, v, _) = local.post(&path, &signed, body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["success"], true);
    let evt = v["id"].as_str().unwrap().to_string();
    assert!(evt.starts_with("evt_"));
    let (_, e) = api.get(&format!("/api/v1/events/{evt}")).await;
    assert_eq!(e["source_id"], id.as_str());
    assert_eq!(e["type"], "inbound.github");
    assert_eq!(e["payload"], json!({"action": "opened", "number": 1}));

    // 409: the same request again (GitHub's delivery id is not signed: content replay).
    let (st, v, _) = local.post(&path, &signed, body).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"), "{v}");

    // 401: missing, malformed or wrong signatures.
    let body2 = br#"{"action":"closed"}"#;
    for hs in [
        h(&[]),
        h(&[("x-hub-signature-256", "sha256=zz")]),
        h(&[("x-hub-signature-256", &github_sig("wrong", body2))]),
        h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body))]),
    ] {
        let (st, v, _) = local.post(&path, &hs, body2).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID"),
            "{hs:?} {v}"
        );
    }

    // 413: over inbound.max_body_bytes (checked before the signature).
    let big = vec![b'a'; 4096];
    let (st, v, _) = local.post(&path, &h(&[]), &big).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
        "{v}"
    );

    // 403: the allowlist (checked before the body and the signature).
    let other = From::new(s.addr, "127.0.0.7");
    let (st, v, _) = other.post(&path, &h(&[]), &big).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "IP_NOT_ALLOWED"),
        "{v}"
    );
    // PATCH changes the allowlist at once.
    let (st, v) = api
        .call(
            "PATCH",
            &format!("/api/v1/sources/{id}"),
            Some(json!({"allowed_cidrs": ["127.0.0.0/29"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allowed_cidrs"], json!(["127.0.0.0/29"]));
    assert_eq!(v["secrets_count"], 1, "same type: the secret stays");
    let body3 = br#"{"action":"reopened"}"#;
    let sig3 = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body3))]);
    let (st, _, _) = other.post(&path, &sig3, body3).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v, _) = From::new(s.addr, "127.0.0.8")
        .post(&path, &sig3, body3)
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "IP_NOT_ALLOWED"));

    // Standard Webhooks: timestamp window (401) and message-id replay (409).
    let (sw_id, sw_path, _) = source(
        &api,
        json!({"name": "sw", "verification": {"type": "standard-webhooks", "secret": SW_SECRET}}),
    )
    .await;
    let b = br#"{"type":"user.created"}"#;
    let now = unix_now();
    let (st, v, _) = local
        .post(
            &sw_path,
            &sw_headers(SW_SECRET, "msg_old", now - 3600, b),
            b,
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "TIMESTAMP_OUT_OF_TOLERANCE"),
        "{v}"
    );
    let (st, _, _) = local
        .post(&sw_path, &sw_headers(SW_SECRET, "msg_1", now, b), b)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v, _) = local
        .post(&sw_path, &sw_headers(SW_SECRET, "msg_1", now + 1, b), b)
        .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"));
    let (st, _, _) = local
        .post(&sw_path, &sw_headers(SW_SECRET, "msg_2", now, b), b)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "same body, new message id");

    // Independence: one source's URL never works with another's credentials, and revoking
    // one leaves the other working.
    let gh_on_sw = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, b))]);
    let (st, v, _) = local.post(&sw_path, &gh_on_sw, b).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID")
    );
    let (st, v, _) = local
        .post(&path, &sw_headers(SW_SECRET, "msg_3", now, b), b)
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID")
    );

    // 410: revoked, with exactly the documented body, before every other check.
    let (st, v) = api
        .post(&format!("/api/v1/sources/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    let (st, _, text) = other.post(&path, &h(&[]), &big).await;
    assert_eq!(st, StatusCode::GONE);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"success": false, "error": {"code": "WEBHOOK_REVOKED", "message": "Webhook has been revoked"}})
    );
    let (st, _, _) = local
        .post(&sw_path, &sw_headers(SW_SECRET, "msg_4", now, b), b)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "the other source still works");

    // The audit log: one entry per request, with filters and pagination.
    let entries = audit(&api, &id, "").await;
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "WEBHOOK_REVOKED",
            "SIGNATURE_INVALID",
            "IP_NOT_ALLOWED",
            "ACCEPTED",
            "IP_NOT_ALLOWED",
            "PAYLOAD_TOO_LARGE",
            "SIGNATURE_INVALID",
            "SIGNATURE_INVALID",
            "SIGNATURE_INVALID",
            "SIGNATURE_INVALID",
            "REPLAYED",
            "ACCEPTED",
        ],
        "{entries:?}"
    );
    let acc = &entries[entries.len() - 1];
    assert_eq!(acc["status"], 202);
    assert_eq!(acc["event_id"], evt.as_str());
    assert_eq!(acc["client_ip"], "127.0.0.1");
    assert!(acc["peer_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(acc["user_agent"], "GitHub-Hookshot/test");
    assert_eq!(acc["body_bytes"], body.len());
    assert_eq!(acc["token_prefix"], &token[..9]);
    assert!(acc["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(acc.get("payload").is_none(), "log_payloads is off");
    assert_eq!(entries[5]["reason"], "CONTENT_LENGTH");
    assert_eq!(entries[9]["reason"], "SIGNATURE_MISSING");
    let f = audit(&api, &id, "&outcome=SIGNATURE_INVALID").await;
    assert_eq!(f.len(), 5);
    let f = audit(&api, &id, "&client_ip=127.0.0.7").await;
    assert_eq!(f.len(), 3);
    let since = acc["received_at"].as_str().unwrap();
    let f = audit(&api, &id, &format!("&until={since}")).await;
    assert!(f.is_empty(), "{f:?}");
    let f = audit(&api, &id, &format!("&since={since}")).await;
    assert_eq!(f.len(), 12);
    let (_, p1) = api
        .get(&format!("/api/v1/sources/{id}/audit?limit=5"))
        .await;
    assert_eq!(p1["has_more"], true);
    let next = p1["next_before"].as_str().unwrap();
    let (_, p2) = api
        .get(&format!("/api/v1/sources/{id}/audit?limit=5&before={next}"))
        .await;
    let (_, p3) = api
        .get(&format!(
            "/api/v1/sources/{id}/audit?limit=5&before={}",
            p2["next_before"].as_str().unwrap()
        ))
        .await;
    let n = |p: &Value| p["data"].as_array().unwrap().len();
    assert_eq!((n(&p1), n(&p2), n(&p3)), (5, 5, 2));
    assert_eq!(p3["has_more"], false);
    let (st, v) = api
        .get(&format!("/api/v1/sources/{id}/audit?since=yesterday"))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "INVALID_QUERY"));
    let (_, unknown) = api.get("/api/v1/inbound/audit?unknown=true").await;
    let unknown = unknown["data"].as_array().unwrap();
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(
        unknown
            .iter()
            .all(|e| e["outcome"] == "WEBHOOK_NOT_FOUND" && e["source_id"].is_null())
    );
    assert_eq!(audit(&api, &sw_id, "").await.len(), 6);

    // Metrics by code and source.
    let auth = format!("Bearer {}", s.key);
    let (_, _, m) = api
        .raw("GET", "/metrics", &[("authorization", &auth)], vec![])
        .await;
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains("hookwarden_inbound_requests_total") && m.contains("WEBHOOK_REVOKED"),
        "{m}"
    );

    // Delete: the URL is gone; the audit log stays until retention.
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/sources/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v, _) = local.post(&path, &signed, body).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "WEBHOOK_NOT_FOUND"));
    let (st, _) = api.get(&format!("/api/v1/sources/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(audit(&api, &id, "").await.len(), 12);
}
