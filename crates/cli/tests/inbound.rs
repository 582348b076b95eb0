//! Inbound webhooks against the real binary over real HTTP(S) on 127.0.0.0/8: sources API,
//! every refusal code in order, allowlists and trusted proxies, rotation and revocation, replay
//! protection across restarts, TLS termination, provider handshakes, routing to endpoints and
//! the audit log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

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

#[tokio::test]
async fn allowlists_ipv4_ranges_ipv6_and_trusted_proxy_versus_spoofed_headers() {
    let (_d, s) = start("[inbound]\ntrusted_proxies = [\"127.0.0.2\"]\n").await;
    let api = s.api();
    let b = br#"{"n":1}"#;
    let now = unix_now();
    let mut n = 0;
    let mut sw = |path: &str| {
        n += 1;
        let _ = path;
        sw_headers(SW_SECRET, &format!("msg_{n}"), now, b)
    };
    let create = |cidrs: Value| {
        let api = api.clone();
        async move {
            source(
                &api,
                json!({"name": "a", "allowed_cidrs": cidrs,
                       "verification": {"type": "standard-webhooks", "secret": SW_SECRET}}),
            )
            .await
        }
    };
    let via = |ip: &str| From::new(s.addr, ip);
    let with_xff = |hs: Vec<(String, String)>, xff: &str| {
        let mut hs = hs;
        hs.push(("x-forwarded-for".into(), xff.into()));
        hs
    };

    // A single address.
    let (_, single, _) = create(json!(["127.0.0.3"])).await;
    let (st, _, _) = via("127.0.0.3").post(&single, &sw(""), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v, _) = via("127.0.0.4").post(&single, &sw(""), b).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "IP_NOT_ALLOWED"));

    // A range, and several entries.
    let (_, range, created) = create(json!(["127.0.1.0/24"])).await;
    assert_eq!(created["allowed_cidrs"], json!(["127.0.1.0/24"]));
    let (st, _, _) = via("127.0.1.9").post(&range, &sw(""), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _, _) = via("127.0.2.9").post(&range, &sw(""), b).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, several, _) = create(json!(["127.0.0.9", "127.0.5.0/28", "2001:db8::/32"])).await;
    for (ip, ok) in [
        ("127.0.0.9", true),
        ("127.0.5.15", true),
        ("127.0.5.16", false),
        ("127.0.0.10", false),
    ] {
        let (st, _, _) = via(ip).post(&several, &sw(""), b).await;
        assert_eq!(st == StatusCode::ACCEPTED, ok, "{ip}: {st}");
    }

    // IPv6 clients, through the trusted proxy (forwarded addresses are IPv6).
    let proxy = via("127.0.0.2");
    for (xff, ok) in [
        ("2001:db8::7", true),
        ("[2001:db8:ffff::1]:443", true),
        ("2001:db9::1", false),
        ("198.51.100.1, 2001:db8::5", true),
    ] {
        let (st, _, _) = proxy.post(&several, &with_xff(sw(""), xff), b).await;
        assert_eq!(st == StatusCode::ACCEPTED, ok, "{xff}: {st}");
    }

    // The trusted proxy on 127.0.0.2 forwards for 127.0.0.9 (allowed); a direct client on
    // 127.0.0.3 sends the same header and is judged by its own address.
    let (st, _, _) = proxy
        .post(&several, &with_xff(sw(""), "127.0.0.9"), b)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v, _) = via("127.0.0.3")
        .post(&several, &with_xff(sw(""), "127.0.0.9"), b)
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "IP_NOT_ALLOWED"));
    // Only the right-most untrusted entry counts: a client prepending an allowed address
    // through the proxy is refused.
    let (st, _, _) = proxy
        .post(&several, &with_xff(sw(""), "127.0.0.9, 203.0.113.50"), b)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The proxy itself is not an allowed client when it forwards for nobody allowed.
    let (st, _, _) = proxy.post(&several, &sw(""), b).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The audit log has both addresses.
    let (_, list) = api.get("/api/v1/inbound/audit?limit=250").await;
    let entries = list["data"].as_array().unwrap();
    let spoof = entries
        .iter()
        .find(|e| e["outcome"] == "IP_NOT_ALLOWED" && e["client_ip"] == "127.0.0.3")
        .expect("spoofed request audited with its real address");
    assert!(
        spoof["peer_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.3:")
    );
    let proxied = entries
        .iter()
        .find(|e| {
            e["outcome"] == "ACCEPTED"
                && e["client_ip"] == "127.0.0.9"
                && e["peer_addr"].as_str().unwrap().starts_with("127.0.0.2:")
        })
        .expect("proxied request audited with client and peer");
    assert_eq!(proxied["status"], 202);
    let ipv6 = entries
        .iter()
        .filter(|e| e["client_ip"] == "2001:db8::7")
        .count();
    assert_eq!(ipv6, 1);
}

#[tokio::test]
async fn rotation_grace_revocation_and_replay_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();
    let local = From::new(s.addr, "127.0.0.1");
    let (id, old, _) = source(
        &api,
        json!({"name": "r", "verification": {"type": "standard-webhooks", "secret": SW_SECRET}}),
    )
    .await;
    let b = br#"{"r":1}"#;
    let now = unix_now();
    let mut n = 0;
    let mut sw = || {
        n += 1;
        sw_headers(SW_SECRET, &format!("rot_{n}"), now, b)
    };

    // Rotation at once: the old URL stops working immediately.
    let (st, v) = api
        .post(&format!("/api/v1/sources/{id}/rotate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let url = v["url"].as_str().unwrap();
    let second = url[url.find("/in/").unwrap()..].to_string();
    assert_ne!(second, old);
    assert_eq!(v["tokens"][0]["state"], "active");
    assert_eq!(v["tokens"][1]["state"], "expired");
    let (st, v, _) = local.post(&old, &sw(), b).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "WEBHOOK_NOT_FOUND"));
    let (st, _, _) = local.post(&second, &sw(), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);

    // Rotation with a grace period: both work until it ends.
    let (st, v) = api
        .post(
            &format!("/api/v1/sources/{id}/rotate"),
            json!({"grace_period_seconds": 4}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["tokens"][1]["state"], "grace");
    let url = v["url"].as_str().unwrap();
    let third = url[url.find("/in/").unwrap()..].to_string();
    let (st, _, _) = local.post(&second, &sw(), b).await;
    assert_eq!(st, StatusCode::ACCEPTED, "old URL within its grace");
    let (st, _, _) = local.post(&third, &sw(), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let grace_end = std::time::Instant::now() + Duration::from_millis(4300);
    tokio::time::sleep_until(grace_end.into()).await;
    let (st, _, _) = local.post(&second, &sw(), b).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "grace over");
    let (st, _, _) = local.post(&third, &sw(), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v) = api
        .post("/api/v1/sources/src_missing/rotate", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = api
        .post(
            &format!("/api/v1/sources/{id}/rotate"),
            json!({"grace_period_seconds": -1}),
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_GRACE_PERIOD")
    );

    // Replay protection survives a restart (the seen ids are in the store).
    let accepted = sw_headers(SW_SECRET, "persisted_1", now, b);
    let (st, _, _) = local.post(&third, &accepted, b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(s.terminate(), Some(0));
    let key = s.key.clone();
    drop(s);
    let s = Server::start_in(dir.path(), &test_config(""), Some(key));
    let local = From::new(s.addr, "127.0.0.1");
    let (st, v, _) = local.post(&third, &accepted, b).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"), "{v}");

    // Revocation: 410 for the current URL; a later rotation issues a working URL while the
    // revoked one keeps answering 410.
    let api = s.api();
    let (st, _) = api
        .post(&format!("/api/v1/sources/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v, _) = local.post(&third, &sw(), b).await;
    assert_eq!((st, code(&v)), (StatusCode::GONE, "WEBHOOK_REVOKED"));
    let (_, v) = api
        .post(&format!("/api/v1/sources/{id}/rotate"), json!({}))
        .await;
    let url = v["url"].as_str().unwrap();
    let fourth = url[url.find("/in/").unwrap()..].to_string();
    assert_eq!(v["status"], "active");
    let (st, _, _) = local.post(&fourth, &sw(), b).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _, _) = local.post(&third, &sw(), b).await;
    assert_eq!(st, StatusCode::GONE);
}

/// Past `storage.sqlite_replay_keys_max` live keys in memory, new keys go to the key-ordered
/// table: replays are still refused, before and after a restart.
#[tokio::test]
async fn replay_protection_holds_past_the_in_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config("").replace(
        "sqlite_synchronous = \"normal\"",
        "sqlite_synchronous = \"normal\"\nsqlite_replay_keys_max = 2",
    );
    let mut s = Server::start_in(dir.path(), &config, None);
    let api = s.api();
    let (_, path, _) = source(
        &api,
        json!({"name": "bound", "verification": {"type": "standard-webhooks", "secret": SW_SECRET}}),
    )
    .await;
    let b = br#"{"bound":true}"#;
    let now = unix_now();
    let sent: Vec<_> = (0..6)
        .map(|i| sw_headers(SW_SECRET, &format!("bound_{i}"), now, b))
        .collect();
    let local = From::new(s.addr, "127.0.0.1");
    for hs in &sent {
        let (st, v, _) = local.post(&path, hs, b).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    }
    for hs in &sent {
        let (st, v, _) = local.post(&path, hs, b).await;
        assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"), "{v}");
    }
    assert_eq!(s.terminate(), Some(0));
    let key = s.key.clone();
    drop(s);
    let s = Server::start_in(dir.path(), &config, Some(key));
    let local = From::new(s.addr, "127.0.0.1");
    for hs in &sent {
        let (st, v, _) = local.post(&path, hs, b).await;
        assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"), "{v}");
    }
    let fresh = sw_headers(SW_SECRET, "bound_new", now, b);
    let (st, v, _) = local.post(&path, &fresh, b).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v, _) = local.post(&path, &fresh, b).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "REPLAYED"), "{v}");
}

#[tokio::test]
async fn refusal_floods_are_aggregated_in_the_audit_log() {
    let (_d, s) = start("[inbound]\naudit_refusals_per_second = 2\n").await;
    let api = s.api();
    let local = From::new(s.addr, "127.0.0.1");
    let (id, path, _) = source(
        &api,
        json!({"name": "f", "verification": {"type": "github", "secret": GH_SECRET}}),
    )
    .await;
    let started = std::time::Instant::now();
    let total = 200;
    for _ in 0..total {
        let (st, _, _) = local.post(&path, &h(&[]), b"{}").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let secs = started.elapsed().as_secs() as usize + 1;
    // Aggregates are written once their second is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let e = audit(&api, &id, "").await;
        let sum: i64 = e.iter().map(|x| x["count"].as_i64().unwrap()).sum();
        if sum == total {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit counts {sum} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let singles = entries.iter().filter(|e| e["sampled"] == false).count();
    let aggs: Vec<&Value> = entries.iter().filter(|e| e["sampled"] == true).collect();
    assert!(
        singles <= 2 * (secs + 1),
        "{singles} single entries in {secs} s"
    );
    assert!(!aggs.is_empty());
    // At most 2 single entries and one aggregate per second.
    assert!(
        entries.len() <= 3 * (secs + 1) && entries.len() < total as usize / 2,
        "{} entries for {total} requests in {secs} s",
        entries.len()
    );
    for a in aggs {
        assert_eq!(a["reason"], "AGGREGATED");
        assert_eq!(a["outcome"], "SIGNATURE_INVALID");
        assert_eq!(a["client_ip"], "127.0.0.1");
        assert!(a["count"].as_i64().unwrap() > 1);
    }
}

#[tokio::test]
async fn accepted_events_are_routed_to_endpoints_and_payloads_logged_on_request() {
    let (_d, s) = start("").await;
    let api = s.api();
    let by_id = Receiver::start().await;
    let by_type = Receiver::start().await;
    let other = Receiver::start().await;
    let (ep1, _) = api
        .endpoint(json!({"url": by_id.url("/id"), "event_types": ["unrelated"]}))
        .await;
    api.endpoint(json!({"url": by_type.url("/t"), "event_types": ["payments.in"]}))
        .await;
    api.endpoint(json!({"url": other.url("/o"), "event_types": ["something.else"]}))
        .await;
    let (id, path, _) = source(
        &api,
        json!({"name": "fw", "verification": {"type": "github", "secret": GH_SECRET},
               "forward_to": [ep1, "payments.in"], "log_payloads": true,
               "event_type": "github.push"}),
    )
    .await;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let (st, v, _) = From::new(s.addr, "127.0.0.1")
        .post(
            &path,
            &h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body))]),
            body,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    for r in [&by_id, &by_type] {
        let got = r.wait_count(1, 20).await;
        let env: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(env["data"], json!({"ref": "refs/heads/main"}), "{env}");
        assert_eq!(env["type"], "github.push");
        assert_eq!(env["id"], v["id"]);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.count(), 0);
    let (_, e) = api
        .get(&format!("/api/v1/events/{}", v["id"].as_str().unwrap()))
        .await;
    assert_eq!(e["type"], "github.push");
    let entries = audit(&api, &id, "").await;
    assert_eq!(entries[0]["payload"], std::str::from_utf8(body).unwrap());

    // Form bodies (Twilio, Slack commands) are kept as text inside a JSON payload.
    let (_, path2, _) = source(
        &api,
        json!({"name": "form", "verification": {"type": "api_key", "header": "x-api-key", "secret": "k3y-value"}}),
    )
    .await;
    let (st, v, _) = From::new(s.addr, "127.0.0.1")
        .post(
            &path2,
            &h(&[
                ("x-api-key", "k3y-value"),
                ("content-type", "application/x-www-form-urlencoded"),
            ]),
            b"a=1&b=2",
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (_, e) = api
        .get(&format!("/api/v1/events/{}", v["id"].as_str().unwrap()))
        .await;
    assert_eq!(e["payload"]["body"], "a=1&b=2");
    assert_eq!(
        e["payload"]["content_type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn provider_handshakes_are_answered_after_verification() {
    let (_d, s) = start("").await;
    let api = s.api();
    let local = From::new(s.addr, "127.0.0.1");
    let now = unix_now().to_string();

    // Slack url_verification.
    let slack_secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let (_, slack, _) = source(
        &api,
        json!({"name": "slack", "verification": {"type": "slack", "secret": slack_secret}}),
    )
    .await;
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let sig = format!(
        "v0={}",
        hmac_hex(
            slack_secret.as_bytes(),
            &[b"v0:", now.as_bytes(), b":", body]
        )
    );
    let hs = h(&[
        ("x-slack-request-timestamp", &now),
        ("x-slack-signature", &sig),
    ]);
    let (st, _, text) = local.post(&slack, &hs, body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    // Unsigned: refused, no challenge echoed.
    let (st, v, _) = local.post(&slack, &h(&[]), body).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID")
    );

    // Zoom endpoint.url_validation.
    let zoom_secret = "zoom-secret-token";
    let (_, zoom, _) = source(
        &api,
        json!({"name": "zoom", "verification": {"type": "zoom", "secret": zoom_secret}}),
    )
    .await;
    let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1}"#;
    let sig = format!(
        "v0={}",
        hmac_hex(
            zoom_secret.as_bytes(),
            &[b"v0:", now.as_bytes(), b":", body]
        )
    );
    let hs = h(&[("x-zm-request-timestamp", &now), ("x-zm-signature", &sig)]);
    let (st, v, _) = local.post(&zoom, &hs, body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        v["encryptedToken"],
        hmac_hex(zoom_secret.as_bytes(), &[b"qgg8vlvZRS6UYooatFL8Aw"])
    );

    // Twitch webhook_callback_verification.
    let twitch_secret = "twitch-secret-0123456789";
    let (id, twitch, _) = source(
        &api,
        json!({"name": "twitch", "verification": {"type": "twitch", "secret": twitch_secret}}),
    )
    .await;
    let body =
        br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387"}}"#;
    let ts = time_rfc3339();
    let msg_id = "e76c6bd4-55c9-4987-8304-da1588d8988b";
    let sig = format!(
        "sha256={}",
        hmac_hex(
            twitch_secret.as_bytes(),
            &[msg_id.as_bytes(), ts.as_bytes(), body]
        )
    );
    let hs = h(&[
        ("twitch-eventsub-message-id", msg_id),
        ("twitch-eventsub-message-timestamp", &ts),
        ("twitch-eventsub-message-signature", &sig),
        (
            "twitch-eventsub-message-type",
            "webhook_callback_verification",
        ),
    ]);
    let (st, _, text) = local.post(&twitch, &hs, body).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(text, "pogchamp-kappa-360noscope-vohiyo");
    let entries = audit(&api, &id, "").await;
    assert_eq!(entries[0]["outcome"], "HANDSHAKE");
    assert_eq!(entries[0]["status"], 200);
}

fn time_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000000Z"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A body streamed without Content-Length (chunked) is cut off at the limit too.
#[tokio::test]
async fn chunked_bodies_over_the_limit_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, s) = start("[inbound]\nmax_body_bytes = 1000\n").await;
    let (_, path, _) = source(
        &s.api(),
        json!({"name": "c", "verification": {"type": "github", "secret": GH_SECRET}}),
    )
    .await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..3 {
        let chunk = vec![b'a'; 600];
        let _ = c
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = c.write_all(&chunk).await;
        let _ = c.write_all(b"\r\n").await;
    }
    let _ = c.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
}

/// POSTs over HTTPS (rustls, trusting only `ca_pem`).
async fn https_post(
    server: SocketAddr,
    ca_pem: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (st, _, bytes) = tls_request(
        server,
        tls_client_config(ca_pem),
        "POST",
        path,
        &headers,
        body.to_vec(),
    )
    .await;
    (st, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn tls_config(dir: &std::path::Path, inbound: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let cfg = test_config(&format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n\n[inbound]\n{inbound}\n",
        dir.join("cert.pem"),
        dir.join("key.pem")
    ));
    (cfg, cert)
}

#[tokio::test]
async fn https_is_terminated_and_plain_http_ingest_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, cert) = tls_config(
        dir.path(),
        "trusted_proxies = [\"127.0.0.2\"]\nallow_loopback_http = false",
    );
    let s = Server::start_in(dir.path(), &cfg, None);
    // With TLS on the listener, the admin API answers only over HTTPS.
    let api = Api::new_tls(s.addr, &s.key, &cert);
    let (id, path, created) = source(
        &api,
        json!({"name": "tls", "verification": {"type": "github", "secret": GH_SECRET}}),
    )
    .await;
    assert!(
        created["url"].as_str().unwrap().starts_with("https://"),
        "{created}"
    );
    let body = br#"{"secure":true}"#;
    let sig = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body))]);

    // HTTPS: accepted.
    let (st, v) = https_post(s.addr, &cert, &path, &sig, body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // Plain HTTP from a direct client: refused (before the allowlist and the signature).
    let (st, v, _) = From::new(s.addr, "127.0.0.1").post(&path, &sig, body).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "HTTPS_REQUIRED"),
        "{v}"
    );
    // A spoofed X-Forwarded-Proto from an untrusted peer does not count.
    let mut spoof = sig.clone();
    spoof.push(("x-forwarded-proto".into(), "https".into()));
    let (st, v, _) = From::new(s.addr, "127.0.0.3")
        .post(&path, &spoof, body)
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "HTTPS_REQUIRED"));
    // The trusted TLS-terminating proxy: only with X-Forwarded-Proto: https.
    let proxy = From::new(s.addr, "127.0.0.2");
    let (st, v, _) = proxy.post(&path, &sig, body).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "HTTPS_REQUIRED"));
    let body2 = br#"{"secure":"proxied"}"#;
    let mut fwd = h(&[
        ("x-hub-signature-256", &github_sig(GH_SECRET, body2)),
        ("x-forwarded-proto", "https"),
    ]);
    fwd.push(("x-forwarded-for".into(), "203.0.113.9".into()));
    let (st, v, _) = proxy.post(&path, &fwd, body2).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // The admin API over plain HTTP is refused (its key already went in clear: refused, not
    // redirected), even from the trusted proxy without X-Forwarded-Proto: https.
    let (st, v) = s.api().get("/api/v1/endpoints").await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "HTTPS_REQUIRED"),
        "{v}"
    );
    let entries = audit(&api, &id, "").await;
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["client_ip"], "203.0.113.9");
    assert_eq!(entries[0]["tls"], false);
    assert_eq!(entries[4]["tls"], true);
    assert_eq!(entries[4]["outcome"], "ACCEPTED");
    assert_eq!(entries[3]["outcome"], "HTTPS_REQUIRED");
}

#[tokio::test]
async fn loopback_plain_http_stays_available_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, cert) = tls_config(dir.path(), "");
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = Api::new_tls(s.addr, &s.key, &cert);
    let (_, path, _) = source(
        &api,
        json!({"name": "dev", "verification": {"type": "github", "secret": GH_SECRET}}),
    )
    .await;
    let body = br#"{"dev":1}"#;
    let sig = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body))]);
    let (st, v, _) = From::new(s.addr, "127.0.0.1").post(&path, &sig, body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let body = br#"{"dev":2}"#;
    let sig = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, body))]);
    let (st, _) = https_post(s.addr, &cert, &path, &sig, body).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert!(
        s.log()
            .contains("plain HTTP ingest is accepted from loopback"),
        "{}",
        s.log()
    );
}

/// A direct IPv6 client (the server listens on ::1).
#[tokio::test]
async fn ipv6_clients_are_matched_against_ipv6_allowlists() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_listening(dir.path(), &test_config(""), None, "[::1]:0");
    assert!(s.addr.is_ipv6(), "{}", s.addr);
    let api = s.api();
    let b = br#"{"v6":true}"#;
    let sig = h(&[("x-hub-signature-256", &github_sig(GH_SECRET, b))]);
    let mk = |cidrs: Value| {
        json!({"name": "v6", "allowed_cidrs": cidrs,
               "verification": {"type": "github", "secret": GH_SECRET}})
    };
    let (_, loopback, _) = source(&api, mk(json!(["::1"]))).await;
    let (_, range, _) = source(&api, mk(json!(["::/127", "10.0.0.0/8"]))).await;
    let (id, other, _) = source(&api, mk(json!(["2001:db8::/32", "127.0.0.1"]))).await;
    let client = From::new(s.addr, "::1");
    let (st, v, _) = client.post(&loopback, &sig, b).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v, _) = client.post(&range, &sig, b).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v, _) = client.post(&other, &sig, b).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "IP_NOT_ALLOWED"),
        "{v}"
    );
    let entries = audit(&api, &id, "").await;
    assert_eq!(entries[0]["client_ip"], "::1");
    assert!(
        entries[0]["peer_addr"]
            .as_str()
            .unwrap()
            .starts_with("[::1]:")
    );
}

/// A body that stops arriving is refused (408) before the request timeout, and audited.
#[tokio::test]
async fn stalled_bodies_are_refused_and_audited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, s) = start("[server]\nrequest_timeout_secs = 3\n").await;
    let api = s.api();
    let (id, path, _) = source(
        &api,
        json!({"name": "slow", "verification": {"type": "github", "secret": GH_SECRET}}),
    )
    .await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(b"{\"partial\":").await.unwrap();
    let started = std::time::Instant::now();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("BODY_TIMEOUT"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let entries = audit(&api, &id, "").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["outcome"], "BODY_TIMEOUT");
    assert_eq!(entries[0]["status"], 408);
}
