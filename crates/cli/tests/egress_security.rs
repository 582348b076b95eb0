//! Egress security of `serve` against real peers on 127.0.0.1: source-address binding, delivery
//! through real `hookwarden egress-proxy` instances (failover, fail closed), the published egress
//! ranges and their change event, and mTLS with a TLS server that requires a client certificate.

mod common;
mod egress_common;

use common::*;
use egress_common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// `test_config` with extra keys in its `[egress]` section.
fn config_with_egress(egress: &str, extra: &str) -> String {
    test_config(extra).replacen("[egress]\n", &format!("[egress]\n{egress}\n"), 1)
}

async fn delivery_of(api: &Api, evt: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let v = api
        .wait_for(&format!("/api/v1/events/{evt}/deliveries"), secs, |v| {
            v["data"].get(0).is_some_and(&done)
        })
        .await;
    v["data"][0].clone()
}

async fn attempts(api: &Api, dlv: &str) -> Vec<Value> {
    let (st, v) = api.get(&format!("/api/v1/deliveries/{dlv}/attempts")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn deliveries_leave_from_bound_addresses_and_attempts_record_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_egress("bind_addresses = [\"127.0.0.2\", \"127.0.0.3\"]", "");
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    let rx = Receiver::start().await;
    api.endpoint(json!({"url": rx.url("/hook"), "event_types": ["t"]}))
        .await;
    let mut sources = BTreeSet::new();
    for i in 0..4 {
        let evt = api.event("t", json!({"i": i})).await;
        let d = delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
        let a = attempts(&api, d["id"].as_str().unwrap()).await;
        assert_eq!(a.len(), 1);
        let src = a[0]["source_address"]
            .as_str()
            .expect("source_address")
            .to_string();
        let ip = src.rsplit_once(':').unwrap().0.to_string();
        assert!(ip == "127.0.0.2" || ip == "127.0.0.3", "{src}");
        assert_eq!(
            a[0]["remote_address"].as_str().unwrap(),
            rx.addr.to_string()
        );
        sources.insert(src);
    }
    // What the attempts record is exactly where the receiver saw the requests come from.
    let seen: BTreeSet<String> = rx.all().iter().map(|c| c.peer.to_string()).collect();
    assert_eq!(seen, sources);
}

fn proxy_config(port: u16, bind: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[egress]
allow_ranges = ["127.0.0.0/8"]
bind_addresses = ["{bind}"]
[[users]]
name = "hookwarden"
password_hash = "{hash}"
[policy]
action = "open"
allowed_ports = [{port}]
"#,
        hash = hookwarden_egress::proxy::hash_password("proxy-pass")
    )
}

#[tokio::test]
async fn deliveries_go_through_egress_proxies_with_failover_and_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let mut a = ProxyProc::start(dir.path(), "proxy-a", &proxy_config(port, "127.0.0.5"));
    let mut b = ProxyProc::start(dir.path(), "proxy-b", &proxy_config(port, "127.0.0.6"));
    let b_addr = b.addr;
    // `[[egress.proxies]]` tables follow every other key of the file.
    let proxies = format!(
        "[[egress.proxies]]\nurl = \"http://{}\"\nusername = \"hookwarden\"\npassword = \"proxy-pass\"\n\
         [[egress.proxies]]\nurl = \"http://{}\"\nusername = \"hookwarden\"\npassword = \"proxy-pass\"\n",
        a.addr, b.addr
    );
    let cfg = config_with_egress("proxy_health_interval_secs = 1", "") + &proxies;
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    api.endpoint(json!({"url": rx.url("/hook"), "event_types": ["t"]}))
        .await;

    // Both proxies up: deliveries go through them (from their egress addresses), never direct.
    for i in 0..4 {
        let evt = api.event("t", json!({"i": i})).await;
        let d = delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
        let att = attempts(&api, d["id"].as_str().unwrap()).await;
        let src = att[0]["source_address"].as_str().unwrap();
        assert!(
            src.starts_with("127.0.0.5:") || src.starts_with("127.0.0.6:"),
            "{src}"
        );
    }
    let peers = |from: usize| -> BTreeSet<String> {
        rx.all()[from..]
            .iter()
            .map(|c| c.peer.ip().to_string())
            .collect()
    };
    assert!(peers(0).is_subset(&BTreeSet::from(["127.0.0.5".into(), "127.0.0.6".into()])));

    // One proxy dies: every delivery still arrives, through the other one.
    a.kill();
    let before = rx.count();
    for i in 0..4 {
        let evt = api.event("t", json!({"after_kill": i})).await;
        delivery_of(&api, &evt, 30, |d| d["status"] == "succeeded").await;
    }
    assert_eq!(peers(before), BTreeSet::from(["127.0.0.6".to_string()]));

    // Both dead: deliveries fail closed (proxy errors, nothing sent direct) and are retried.
    b.kill();
    let before = rx.count();
    let evt = api.event("t", json!({"all_down": true})).await;
    let d = delivery_of(&api, &evt, 30, |d| d["attempt_count"].as_i64() >= Some(2)).await;
    assert_ne!(d["status"], "succeeded");
    let dlv = d["id"].as_str().unwrap().to_string();
    for a in attempts(&api, &dlv).await {
        assert_eq!(a["error_class"], "proxy", "{a}");
        assert!(a["status_code"].is_null(), "{a}");
    }
    assert_eq!(rx.count(), before, "a delivery went out without a proxy");
    // A proxy comes back on the same address: the pending delivery is retried and arrives.
    let _b2 = ProxyProc::start_on(
        dir.path(),
        "proxy-b2",
        &proxy_config(port, "127.0.0.6"),
        &b_addr.to_string(),
    );
    delivery_of(&api, &evt, 30, |d| d["status"] == "succeeded").await;
    assert_eq!(peers(before), BTreeSet::from(["127.0.0.6".to_string()]));
}

#[tokio::test]
async fn published_egress_ips_are_public_and_a_change_is_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg1 = config_with_egress(
        "published_ranges = [\"203.0.113.0/24\", \"2001:db8::/48\", \"198.51.100.7\"]",
        "",
    );
    let mut s = Server::start_in(dir.path(), &cfg1, None);
    let key = s.key.clone();
    let api = s.api();
    let anon = Api::new(s.addr, "");
    let (st, _, body) = anon
        .raw("GET", "/api/v1/security/egress-ips", &[], vec![])
        .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["ranges"],
        json!(["203.0.113.0/24", "2001:db8::/48", "198.51.100.7/32"])
    );
    let updated_at = v["updated_at"].as_str().unwrap().to_string();
    assert!(updated_at.ends_with('Z'), "{updated_at}");
    let (st, h, body) = anon
        .raw(
            "GET",
            "/api/v1/security/egress-ips?format=text",
            &[],
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        String::from_utf8_lossy(&body),
        "203.0.113.0/24\n2001:db8::/48\n198.51.100.7/32\n"
    );
    let (_, h, body) = anon
        .raw(
            "GET",
            "/api/v1/security/egress-ips",
            &[("accept", "text/plain")],
            vec![],
        )
        .await;
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(String::from_utf8_lossy(&body).starts_with("203.0.113.0/24\n"));

    // An endpoint subscribed to the operational event.
    let rx = Receiver::start().await;
    api.endpoint(json!({"url": rx.url("/ops"), "event_types": ["security.egress_ips.changed"]}))
        .await;
    // Restart with the same list: no event, same updated_at.
    assert_eq!(s.terminate(), Some(0));
    let mut s = Server::start_in(dir.path(), &cfg1, Some(key.clone()));
    let (_, v) = s.api().get("/api/v1/security/egress-ips").await;
    assert_eq!(v["updated_at"], updated_at.as_str());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.count(), 0);
    // Restart with a changed list: the event is delivered, updated_at moves.
    assert_eq!(s.terminate(), Some(0));
    let cfg2 = config_with_egress("published_ranges = [\"192.0.2.0/28\"]", "");
    let s = Server::start_in(dir.path(), &cfg2, Some(key));
    let got = rx.wait_count(1, 20).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = body.to_string();
    assert!(text.contains("security.egress_ips.changed"), "{text}");
    assert!(text.contains("192.0.2.0/28"), "{text}");
    assert!(
        text.contains("203.0.113.0/24"),
        "previous list missing: {text}"
    );
    let (_, v) = s.api().get("/api/v1/security/egress-ips").await;
    assert_eq!(v["ranges"], json!(["192.0.2.0/28"]));
    assert_ne!(v["updated_at"], updated_at.as_str());
}

fn files_contain(dir: &std::path::Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            n += 1;
            assert!(n < 10_000);
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn mtls_client_certificates_are_presented_published_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("hookwarden test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (server_cert, server_key) = ca.server(&["127.0.0.1"]);
    let master_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes, base64
    let cfg = config_with_egress(
        &format!("extra_ca_files = [{:?}]", ca_file.to_str().unwrap()),
        &format!("[security]\nmaster_key = \"{master_key}\"\n"),
    );
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();

    // Upload a certificate signed by the CA the receiver trusts, and generate a self-signed one.
    let (client_cert, client_key) = ca.client("hookwarden-sender");
    let (st, up) = api
        .post(
            "/api/v1/client-certificates",
            json!({"name": "uploaded", "certificate_pem": client_cert, "private_key_pem": client_key}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{up}");
    let (st, generated) = api
        .post(
            "/api/v1/client-certificates",
            json!({"name": "generated", "generate": {"common_name": "hookwarden-generated", "days_valid": 30}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{generated}");
    for v in [&up, &generated] {
        assert!(!v.to_string().contains("PRIVATE KEY"), "{v}");
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(v["sha1"].as_str().unwrap().len(), 40);
    }
    assert!(
        generated["subject"]
            .as_str()
            .unwrap()
            .contains("hookwarden-generated")
    );
    // Private keys are encrypted at rest.
    let key_line = client_key.lines().nth(1).unwrap();
    assert!(!files_contain(&dir.path().join("data"), key_line));
    assert!(!files_contain(&dir.path().join("data"), "PRIVATE KEY"));

    // A receiver that requires a client certificate from the CA.
    let tls = TlsServer::start(
        &server_cert,
        &server_key,
        Some(std::slice::from_ref(&ca.pem)),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/hook", tls.addr.port());
    let up_id = up["id"].as_str().unwrap();
    let gen_id = generated["id"].as_str().unwrap();
    api.endpoint(json!({"url": url, "event_types": ["good"], "client_certificate_id": up_id}))
        .await;
    api.endpoint(json!({"url": url, "event_types": ["wrong"], "client_certificate_id": gen_id}))
        .await;
    api.endpoint(json!({"url": url, "event_types": ["none"]}))
        .await;

    let evt = api.event("good", json!({})).await;
    delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
    let seen = tls.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client_cert_sha256.as_deref(), up["sha256"].as_str());

    // The wrong certificate, and none at all, are refused by the receiver's handshake.
    for ty in ["wrong", "none"] {
        let evt = api.event(ty, json!({})).await;
        let d = delivery_of(&api, &evt, 20, |d| d["attempt_count"].as_i64() >= Some(1)).await;
        let a = attempts(&api, d["id"].as_str().unwrap()).await;
        assert_ne!(a[0]["outcome"], "succeeded", "{ty}: {a:?}");
        assert!(a[0]["status_code"].is_null(), "{ty}: {a:?}");
        assert!(
            ["tls", "connect"].contains(&a[0]["error_class"].as_str().unwrap_or("")),
            "{ty}: {a:?}"
        );
    }
    assert_eq!(tls.seen().len(), 1);
    assert!(
        tls.handshake_failures
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );

    // A receiver that pins the generated certificate accepts it.
    let tls2 = TlsServer::start(
        &server_cert,
        &server_key,
        Some(&[generated["certificate_pem"].as_str().unwrap().to_string()]),
    )
    .await;
    api.endpoint(json!({
        "url": format!("https://127.0.0.1:{}/pinned", tls2.addr.port()),
        "event_types": ["pinned"],
        "client_certificate_id": gen_id,
    }))
    .await;
    let evt = api.event("pinned", json!({})).await;
    delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
    assert_eq!(
        tls2.seen()[0].client_cert_sha256.as_deref(),
        generated["sha256"].as_str()
    );

    // Public listing: thumbprints, subject, validity; no key needed, no private material.
    let anon = Api::new(s.addr, "");
    let (st, _, body) = anon
        .raw("GET", "/api/v1/security/client-certificates", &[], vec![])
        .await;
    assert_eq!(st, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).unwrap();
    let find = |list: &Value, id: &str| {
        list["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
    };
    let pub_up = find(&list, up_id).expect("uploaded certificate listed");
    assert_eq!(pub_up["sha256"], up["sha256"]);
    assert_eq!(pub_up["sha1"], up["sha1"]);
    assert_eq!(pub_up["status"], "active");
    for k in ["subject", "not_before", "not_after"] {
        assert!(pub_up[k].is_string(), "{k}: {pub_up}");
    }
    assert!(!String::from_utf8_lossy(&body).contains("PRIVATE"));

    // Rotation: the retiring certificate stays listed and presented until it is deleted.
    let (st, v) = api
        .post(
            &format!("/api/v1/client-certificates/{up_id}/retire"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, _, body) = anon
        .raw("GET", "/api/v1/security/client-certificates", &[], vec![])
        .await;
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(find(&list, up_id).unwrap()["status"], "retiring");
    let evt = api.event("good", json!({})).await;
    delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
    assert_eq!(tls.seen().len(), 2);
    // A retiring certificate cannot be attached anew, and one in use cannot be deleted.
    let (st, v) = api
        .post(
            "/api/v1/endpoints",
            json!({"url": url, "client_certificate_id": up_id}),
        )
        .await;
    assert!(st.is_client_error(), "{v}");
    let (st, v) = api
        .call(
            "DELETE",
            &format!("/api/v1/client-certificates/{up_id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}
