//! Listener hardening, over real sockets against the real binary: clients that never read
//! their answers, idle keep-alive connections and clients that keep reconnecting cannot hold
//! the connection slots; with `[server.tls]`, plain HTTP gets no admin API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `local` (any 127.0.0.0/8 address) to `addr`.
async fn connect_from(local: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(local.parse().unwrap(), 0))?;
    s.connect(addr).await
}

/// [`connect_from`] with a small receive buffer, so that the server's writes stall as soon as
/// the client stops reading (whatever the machine's TCP buffer autotuning allows).
async fn connect_small_window(local: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.set_recv_buffer_size(4096)?;
    s.bind(SocketAddr::new(local.parse().unwrap(), 0))?;
    s.connect(addr).await
}

/// `GET /health` from `local` on a new connection; `None` if no answer within `within`.
async fn health_from(local: &str, addr: SocketAddr, within: Duration) -> Option<String> {
    let attempt = async {
        let mut s = connect_from(local, addr).await.ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()
}

/// The review's attack: with `max_connections = 8`, eight sockets pipeline 100 requests for
/// the OpenAPI document each and never read. Before the write timeout, `/health` was
/// unreachable for as long as they stayed open; now each stalled connection is closed after
/// `write_timeout_secs` and its slot comes back.
#[tokio::test]
async fn clients_that_never_read_lose_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(
        "[server]\nmax_connections = 8\nwrite_timeout_secs = 2\nheader_read_timeout_secs = 30\n",
    );
    let s = Server::start_in(dir.path(), &cfg, None);
    // The review pipelined 100 requests; 300 make sure the answers outgrow any send buffer.
    let mut request = Vec::new();
    for _ in 0..300 {
        request.extend_from_slice(b"GET /api/v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n");
    }
    let mut stalled = Vec::new();
    for i in 0..8 {
        let mut c = connect_small_window(&format!("127.0.0.{}", 10 + i), s.addr)
            .await
            .unwrap();
        c.write_all(&request).await.unwrap();
        stalled.push(c);
    }
    // The answers fill the socket buffers; the server's writes stall. Soon every slot is held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let answer = health_from("127.0.0.3", s.addr, Duration::from_secs(20))
        .await
        .expect("/health stayed unreachable: stalled writes hold the slots");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // It waited for a stalled connection to time out (about 2 s), not forever.
    assert!(started.elapsed() < Duration::from_secs(15));
    // Every stalled client's connection was closed by the server (past the write timeout,
    // without reading): reading now gets what was already buffered, then the end, and far from
    // the 300 answers asked for.
    let (_, _, doc) = s
        .api()
        .raw("GET", "/api/v1/openapi.json", &[], vec![])
        .await;
    let all_answers = 300 * doc.len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (i, mut c) in stalled.into_iter().enumerate() {
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        let drained = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match c.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "stalled connection {i} was never closed");
        assert!(
            total < all_answers,
            "connection {i} got every answer ({total} bytes): it was not cut"
        );
    }
}

/// An idle keep-alive connection is closed after `header_read_timeout_secs`.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config("[server]\nheader_read_timeout_secs = 2\n");
    let s = Server::start_in(dir.path(), &cfg, None);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now say nothing: the server closes the connection.
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection kept open"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// One address holds at most `max_connections_per_peer` connections: a client that keeps
/// opening (and reconnecting) cannot take the slots every other client needs.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(
        "[server]\nmax_connections = 8\nmax_connections_per_peer = 4\nheader_read_timeout_secs = 30\n",
    );
    let s = Server::start_in(dir.path(), &cfg, None);
    // The greedy client opens and holds connections, and keeps reconnecting.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut c = connect_from("127.0.0.2", s.addr).await.unwrap();
        let mut probe = [0u8; 512];
        // A refused connection gets a 503 and is closed at once; an accepted one says nothing.
        match tokio::time::timeout(Duration::from_millis(300), c.read(&mut probe)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&probe[..n]);
                assert!(
                    n == 0 || text.starts_with("HTTP/1.1 503"),
                    "unexpected: {text}"
                );
                if n > 0 {
                    assert!(text.contains("TOO_MANY_CONNECTIONS"), "{text}");
                }
                refused += 1;
            }
            Ok(Err(_)) => refused += 1,
            Err(_) => held.push(c),
        }
    }
    assert_eq!(held.len(), 4, "the greedy address holds exactly its bound");
    assert_eq!(refused, 16);
    // Everyone else still gets in.
    for who in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let answer = health_from(who, s.addr, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{who} was starved"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // The refusals are counted.
    let (_, metrics) = s.api().get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.starts_with("hookwarden_connections_refused_total{reason=\"per_peer\"}")),
        "{text}"
    );
    drop(held);
}

fn tls_files(dir: &std::path::Path) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let cfg = format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join("cert.pem"),
        dir.join("key.pem")
    );
    (cfg, cert)
}

/// With `[server.tls]`, plain HTTP on the same port gets no admin API and no console: API
/// calls are refused (`403 HTTPS_REQUIRED`), a browser is sent to `https`, and answers over TLS
/// carry HSTS. `/health` stays reachable for load balancers; a trusted TLS-terminating proxy
/// saying `X-Forwarded-Proto: https` is served.
#[tokio::test]
async fn plain_http_beside_tls_gets_no_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, cert) = tls_files(dir.path());
    let cfg = test_config(&format!(
        "{tls}\n[inbound]\ntrusted_proxies = [\"127.0.0.2\"]\n"
    ));
    let s = Server::start_in(dir.path(), &cfg, None);
    let plain = s.api();
    let secure = Api::new_tls(s.addr, &s.key, &cert);

    // Over TLS: served, with HSTS.
    let auth = format!("Bearer {}", s.key);
    let (st, h, _) = secure
        .raw(
            "GET",
            "/api/v1/endpoints",
            &[("authorization", &auth)],
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h.get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
    // Plain: API calls refused, whatever the method, with or without a key.
    for (method, path) in [
        ("GET", "/api/v1/endpoints"),
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/metrics"),
    ] {
        let (st, h, body) = plain
            .raw(method, path, &[("authorization", &auth)], b"{}".to_vec())
            .await;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("HTTPS_REQUIRED")),
            "{method} {path}: {v}"
        );
        assert!(h.get("strict-transport-security").is_none());
    }
    // A browser opening the console over plain HTTP is sent to HTTPS, same host and path.
    let (st, h, _) = plain
        .raw(
            "GET",
            "/console/?x=1",
            &[("host", "hooks.example.com:8443")],
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        h.get("location").unwrap(),
        "https://hooks.example.com:8443/console/?x=1"
    );
    // A Host that is not an authority gets no redirect.
    let (st, _, _) = plain
        .raw("GET", "/console/", &[("host", "a b")], vec![])
        .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::BAD_REQUEST,
        "{st}"
    );
    // Health checks of load balancers stay plain.
    let (st, _, _) = plain.raw("GET", "/health", &[], vec![]).await;
    assert_eq!(st, StatusCode::OK);
    // The trusted TLS-terminating proxy: served when it says the client used HTTPS.
    let from_proxy = |xfp: Option<&'static str>| {
        let url = format!("http://{}/api/v1/endpoints", s.addr);
        let auth = auth.clone();
        async move {
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(p) = xfp {
                headers.push(("x-forwarded-proto", p));
            }
            get_from("127.0.0.2", &url, &headers).await
        }
    };
    assert_eq!(from_proxy(Some("https")).await, StatusCode::OK);
    assert_eq!(from_proxy(None).await, StatusCode::FORBIDDEN);
    // The same header from anyone else counts for nothing.
    let (st, _, _) = plain
        .raw(
            "GET",
            "/api/v1/endpoints",
            &[("authorization", &auth), ("x-forwarded-proto", "https")],
            vec![],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// A plain-HTTP GET whose connection leaves from `local`.
async fn get_from(local: &str, url: &str, headers: &[(&str, &str)]) -> StatusCode {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    let mut c = HttpConnector::new();
    c.set_local_address(Some(local.parse().unwrap()));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(c);
    let mut b = hyper::Request::builder().uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let st = resp.status();
    let _ = resp.into_body().collect().await;
    st
}
