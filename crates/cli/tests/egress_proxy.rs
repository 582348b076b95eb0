//! `hookwarden egress-proxy` as a real process on 127.0.0.1, driven by raw HTTP, `curl -x` and
//! Python `requests`. Names are answered by `egress.resolve_overrides`, so no test touches the
//! network: every destination is on 127.0.0.0/8, and internal answers are refused before any
//! connection is made.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;
mod egress_common;

use common::{Receiver, Reply, interop_python};
use egress_common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct-horse-battery-staple";

fn users() -> String {
    let mut s = String::new();
    for name in ["hw", "reporter", "opener"] {
        s.push_str(&format!(
            "[[users]]\nname = \"{name}\"\npassword_hash = \"{}\"\n",
            hookwarden_egress::proxy::hash_password(PASSWORD)
        ));
    }
    s
}

/// A proxy whose policy lets `*.example.com` (and the per-client rules) through to `port`.
fn config(port: u16, extra_egress: &str, limits: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"

[egress]
allow_ranges = ["127.0.0.0/8"]
deny_ranges = ["127.0.0.99/32"]
{extra_egress}

[egress.resolve_overrides]
"api.example.com" = ["127.0.0.1"]
"example.com" = ["127.0.0.1"]
"evil.example.com" = ["127.0.0.1"]
"other.test" = ["127.0.0.1"]
"blocked.test" = ["127.0.0.1"]
"internal.example.com" = ["10.0.0.5"]
"metadata.example.com" = ["169.254.169.254"]
"mixed.example.com" = ["127.0.0.1", "192.168.1.10"]
"mapped.example.com" = ["::ffff:10.1.2.3"]
"nat64.example.com" = ["64:ff9b::a00:1"]
"cgnat.example.com" = ["100.64.0.1"]
"denied-range.example.com" = ["127.0.0.99"]
"nxdomain.example.com" = []

[limits]
{limits}

{users}

[policy]
action = "enforce"
allowed_ports = [{port}, 443]
allow = ["*.example.com"]
deny = ["evil.example.com"]
global_deny = ["blocked.test"]

[[policy.clients]]
name = "reporter"
action = "report"
allow = []

[[policy.clients]]
name = "opener"
action = "open"
deny = ["forbidden.example.com"]
"#,
        users = users()
    )
}

#[tokio::test]
async fn policy_globs_actions_ports_and_address_policy_after_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    let port = up.addr.port();
    let p = ProxyProc::start(dir.path(), "proxy", &config(port, "", ""));
    let hw = basic("hw", PASSWORD);
    let rep = basic("reporter", PASSWORD);
    let open = basic("opener", PASSWORD);

    // (credentials, target, expected status, expected X-Hookwarden-Error)
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        // Globs: subdomains only; case-insensitive; trailing dot ignored.
        (&hw, format!("api.example.com:{port}"), 200, None),
        (&hw, format!("API.Example.COM.:{port}"), 200, None),
        (
            &hw,
            format!("example.com:{port}"),
            403,
            Some("HOST_NOT_ALLOWED"),
        ),
        (
            &hw,
            format!("other.test:{port}"),
            403,
            Some("HOST_NOT_ALLOWED"),
        ),
        (
            &hw,
            format!("evil.example.com:{port}"),
            403,
            Some("HOST_DENIED"),
        ),
        (
            &hw,
            format!("EVIL.example.com.:{port}"),
            403,
            Some("HOST_DENIED"),
        ),
        // Ports.
        (
            &hw,
            "api.example.com:22".into(),
            403,
            Some("PORT_NOT_ALLOWED"),
        ),
        (&hw, "api.example.com:0".into(), 403, Some("HOST_INVALID")),
        // Malformed and numeric spellings; an IPv6 address only in its standard form (then the
        // host rules judge it like any host: not on this client's list).
        (&hw, format!("[::1]:{port}"), 403, Some("HOST_NOT_ALLOWED")),
        (&hw, format!("[0:0::1]:{port}"), 403, Some("HOST_INVALID")),
        (
            &hw,
            format!("[::FFFF:127.0.0.1]:{port}"),
            403,
            Some("HOST_INVALID"),
        ),
        (&hw, format!("2130706433:{port}"), 403, Some("HOST_INVALID")),
        (&hw, format!("0x7f.1:{port}"), 403, Some("HOST_INVALID")),
        (&hw, format!("127.1:{port}"), 403, Some("HOST_INVALID")),
        (&hw, format!("0177.0.0.1:{port}"), 403, Some("HOST_INVALID")),
        (
            &hw,
            format!("a..example.com:{port}"),
            403,
            Some("HOST_INVALID"),
        ),
        // The address policy applies after resolution, whatever the host rules say.
        (
            &hw,
            format!("internal.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("metadata.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("mixed.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("mapped.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("nat64.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("cgnat.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        (
            &hw,
            format!("denied-range.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        // Resolution failure: 502.
        (
            &hw,
            format!("nxdomain.example.com:{port}"),
            502,
            Some("DNS_NO_ADDRESSES"),
        ),
        // Report: host rules refuse nothing (ports and addresses still do).
        (&rep, format!("other.test:{port}"), 200, None),
        (&rep, "other.test:25".into(), 403, Some("PORT_NOT_ALLOWED")),
        (
            &rep,
            format!("internal.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
        // Open: everything but deny lists (its own and the global one).
        (&open, format!("other.test:{port}"), 200, None),
        (
            &open,
            format!("forbidden.example.com:{port}"),
            403,
            Some("HOST_DENIED"),
        ),
        (
            &open,
            format!("blocked.test:{port}"),
            403,
            Some("HOST_DENIED"),
        ),
        (
            &open,
            format!("metadata.example.com:{port}"),
            403,
            Some("DESTINATION_DENIED"),
        ),
    ];
    for (auth, target, status, code) in &cases {
        let (r, _) = connect(p.addr, target, Some(auth)).await;
        assert_eq!(r.status, *status, "{target}: {r:?}");
        assert_eq!(r.header("x-hookwarden-error"), *code, "{target}: {r:?}");
        if *status != 200 {
            assert!(r.header("proxy-authenticate").is_none(), "{target}: {r:?}");
            assert!(r.body.contains(code.unwrap()), "{target}: {r:?}");
        }
    }
    // Only the allowed tunnels reached the upstream: none of the refusals made a connection
    // (the receiver counts requests, so send one request through an allowed tunnel to check
    // the tunnel works end to end).
    let (r, mut s) = connect(p.addr, &format!("api.example.com:{port}"), Some(&hw)).await;
    assert_eq!(r.status, 200);
    s.write_all(
        b"GET /through-tunnel HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let reply = read_reply(&mut s).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(up.count(), 1);

    // The report decision is logged as such; every decision has one structured line.
    let log = p.log();
    assert!(log.contains("proxy decision"), "{log}");
    assert!(log.contains("report"), "{log}");
    assert!(log.contains("DESTINATION_DENIED"), "{log}");

    // Metrics count decisions.
    let metrics = raw(
        p.metrics.unwrap(),
        "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("hookwarden_proxy_requests_total"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn authentication_is_required_and_answered_with_407() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    let port = up.addr.port();
    let p = ProxyProc::start(dir.path(), "proxy", &config(port, "", ""));
    let target = format!("api.example.com:{port}");
    for auth in [
        None,
        Some(basic("hw", "wrong")),
        Some(basic("nobody", PASSWORD)),
        Some(basic("hw", "")),
        Some("Bearer abc".to_string()),
        Some("Basic !!!notbase64".to_string()),
    ] {
        let (r, _) = connect(p.addr, &target, auth.as_deref()).await;
        assert_eq!(r.status, 407, "{auth:?}: {r:?}");
        assert_eq!(r.header("x-hookwarden-error"), Some("PROXY_AUTH_REQUIRED"));
        assert!(
            r.header("proxy-authenticate")
                .unwrap()
                .starts_with("Basic realm="),
            "{r:?}"
        );
        // Absolute-form plain HTTP too.
        let mut req = format!("GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(a) = &auth {
            req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let r = raw(p.addr, &req).await;
        assert_eq!(r.status, 407, "{r:?}");
    }
    assert_eq!(up.count(), 0);
    // A request that is not a proxy request at all is refused with a clear code.
    let r = raw(p.addr, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 407);
    let hw = basic("hw", PASSWORD);
    let r = raw(
        p.addr,
        &format!("GET /x HTTP/1.1\r\nHost: a\r\nProxy-Authorization: {hw}\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (400, Some("NOT_A_PROXY_REQUEST"))
    );
}

#[tokio::test]
async fn forwarding_strips_hop_by_hop_headers_and_leaves_from_the_bound_address() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start_on("127.0.0.1:0").await;
    let port = up.addr.port();
    let p = ProxyProc::start(
        dir.path(),
        "proxy",
        &config(port, "bind_addresses = [\"127.0.0.2\"]", ""),
    );
    let hw = basic("hw", PASSWORD);
    let r = raw(
        p.addr,
        &format!(
            "POST http://api.example.com:{port}/hook?x=1 HTTP/1.1\r\nHost: wrong.example\r\n\
             Proxy-Authorization: {hw}\r\nProxy-Connection: keep-alive\r\n\
             Connection: keep-alive, X-Secret\r\nX-Secret: s3cret\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.wait_count(1, 10).await;
    let h = &got[0].headers;
    for gone in [
        "proxy-authorization",
        "proxy-connection",
        "x-secret",
        "keep-alive",
        "te",
    ] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h:?}");
    }
    assert_eq!(h.get("x-kept").unwrap(), "yes");
    assert_eq!(
        h.get("host").unwrap().to_str().unwrap(),
        format!("api.example.com:{port}")
    );
    assert_eq!(&got[0].body[..], b"hello");
    // The upstream saw the configured egress address.
    assert_eq!(got[0].peer.ip().to_string(), "127.0.0.2");
    // A CONNECT reply names the egress address used.
    let (r, _) = connect(p.addr, &format!("api.example.com:{port}"), Some(&hw)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-hookwarden-egress-address")
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{r:?}"
    );
    assert_eq!(
        r.header("x-hookwarden-upstream-address"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    // https:// in absolute form is not forwarded (CONNECT is the way).
    let r = raw(
        p.addr,
        &format!("GET https://api.example.com:{port}/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (400, Some("SCHEME_NOT_SUPPORTED"))
    );
    // Userinfo in the target is refused.
    let r = raw(
        p.addr,
        &format!("GET http://user@api.example.com:{port}/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (403, Some("HOST_INVALID"))
    );
}

#[tokio::test]
async fn timeouts_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    up.set_default(Reply {
        delay: Duration::from_secs(4),
        ..Reply::status(200)
    });
    let port = up.addr.port();
    let limits = "request_timeout_secs = 1\nheader_read_timeout_secs = 1\nmax_header_bytes = 2048\nmax_connections = 4";
    let p = ProxyProc::start(dir.path(), "proxy", &config(port, "", limits));
    let hw = basic("hw", PASSWORD);

    // An upstream that does not answer in time: 504.
    let t = Instant::now();
    let r = raw(
        p.addr,
        &format!("GET http://api.example.com:{port}/slow HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (504, Some("UPSTREAM_TIMEOUT"))
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // A connection refused by the destination: 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let p2 = ProxyProc::start(dir.path(), "proxy2", &config(closed_port, "", limits));
    let (r, _) = connect(
        p2.addr,
        &format!("api.example.com:{closed_port}"),
        Some(&hw),
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-hookwarden-error")),
        (502, Some("CONNECT_ERROR"))
    );

    // A request head over the limit is refused, not buffered.
    let big = "a".repeat(8192);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let _ = s
        .write_all(
            format!("CONNECT api.example.com:{port} HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no answer to an oversized head")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 431"), "{text}");

    // A slow client that never finishes its head is cut after header_read_timeout_secs.
    let mut slow = TcpStream::connect(p.addr).await.unwrap();
    slow.write_all(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(6), slow.read(&mut buf))
        .await
        .expect("slow client was not cut")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Connection cap: with 4 connections open, a 5th is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (r, s) = connect(p.addr, &format!("api.example.com:{port}"), Some(&hw)).await;
        assert_eq!(r.status, 200);
        held.push(s);
    }
    let mut extra = TcpStream::connect(p.addr).await.unwrap();
    let _ = extra
        .write_all(format!("CONNECT api.example.com:{port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n").as_bytes())
        .await;
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("over-limit connection was neither served nor closed")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "over-limit connection got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(held);
    // Capacity comes back when tunnels close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let _ = s
            .write_all(format!("CONNECT api.example.com:{port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n").as_bytes())
            .await;
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
        if n > 0 {
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            break;
        }
        assert!(Instant::now() < deadline, "capacity never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// The clients run as blocking child processes: keep a worker free for the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    let port = up.addr.port();
    let p = ProxyProc::start(dir.path(), "proxy", &config(port, "", ""));
    let proxy = format!("http://hw:{PASSWORD}@{}", p.addr);
    let curl = curl_head;
    let url = format!("http://api.example.com:{port}/via-curl");
    // Absolute-form plain HTTP.
    let (code, out, err) = curl(&["-x", &proxy, &url]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // CONNECT tunnel (-p).
    let (code, out, err) = curl(&["-p", "-x", &proxy, &url]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-hookwarden-egress-address"),
        "{out}"
    );
    assert_eq!(up.count(), 2);
    // No credentials: 407 with a challenge.
    let (_, out, _) = curl(&["-x", &format!("http://{}", p.addr), &url]);
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("proxy-authenticate: basic"),
        "{out}"
    );
    // A denied host: 403 with the code header (curl reports the CONNECT failure).
    let (code, out, _) = curl(&[
        "-x",
        &proxy,
        &format!("http://internal.example.com:{port}/"),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-hookwarden-error: destination_denied"),
        "{out}"
    );
    let (code, out, _) = curl(&["-p", "-x", &proxy, &format!("http://example.com:{port}/")]);
    assert_ne!(code, Some(0));
    assert!(out.contains("403"), "{out}");
    assert_eq!(up.count(), 2);
}

// The clients run as blocking child processes: keep a worker free for the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("hookwarden test CA");
    let (cert, key) = ca.server(&["api.example.com"]);
    let tls = TlsServer::start(&cert, &key, None).await;
    let plain = Receiver::start().await;
    let (tport, pport) = (tls.addr.port(), plain.addr.port());
    let mut cfg = config(tport, "", "");
    cfg = cfg.replace(
        &format!("allowed_ports = [{tport}, 443]"),
        &format!("allowed_ports = [{tport}, {pport}]"),
    );
    let p = ProxyProc::start(dir.path(), "proxy", &cfg);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let script = r#"
import sys, requests
proxy, ca, tport, pport = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ok = {"http": "http://hw:%s@%s" % ("correct-horse-battery-staple", proxy)}
ok["https"] = ok["http"]
s = requests.Session()
s.trust_env = False
r = s.get("https://api.example.com:%s/via-requests-tls" % tport, proxies=ok, verify=ca, timeout=10)
print("https", r.status_code, r.text)
r = s.get("http://api.example.com:%s/via-requests" % pport, proxies=ok, timeout=10)
print("http", r.status_code)
r = s.get("http://internal.example.com:%s/" % pport, proxies=ok, timeout=10)
print("denied", r.status_code, r.headers.get("X-Hookwarden-Error"))
bad = {"http": "http://hw:wrong@%s" % proxy, "https": "http://hw:wrong@%s" % proxy}
r = s.get("http://api.example.com:%s/" % pport, proxies=bad, timeout=10)
print("badauth", r.status_code, "Proxy-Authenticate" in r.headers)
try:
    s.get("https://example.com:%s/" % tport, proxies=ok, verify=ca, timeout=10)
    print("tunnel-denied none")
except requests.exceptions.ProxyError as e:
    print("tunnel-denied", "403" in str(e))
"#;
    let (code, out, err) = run(
        Command::new(interop_python())
            .arg("-c")
            .arg(script)
            .arg(p.addr.to_string())
            .arg(&ca_file)
            .arg(tport.to_string())
            .arg(pport.to_string()),
        60,
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "https 200 tls ok",
            "http 200",
            "denied 403 DESTINATION_DENIED",
            "badauth 407 True",
            "tunnel-denied True",
        ],
        "{err}"
    );
    assert_eq!(tls.seen().len(), 1);
    assert_eq!(tls.seen()[0].path, "/via-requests-tls");
    assert_eq!(plain.count(), 1);
}

/// The TLS listener with client-certificate identity: a certificate that chains to the
/// configured client CA names its client (its common name picks the `[[policy.clients]]` rule,
/// no password needed); no certificate, or one from another CA, never gets a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_identifies_clients_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    let port = up.addr.port();
    let server_ca = TestCa::new("proxy server CA");
    let (scert, skey) = server_ca.server(&["127.0.0.1"]);
    let client_ca = TestCa::new("proxy client CA");
    let rogue_ca = TestCa::new("rogue CA");
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    let (scert_f, skey_f) = (write("server.pem", &scert), write("server.key", &skey));
    let server_ca_f = write("server-ca.pem", &server_ca.pem);
    let client_ca_f = write("client-ca.pem", &client_ca.pem);
    let (c, k) = client_ca.client("alice");
    let (alice_c, alice_k) = (write("alice.pem", &c), write("alice.key", &k));
    let (c, k) = client_ca.client("bob");
    let (bob_c, bob_k) = (write("bob.pem", &c), write("bob.key", &k));
    let (c, k) = rogue_ca.client("alice");
    let (rogue_c, rogue_k) = (write("rogue.pem", &c), write("rogue.key", &k));

    // `other.test` is not allowed by the default rule; only alice's rule allows it.
    let cfg = format!(
        "{}\n[[policy.clients]]\nname = \"alice\"\nallow = [\"other.test\", \"internal.example.com\"]\n\n[tls]\n\
         listen = \"127.0.0.1:0\"\ncert_file = \"{scert_f}\"\nkey_file = \"{skey_f}\"\n\
         client_ca_file = \"{client_ca_f}\"\nrequire_client_certificate = true\n",
        config(port, "", "")
    );
    let p = ProxyProc::start(dir.path(), "proxy", &cfg);
    let tls = p.tls.expect("TLS listener address");
    let proxy = format!("https://{tls}");
    let url = format!("http://other.test:{port}/via-tls-proxy");
    let curl = |extra: &[&str], target: &str| {
        let mut args = vec!["-p", "-x", &proxy, "--proxy-cacert", &server_ca_f];
        args.extend_from_slice(extra);
        args.push(target);
        curl_head(&args)
    };
    let alice = ["--proxy-cert", &alice_c, "--proxy-key", &alice_k];

    // alice, by certificate: her rule lets other.test through.
    let (code, out, err) = curl(&alice, &url);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert_eq!(up.count(), 1);
    // alice is still bound by the global deny list and, for a host her rule allows, by the
    // address policy after resolution.
    let (code, out, _) = curl(&alice, &format!("http://blocked.test:{port}/"));
    assert_ne!(code, Some(0));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let (code, out, _) = curl(&alice, &format!("http://internal.example.com:{port}/"));
    assert_ne!(code, Some(0));
    assert!(
        out.to_ascii_lowercase()
            .contains("x-hookwarden-error: destination_denied"),
        "{out}"
    );
    // bob has a valid certificate but no rule of his own: the default rule refuses other.test.
    let (code, out, _) = curl(&["--proxy-cert", &bob_c, "--proxy-key", &bob_k], &url);
    assert_ne!(code, Some(0));
    assert!(
        out.to_ascii_lowercase()
            .contains("x-hookwarden-error: host_not_allowed"),
        "{out}"
    );
    // No certificate, or a certificate named alice from another CA: no handshake, no tunnel.
    let (code, out, _) = curl(&[], &url);
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    let (code, out, _) = curl(&["--proxy-cert", &rogue_c, "--proxy-key", &rogue_k], &url);
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    // A proxy password user on the plain listener does not get alice's rule either.
    let plain = format!("http://hw:{PASSWORD}@{}", p.addr);
    let (code, out, _) = curl_head(&["-p", "-x", &plain, &url]);
    assert_ne!(code, Some(0));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(up.count(), 1, "only alice's request reached the upstream");
    // Decisions are logged with the certificate's name as the client.
    let log = p.log();
    assert!(
        log.lines()
            .any(|l| l.contains("proxy decision") && l.contains("alice") && l.contains("allow")),
        "{log}"
    );
}

/// The proxy's listener bounds what one address holds (so a client that keeps opening tunnels
/// cannot take every slot) and cuts a client that stops reading a forwarded response.
#[tokio::test]
async fn one_address_cannot_hold_every_slot_and_a_client_that_stops_reading_is_cut() {
    use tokio::net::TcpSocket;
    let dir = tempfile::tempdir().unwrap();
    // An upstream answering every request with 32 MiB.
    let up = Receiver::start().await;
    up.set_default(Reply {
        body: "x".repeat(32 << 20),
        ..Reply::status(200)
    });
    let port = up.addr.port();
    let limits =
        "max_connections_per_peer = 2\nwrite_timeout_secs = 1\nheader_read_timeout_secs = 30";
    let p = ProxyProc::start(dir.path(), "proxy", &config(port, "", limits));
    let hw = basic("hw", PASSWORD);
    let from = |local: &'static str, rcvbuf: Option<u32>| {
        let addr = p.addr;
        async move {
            let s = TcpSocket::new_v4().unwrap();
            if let Some(b) = rcvbuf {
                s.set_recv_buffer_size(b).unwrap();
            }
            s.bind(format!("{local}:0").parse().unwrap()).unwrap();
            s.connect(addr).await.unwrap()
        }
    };
    let connect_from = |local: &'static str| {
        let hw = hw.clone();
        async move {
            let mut s = from(local, None).await;
            s.write_all(
                format!("CONNECT api.example.com:{port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut buf = vec![0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .map(|r| r.unwrap_or(0))
                .unwrap_or(0);
            (String::from_utf8_lossy(&buf[..n]).into_owned(), s)
        }
    };
    // 127.0.0.2 holds two tunnels; its third connection is closed at once.
    let (a, _ta) = connect_from("127.0.0.2").await;
    let (b, _tb) = connect_from("127.0.0.2").await;
    assert!(
        a.starts_with("HTTP/1.1 200") && b.starts_with("HTTP/1.1 200"),
        "{a} {b}"
    );
    let (c, _) = connect_from("127.0.0.2").await;
    assert_eq!(c, "", "the third connection of one address was served");
    // Another address is served.
    let (d, _td) = connect_from("127.0.0.3").await;
    assert!(d.starts_with("HTTP/1.1 200"), "{d}");

    // A forwarded 32 MiB answer to a client that never reads: cut after the write timeout.
    let mut s = from("127.0.0.4", Some(4096)).await;
    s.write_all(
        format!("GET http://api.example.com:{port}/big HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {hw}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled client was never cut");
    assert!(
        total < 32 << 20,
        "the whole answer went out ({total} bytes)"
    );
    // Refusals are counted by reason.
    let metrics = p.metrics.unwrap();
    let text = raw(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .body;
    assert!(
        text.contains("hookwarden_proxy_connections_rejected_total{reason=\"per_peer\"}"),
        "{text}"
    );
}
