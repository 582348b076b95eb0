//! Egress security of `serve` against real peers on 127.0.0.1: source-address binding, delivery
//! through real `hookwarden egress-proxy` instances (failover, fail closed), the published egress
//! ranges and their change event, and mTLS with a TLS server that requires a client certificate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

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
    let cfg = config_with_egress("proxy_health_interval_secs = 1", "") + proxies.as_str();
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

/// A generic CONNECT proxy (not Hookwarden's): it resolves names itself from `names` and
/// connects wherever they point, recording every request head it gets.
async fn generic_connect_proxy(
    names: &'static [(&'static str, &'static str)],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                seen.lock().unwrap().push(head.clone());
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let (host, port) = target.rsplit_once(':').unwrap_or(("", "0"));
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let ip = names
                    .iter()
                    .find(|(n, _)| *n == host)
                    .map(|(_, ip)| ip.to_string())
                    .unwrap_or_else(|| host.to_string());
                match tokio::net::TcpStream::connect(format!("{ip}:{port}")).await {
                    Ok(mut up) => {
                        let _ = client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                    Err(_) => {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The review's SSRF: through an ordinary CONNECT proxy, `http://internal.test:…` (a name the
/// proxy resolves to an internal address) was delivered, because the name went to the proxy
/// unresolved. Now every name is resolved and checked here, and the proxy is asked for the
/// checked address (the name goes along for Host, SNI and a Hookwarden proxy's host rules).
#[tokio::test]
async fn names_are_resolved_and_checked_here_even_through_a_generic_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // The internal service the attacker aims at, and a receiver that is allowed.
    let internal = Receiver::start_on("127.0.0.1:0").await;
    let allowed = Receiver::start_on("127.0.0.2:0").await;
    let (proxy, seen) =
        generic_connect_proxy(&[("internal.test", "127.0.0.1"), ("ok.test", "127.0.0.2")]).await;
    let egress = "system_resolver = false\nresolve_overrides = { \"ok.test\" = [\"127.0.0.2\"] }\n";
    let cfg = config_with_egress(egress, "").replace(
        "allow_ranges = [\"127.0.0.0/8\"]",
        "allow_ranges = [\"127.0.0.2/32\"]",
    ) + format!("[[egress.proxies]]\nurl = \"http://{proxy}\"\n").as_str();
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    // A name this instance cannot resolve is accepted as an endpoint (it may not exist yet)…
    let url = format!("http://internal.test:{}/hook", internal.addr.port());
    api.endpoint(json!({"url": url, "event_types": ["attack"]}))
        .await;
    let evt = api.event("attack", json!({"x": 1})).await;
    let d = delivery_of(&api, &evt, 20, |d| d["attempt_count"].as_i64() >= Some(1)).await;
    // …but it is never handed to the proxy to resolve: nothing reached the internal service.
    assert_ne!(d["status"], "succeeded", "{d}");
    let att = attempts(&api, d["id"].as_str().unwrap()).await;
    assert_eq!(att[0]["error_class"], "dns", "{att:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(internal.count(), 0, "the internal service was reached");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|h| !h.contains("internal.test")),
        "the proxy was asked for the name: {:?}",
        seen.lock().unwrap()
    );

    // A name that resolves to an allowed address: the proxy is asked for that address, the
    // receiver sees the name in Host.
    let url = format!("http://ok.test:{}/hook", allowed.addr.port());
    api.endpoint(json!({"url": url, "event_types": ["ok"]}))
        .await;
    let evt = api.event("ok", json!({"x": 2})).await;
    delivery_of(&api, &evt, 20, |d| d["status"] == "succeeded").await;
    let got = allowed.wait_count(1, 10).await;
    assert_eq!(
        got[0].headers["host"],
        format!("ok.test:{}", allowed.addr.port()).as_str()
    );
    let heads = seen.lock().unwrap().clone();
    let ok_head = heads
        .iter()
        .find(|h| h.contains("ok.test"))
        .expect("a CONNECT for ok.test");
    assert!(
        ok_head.starts_with(&format!(
            "CONNECT 127.0.0.2:{} HTTP/1.1",
            allowed.addr.port()
        )),
        "{ok_head}"
    );
    assert!(
        ok_head
            .to_ascii_lowercase()
            .contains("x-hookwarden-target-host: ok.test"),
        "{ok_head}"
    );
}

/// A Hookwarden egress proxy applies its host rules to the name a client resolved (the
/// `X-Hookwarden-Target-Host` of a CONNECT to an address), resolves and checks it again, and
/// connects to the requested address only when the name resolves to it. `localhost` means the
/// loopback addresses the policy allows, as in `serve`.
#[tokio::test]
async fn the_egress_proxy_checks_named_addresses_and_localhost_like_serve() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start_on("127.0.0.2:0").await;
    let port = up.addr.port();
    let cfg = format!(
        r#"
listen = "127.0.0.1:0"
[egress]
allow_ranges = ["127.0.0.0/8"]
resolve_overrides = {{ "ok.test" = ["127.0.0.2"] }}
[policy]
allow = ["ok.test", "localhost"]
allowed_ports = [{port}]
"#
    );
    let p = ProxyProc::start(dir.path(), "proxy", &cfg);
    let proxy_addr = p.addr;
    let connect_named = |target: String, name: Option<&str>| {
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(n) = name {
            req.push_str(&format!("X-Hookwarden-Target-Host: {n}\r\n"));
        }
        req.push_str("\r\n");
        async move { raw(proxy_addr, &req).await }
    };
    // The address with its name: the rule for the name applies.
    let r = connect_named(format!("127.0.0.2:{port}"), Some("ok.test")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-hookwarden-upstream-address"),
        Some(format!("127.0.0.2:{port}").as_str())
    );
    // The address alone is judged as an address: not on the list.
    let r = connect_named(format!("127.0.0.2:{port}"), None).await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (403, Some("HOST_NOT_ALLOWED"))
    );
    // A name that does not resolve to the asked address: the proxy uses the name's own answer.
    let r = connect_named(format!("127.0.0.9:{port}"), Some("ok.test")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-hookwarden-upstream-address"),
        Some(format!("127.0.0.2:{port}").as_str())
    );
    // A name the rules do not allow is refused, whatever address comes with it.
    let r = connect_named(format!("127.0.0.2:{port}"), Some("evil.test")).await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (403, Some("HOST_NOT_ALLOWED"))
    );
    // localhost with allow_ranges = 127.0.0.0/8: 127.0.0.1 is allowed and used (::1 is not
    // allowed, and not a reason to refuse), as `serve` does. Refusals name no address.
    let local = Receiver::start_on("127.0.0.1:0").await;
    let cfg2 = cfg.replace(
        &format!("allowed_ports = [{port}]"),
        &format!("allowed_ports = [{}]", local.addr.port()),
    );
    let p2 = ProxyProc::start(dir.path(), "proxy2", &cfg2);
    let (r, _) = connect(p2.addr, &format!("localhost:{}", local.addr.port()), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (r, _) = connect(p2.addr, &format!("[::1]:{}", local.addr.port()), None).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.body.contains("::1 is"), "{r:?}");
}
