//! The guarded client against real HTTP and HTTPS servers on 127.0.0.0/8. Nothing here dials any
//! other address: names resolve through static resolvers, and denied addresses are refused before
//! any packet is sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwarden_egress::client::{
    ClientConfig, ClientIdentity, ErrorClass, GuardedClient, OutboundRequest, SendError,
};
use hookwarden_netguard::{
    AddressPolicy, Guard, IpNet, Resolve, SequenceResolver, StaticResolver, UrlPolicy,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Test servers

#[derive(Clone, Default)]
struct Seen {
    connections: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Seen {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("lock").clone()
    }
}

struct Server {
    addr: SocketAddr,
    seen: Seen,
}

async fn start(bind: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let listener = TcpListener::bind(bind).await.expect("bind test server");
    let addr = listener.local_addr().expect("addr");
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        // Runs until the test's runtime shuts down.
        while let Ok((tcp, peer)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            s.peers.lock().expect("lock").push(peer);
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, peer));
                match tls {
                    None => {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    }
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
                                .await
                        else {
                            return;
                        };
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    Server { addr, seen }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut resp = Response::builder()
        .header("x-peer", peer.to_string())
        .header("x-method", req.method().as_str())
        .header("x-host", header("host"))
        .header("x-ua", header("user-agent"))
        .header("x-te", header("transfer-encoding"))
        .header("x-custom", header("x-custom"))
        .header("x-uri", req.uri().to_string());
    let body: Bytes = match path.as_str() {
        "/echo" => Limited::new(req.into_body(), 1 << 20)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
        "/redirect" => {
            resp = resp
                .status(StatusCode::FOUND)
                .header("location", "http://127.0.0.1:9/elsewhere");
            Bytes::from_static(b"moved")
        }
        "/big" => Bytes::from(vec![b'a'; 200_000]),
        "/exact" => Bytes::from(vec![b'b'; 1024]),
        "/small-over" => Bytes::from(vec![b'c'; 1500]),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Bytes::from_static(b"late")
        }
        "/close" => {
            resp = resp.header("connection", "close");
            Bytes::from_static(b"bye")
        }
        _ => Bytes::from_static(b"ok"),
    };
    Ok(resp.body(Full::new(body)).expect("response"))
}

// ---------------------------------------------------------------------------------------------
// PKI

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Ca {
        pem: cert.pem(),
        params,
        key,
    }
}

/// (certificate PEM, key PEM)
fn leaf(ca: &Ca, names: &[&str], eku: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![eku];
    let key = KeyPair::generate().expect("key");
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

fn server_tls(server_ca: &Ca, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let (cert_pem, key_pem) = leaf(
        server_ca,
        &["receiver.test", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("ca"))
                .expect("add");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key).expect("server cert");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn identity(id: &str, ca: &Ca) -> Arc<ClientIdentity> {
    let (cert, key) = leaf(ca, &["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
    Arc::new(ClientIdentity {
        id: id.to_owned(),
        cert_chain_pem: cert,
        private_key_pem: key,
    })
}

// ---------------------------------------------------------------------------------------------
// Client helpers

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn loopback_guard(resolver: impl Resolve) -> Arc<Guard> {
    let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
    Arc::new(Guard::new(
        AddressPolicy::new(allow, vec![]),
        Arc::new(resolver),
    ))
}

fn test_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        url_policy: UrlPolicy {
            allow_http: true,
            allowed_ports: None,
        },
        ..ClientConfig::default()
    }
}

fn receiver_resolver() -> StaticResolver {
    StaticResolver::new().with("receiver.test", [ip("127.0.0.1")])
}

fn client(cfg: ClientConfig, guard: Arc<Guard>) -> GuardedClient {
    GuardedClient::new(cfg, guard).expect("client")
}

fn get(url: String) -> OutboundRequest {
    OutboundRequest::new(Method::GET, url)
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn plain_http_when_allowed() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let port = server.addr.port();
    let mut req = OutboundRequest::new(Method::POST, format!("http://receiver.test:{port}/echo"));
    req.body = Bytes::from_static(b"{\"hello\":\"world\"}");
    req.headers
        .insert("x-custom", HeaderValue::from_static("yes"));
    let resp = c.send(req).await.expect("sent");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(&resp.body[..], b"{\"hello\":\"world\"}");
    assert!(!resp.body_truncated);
    assert_eq!(hdr(&resp.headers, "x-method"), "POST");
    assert_eq!(
        hdr(&resp.headers, "x-host"),
        format!("receiver.test:{port}")
    );
    assert_eq!(hdr(&resp.headers, "x-custom"), "yes");
    assert!(hdr(&resp.headers, "x-ua").starts_with("hookwarden/"));
    assert_eq!(hdr(&resp.headers, "x-uri"), "/echo");
    assert_eq!(resp.remote_addr, Some(server.addr));
    let local = resp.local_addr.expect("local addr");
    assert_eq!(local.ip(), ip("127.0.0.1"));
    assert_eq!(hdr(&resp.headers, "x-peer"), local.to_string());
    assert!(resp.duration > Duration::ZERO);
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let url = format!("http://receiver.test:{}/", server.addr.port());
    for _ in 0..20 {
        let resp = c.send(get(url.clone())).await.expect("sent");
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.remote_addr, Some(server.addr));
    }
    assert_eq!(server.seen.connections(), 1);
}

#[tokio::test]
async fn concurrent_requests_are_bounded_and_pooled() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let url = format!("http://receiver.test:{}/echo", server.addr.port());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8u32 {
        let c = c.clone();
        let url = url.clone();
        tasks.spawn(async move {
            for i in 0..25u32 {
                let mut req = OutboundRequest::new(Method::POST, url.clone());
                req.body = Bytes::from(format!("{worker}-{i}"));
                let resp = c.send(req).await.expect("sent");
                assert_eq!(resp.body, Bytes::from(format!("{worker}-{i}")));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    assert!(
        server.seen.connections() <= 8 + 1,
        "{}",
        server.seen.connections()
    );
}

#[tokio::test]
async fn default_policy_refuses_loopback_in_every_spelling() {
    let server = start("127.0.0.1:0", None).await;
    let port = server.addr.port();
    let guard = Arc::new(Guard::new(
        AddressPolicy::default(),
        Arc::new(
            StaticResolver::new()
                .with("localhost", [ip("127.0.0.1"), ip("::1")])
                .with("sneaky.test", [ip("127.0.0.1")]),
        ),
    ));
    let c = client(test_config(), guard);
    for host in [
        "127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "sneaky.test",
        "127.1",
        "0x7f.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1.",
        "%31%32%37.0.0.1",
        "\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
        "0",
        "0.0.0.0",
    ] {
        let url = format!("http://{host}:{port}/");
        let err = c.send(get(url.clone())).await.expect_err(&url);
        assert_eq!(err.class(), ErrorClass::Policy, "{url}: {err}");
        assert!(!err.is_retryable());
        assert!(
            matches!(err.code(), "URL_ADDRESS_DENIED" | "DESTINATION_DENIED"),
            "{url}: {}",
            err.code()
        );
    }
    // https without allow_http config is also policy.
    let err = client(ClientConfig::default(), loopback_guard(receiver_resolver()))
        .send(get(format!("http://receiver.test:{port}/")))
        .await
        .expect_err("http refused");
    assert_eq!(err.code(), "URL_SCHEME_NOT_ALLOWED");
    assert_eq!(err.class(), ErrorClass::Policy);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.seen.connections(), 0, "nothing reached the server");
}

#[tokio::test]
async fn system_resolver_localhost_is_refused_by_default() {
    // /etc/hosts answers localhost; no DNS query leaves the machine.
    let guard = Arc::new(Guard::new(
        AddressPolicy::default(),
        Arc::new(hookwarden_netguard::SystemResolver::new()),
    ));
    let c = client(test_config(), guard);
    let err = c
        .send(get("https://localhost:9/".into()))
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Policy);
}

#[tokio::test]
async fn https_with_extra_root() {
    let server_ca = ca("Test Server CA");
    let server = start("127.0.0.1:0", Some(server_tls(&server_ca, None))).await;
    let port = server.addr.port();
    let cfg = ClientConfig {
        extra_root_certs_pem: vec![server_ca.pem.clone()],
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let resp = c
        .send(get(format!("https://receiver.test:{port}/")))
        .await
        .expect("https works");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(&resp.body[..], b"ok");
    assert_eq!(resp.remote_addr, Some(server.addr));
    // By IP literal (the certificate has an IP SAN).
    let resp = c
        .send(get(format!("https://127.0.0.1:{port}/")))
        .await
        .expect("https by IP");
    assert_eq!(resp.status, StatusCode::OK);
    // TLS connections are kept alive too: one per host name.
    for _ in 0..5 {
        c.send(get(format!("https://receiver.test:{port}/")))
            .await
            .expect("again");
    }
    assert_eq!(server.seen.connections(), 2);

    // Without the extra root: certificate invalid.
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let err = c
        .send(get(format!("https://receiver.test:{port}/")))
        .await
        .expect_err("untrusted");
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert_eq!(err.code(), "TLS_CERTIFICATE_INVALID");
    assert!(err.is_retryable());

    // Wrong name: certificate invalid.
    let c = client(
        ClientConfig {
            extra_root_certs_pem: vec![server_ca.pem.clone()],
            ..test_config()
        },
        loopback_guard(StaticResolver::new().with("other.test", [ip("127.0.0.1")])),
    );
    let err = c
        .send(get(format!("https://other.test:{port}/")))
        .await
        .expect_err("wrong name");
    assert_eq!(err.code(), "TLS_CERTIFICATE_INVALID");
}

#[tokio::test]
async fn invalid_extra_root_fails_closed() {
    let cfg = ClientConfig {
        extra_root_certs_pem: vec!["not a certificate".into()],
        ..test_config()
    };
    let err = GuardedClient::new(cfg, loopback_guard(StaticResolver::new())).expect_err("bad");
    assert_eq!(err.code(), "EGRESS_ROOT_CERT_INVALID");
    let cfg = ClientConfig {
        extra_root_certs_pem: vec![
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ],
        ..test_config()
    };
    assert!(GuardedClient::new(cfg, loopback_guard(StaticResolver::new())).is_err());
    for cfg in [
        ClientConfig {
            request_timeout: Duration::ZERO,
            ..test_config()
        },
        ClientConfig {
            user_agent: "bad\nagent".into(),
            ..test_config()
        },
        ClientConfig {
            max_response_body: usize::MAX,
            ..test_config()
        },
    ] {
        let err = GuardedClient::new(cfg, loopback_guard(StaticResolver::new())).expect_err("bad");
        assert_eq!(err.code(), "EGRESS_CONFIG_INVALID");
    }
}

#[tokio::test]
async fn mutual_tls() {
    let server_ca = ca("Test Server CA");
    let client_ca = ca("Test Client CA");
    let other_ca = ca("Some Other CA");
    let server = start(
        "127.0.0.1:0",
        Some(server_tls(&server_ca, Some(&client_ca))),
    )
    .await;
    let url = format!("https://receiver.test:{}/", server.addr.port());
    let cfg = ClientConfig {
        extra_root_certs_pem: vec![server_ca.pem.clone()],
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));

    let good = identity("endpoint-1", &client_ca);
    good.validate().expect("valid identity");
    let mut req = get(url.clone());
    req.identity = Some(good.clone());
    let resp = c.send(req).await.expect("accepted with the right cert");
    assert_eq!(resp.status, StatusCode::OK);
    // Reused on the identity's own pool.
    for _ in 0..3 {
        let mut req = get(url.clone());
        req.identity = Some(good.clone());
        c.send(req).await.expect("again");
    }
    assert_eq!(server.seen.connections(), 1);

    // No identity: a separate pool, so the authenticated connection is not reused, and the
    // server refuses the handshake.
    let err = c.send(get(url.clone())).await.expect_err("no cert");
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert_eq!(err.code(), "TLS_CLIENT_CERT_REJECTED", "{err}");

    // A certificate from another CA: refused.
    let wrong = identity("endpoint-2", &other_ca);
    let mut req = get(url.clone());
    req.identity = Some(wrong);
    let err = c.send(req).await.expect_err("wrong cert");
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert_eq!(err.code(), "TLS_CLIENT_CERT_REJECTED", "{err}");

    // Same id, different material (a rotated certificate) is not served from the old pool.
    let rotated = Arc::new(ClientIdentity {
        id: "endpoint-1".into(),
        ..(*identity("x", &other_ca)).clone()
    });
    let mut req = get(url.clone());
    req.identity = Some(rotated);
    let err = c.send(req).await.expect_err("rotated to a bad cert");
    assert_eq!(err.class(), ErrorClass::Tls, "{err}");
    assert_eq!(err.code(), "TLS_CLIENT_CERT_REJECTED", "{err}");
    // ... and back to the good one.
    let mut req = get(url.clone());
    req.identity = Some(good.clone());
    c.send(req).await.expect("good again");
}

#[tokio::test]
async fn invalid_identity_is_config_error() {
    let client_ca = ca("Test Client CA");
    let good = identity("a", &client_ca);
    let other = identity("b", &client_ca);
    let cases = [
        ClientIdentity {
            id: "x".into(),
            cert_chain_pem: "garbage".into(),
            private_key_pem: good.private_key_pem.clone(),
        },
        ClientIdentity {
            id: "x".into(),
            cert_chain_pem: good.cert_chain_pem.clone(),
            private_key_pem: "garbage".into(),
        },
        // Key of another certificate.
        ClientIdentity {
            id: "x".into(),
            cert_chain_pem: good.cert_chain_pem.clone(),
            private_key_pem: other.private_key_pem.clone(),
        },
        ClientIdentity {
            id: String::new(),
            cert_chain_pem: good.cert_chain_pem.clone(),
            private_key_pem: good.private_key_pem.clone(),
        },
    ];
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    for ident in cases {
        let err = ident.validate().expect_err("invalid");
        assert_eq!(err.code(), "CLIENT_IDENTITY_INVALID");
        assert!(
            !format!("{ident:?}").contains("PRIVATE KEY"),
            "key never printed"
        );
        let mut req = get(format!("http://receiver.test:{}/", server.addr.port()));
        req.identity = Some(Arc::new(ident));
        let err = c.send(req).await.expect_err("invalid identity");
        assert_eq!(err.class(), ErrorClass::Config);
        assert_eq!(err.code(), "CLIENT_IDENTITY_INVALID");
        assert!(!err.is_retryable());
    }
    assert_eq!(server.seen.connections(), 0);
}

#[tokio::test]
async fn bind_address_is_the_source() {
    let server = start("127.0.0.1:0", None).await;
    let cfg = ClientConfig {
        bind_addresses: vec![ip("127.0.0.2")],
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let resp = c
        .send(get(format!("http://receiver.test:{}/", server.addr.port())))
        .await
        .expect("sent");
    assert_eq!(resp.local_addr.map(|a| a.ip()), Some(ip("127.0.0.2")));
    assert_eq!(server.seen.peers()[0].ip(), ip("127.0.0.2"));
    assert_eq!(
        hdr(&resp.headers, "x-peer"),
        resp.local_addr.expect("local").to_string()
    );
}

#[tokio::test]
async fn bind_addresses_round_robin() {
    let server = start("127.0.0.1:0", None).await;
    let cfg = ClientConfig {
        bind_addresses: vec![ip("127.0.0.2"), ip("127.0.0.3")],
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let mut sources = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let resp = c
            .send(get(format!("http://receiver.test:{}/", server.addr.port())))
            .await
            .expect("sent");
        sources.insert(resp.local_addr.expect("local").ip());
    }
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.2"), ip("127.0.0.3")]
    );
    // One pooled connection per bind address.
    assert_eq!(server.seen.connections(), 2);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let resp = c
        .send(get(format!(
            "http://receiver.test:{}/redirect",
            server.addr.port()
        )))
        .await
        .expect("3xx returned");
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(
        hdr(&resp.headers, "location"),
        "http://127.0.0.1:9/elsewhere"
    );
    assert_eq!(&resp.body[..], b"moved");
    assert_eq!(server.seen.connections(), 1);
}

#[tokio::test]
async fn response_body_is_truncated_at_the_limit() {
    let server = start("127.0.0.1:0", None).await;
    let cfg = ClientConfig {
        max_response_body: 1024,
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let base = format!("http://receiver.test:{}", server.addr.port());
    let resp = c.send(get(format!("{base}/big"))).await.expect("big");
    assert_eq!(resp.body.len(), 1024);
    assert!(resp.body_truncated);
    assert!(resp.body.iter().all(|b| *b == b'a'));
    let resp = c.send(get(format!("{base}/exact"))).await.expect("exact");
    assert_eq!(resp.body.len(), 1024);
    assert!(!resp.body_truncated);
    let resp = c
        .send(get(format!("{base}/small-over")))
        .await
        .expect("over");
    assert_eq!(resp.body.len(), 1024);
    assert!(resp.body_truncated);
    // The small excess was drained, so the connection was reusable; the 200 KB one was dropped.
    let resp = c.send(get(format!("{base}/"))).await.expect("after");
    assert_eq!(&resp.body[..], b"ok");
    assert!(
        server.seen.connections() <= 2,
        "{}",
        server.seen.connections()
    );

    let cfg = ClientConfig {
        max_response_body: 0,
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let resp = c.send(get(format!("{base}/exact"))).await.expect("zero");
    assert!(resp.body.is_empty());
    assert!(resp.body_truncated);
}

#[tokio::test]
async fn slow_server_times_out() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let mut req = get(format!("http://receiver.test:{}/slow", server.addr.port()));
    req.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let err = c.send(req).await.expect_err("times out");
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(err.code(), "REQUEST_TIMEOUT");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));

    // The config default applies too.
    let cfg = ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let err = client(cfg, loopback_guard(receiver_resolver()))
        .send(get(format!(
            "http://receiver.test:{}/slow",
            server.addr.port()
        )))
        .await
        .expect_err("times out");
    assert_eq!(err.code(), "REQUEST_TIMEOUT");
}

#[tokio::test]
async fn connection_refused_is_connect_class() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let err = c
        .send(get(format!("http://receiver.test:{port}/")))
        .await
        .expect_err("refused");
    assert_eq!(err.class(), ErrorClass::Connect, "{err}");
    assert_eq!(err.code(), "CONNECT_ERROR");
    assert!(err.is_retryable());
    assert!(err.guard_error().is_some());
}

#[tokio::test]
async fn dns_failure_is_dns_class() {
    let c = client(test_config(), loopback_guard(StaticResolver::new()));
    let err = c
        .send(get("http://unknown.test/".into()))
        .await
        .expect_err("no such host");
    assert_eq!(err.class(), ErrorClass::Dns);
    assert_eq!(err.code(), "DNS_NO_ADDRESSES");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn dns_rebinding_is_caught_on_the_next_connection() {
    // The operator allows 127.0.0.2 only. The name first answers 127.0.0.2 and then 127.0.0.1.
    let server = start("127.0.0.2:0", None).await;
    let port = server.addr.port();
    let resolver = Arc::new(SequenceResolver::new().with(
        "rebind.test",
        vec![vec![ip("127.0.0.2")], vec![ip("127.0.0.1")]],
    ));
    let allow: Vec<IpNet> = vec!["127.0.0.2/32".parse().expect("net")];
    let guard = Arc::new(Guard::new(
        AddressPolicy::new(allow, vec![]),
        resolver.clone() as Arc<dyn Resolve>,
    ));
    let c = client(test_config(), guard);
    // `/close` makes the server close the connection, so the next request needs a new one.
    let resp = c
        .send(get(format!("http://rebind.test:{port}/close")))
        .await
        .expect("first answer is allowed");
    assert_eq!(
        resp.remote_addr,
        Some(SocketAddr::new(ip("127.0.0.2"), port))
    );
    assert_eq!(resolver.queries("rebind.test"), 1);
    let err = c
        .send(get(format!("http://rebind.test:{port}/")))
        .await
        .expect_err("rebound answer refused");
    assert_eq!(err.class(), ErrorClass::Policy, "{err}");
    assert_eq!(err.code(), "DESTINATION_DENIED");
    assert_eq!(
        err.guard_error().and_then(|g| g.denied()).map(|d| d.code()),
        Some("loopback")
    );
    assert_eq!(resolver.queries("rebind.test"), 2);
    assert_eq!(server.seen.connections(), 1);
}

#[tokio::test]
async fn controlled_headers_cannot_be_overridden() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let port = server.addr.port();
    let mut req = OutboundRequest::new(Method::POST, format!("http://receiver.test:{port}/echo"));
    req.body = Bytes::from_static(b"abc");
    req.headers
        .insert("host", HeaderValue::from_static("internal.example"));
    req.headers
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    req.headers
        .insert("content-length", HeaderValue::from_static("999"));
    req.headers
        .insert("connection", HeaderValue::from_static("upgrade"));
    req.headers
        .insert("user-agent", HeaderValue::from_static("custom-agent/1"));
    let resp = c.send(req).await.expect("sent");
    assert_eq!(
        hdr(&resp.headers, "x-host"),
        format!("receiver.test:{port}")
    );
    assert_eq!(hdr(&resp.headers, "x-te"), "");
    assert_eq!(hdr(&resp.headers, "x-ua"), "custom-agent/1");
    assert_eq!(&resp.body[..], b"abc");

    let err = c
        .send(OutboundRequest::new(
            Method::CONNECT,
            format!("http://receiver.test:{port}/"),
        ))
        .await
        .expect_err("CONNECT");
    assert_eq!(err.class(), ErrorClass::Internal);
}

#[tokio::test]
async fn url_is_validated_on_every_send() {
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    for (url, code) in [
        ("ftp://receiver.test/", "URL_SCHEME_NOT_ALLOWED"),
        ("http://user:pw@receiver.test/", "URL_USERINFO_NOT_ALLOWED"),
        ("http://receiver.test/#x", "URL_FRAGMENT_NOT_ALLOWED"),
        ("http://10.0.0.1/", "URL_ADDRESS_DENIED"),
        ("http://169.254.169.254/", "URL_ADDRESS_DENIED"),
        ("not a url", "URL_INVALID_CHARACTER"),
    ] {
        let err = c.send(get(url.into())).await.expect_err(url);
        assert_eq!(err.code(), code, "{url}");
        assert_eq!(err.class(), ErrorClass::Policy);
    }
    assert!(c.check_url("http://receiver.test/").is_ok());
    assert!(c.check_url("http://127.0.0.1.nip.io/").is_ok());
    assert!(matches!(
        c.check_url("http://10.0.0.1/"),
        Err(SendError::Url(_))
    ));
}

#[tokio::test]
async fn odd_but_valid_url_characters_reach_the_server() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let resp = c
        .send(get(format!(
            "http://receiver.test:{}/p|a^th?q={{x}}&r=|^`",
            server.addr.port()
        )))
        .await
        .expect("sent");
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        hdr(&resp.headers, "x-uri").starts_with("/p%7Ca%5Eth?"),
        "{}",
        hdr(&resp.headers, "x-uri")
    );
}

async fn measure(c: GuardedClient, url: String, label: &str, connections: &Seen) {
    let total = 20_000u32;
    let workers = 32u32;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let c = c.clone();
        let url = url.clone();
        tasks.spawn(async move {
            for _ in 0..total / workers {
                let mut req = OutboundRequest::new(Method::POST, url.clone());
                req.body = Bytes::from_static(b"{\"type\":\"ping\"}");
                c.send(req).await.expect("sent");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label}: {total} requests in {secs:.2}s = {:.0}/s over {} connections",
        f64::from(total) / secs,
        connections.connections()
    );
}

/// `cargo test --release -p hookwarden-egress --test client -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput_keep_alive() {
    let server = start("127.0.0.1:0", None).await;
    let c = client(test_config(), loopback_guard(receiver_resolver()));
    let url = format!("http://receiver.test:{}/echo", server.addr.port());
    measure(c, url, "http", &server.seen).await;
}

/// Same over TLS (the server's TLS runs in the same process, on the same two cores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput_keep_alive_tls() {
    let server_ca = ca("Test Server CA");
    let server = start("127.0.0.1:0", Some(server_tls(&server_ca, None))).await;
    let cfg = ClientConfig {
        extra_root_certs_pem: vec![server_ca.pem.clone()],
        ..test_config()
    };
    let c = client(cfg, loopback_guard(receiver_resolver()));
    let url = format!("https://receiver.test:{}/echo", server.addr.port());
    measure(c, url, "https", &server.seen).await;
}
