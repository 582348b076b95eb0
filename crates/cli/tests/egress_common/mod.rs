//! Helpers for the egress tests: the real `hookwarden egress-proxy` binary, a raw proxy client,
//! and TLS servers on 127.0.0.1 (certificates made with rcgen). Only loopback traffic.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hookwarden");

/// A running `hookwarden egress-proxy`.
pub(crate) struct ProxyProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// The TLS listener, when the configuration has `[tls]`.
    pub tls: Option<SocketAddr>,
    pub log: PathBuf,
}

impl ProxyProc {
    /// Writes `config` to `dir/<name>.toml`, starts the proxy on 127.0.0.1:0 and waits until it
    /// reports its address.
    pub(crate) fn start(dir: &Path, name: &str, config: &str) -> ProxyProc {
        Self::start_on(dir, name, config, "127.0.0.1:0")
    }

    /// [`ProxyProc::start`] on a given listen address.
    pub(crate) fn start_on(dir: &Path, name: &str, config: &str, listen: &str) -> ProxyProc {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(BIN)
            .args(["egress-proxy", "--config"])
            .arg(&path)
            .args(["--listen", listen])
            .env("HOOKWARDEN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn hookwarden egress-proxy");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut metrics, mut tls) = (None, None, None);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(a) =
                        line.strip_prefix("hookwarden egress-proxy: listening on http://")
                    {
                        addr = Some(a.trim().parse().unwrap());
                    }
                    if let Some(a) =
                        line.strip_prefix("hookwarden egress-proxy: metrics on http://")
                    {
                        metrics = Some(a.trim().trim_end_matches("/metrics").parse().unwrap());
                    }
                    if let Some(a) =
                        line.strip_prefix("hookwarden egress-proxy: TLS listener on https://")
                    {
                        tls = Some(a.trim().parse().unwrap());
                    }
                    let wants_metrics = config.contains("metrics_listen");
                    let wants_tls = config.contains("\n[tls]");
                    if addr.is_some()
                        && (!wants_metrics || metrics.is_some())
                        && (!wants_tls || tls.is_some())
                    {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!(
                            "egress-proxy exited: {st}\n{}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                }
                Err(_) => break,
            }
        }
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let addr = addr.unwrap_or_else(|| {
            panic!(
                "egress-proxy did not report its address\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        ProxyProc {
            child,
            addr,
            metrics,
            tls,
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A proxy reply read off a raw connection: status, headers (lowercase names), body so far.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response head (and the body when it has a Content-Length), within 10 s.
pub(crate) async fn read_reply(s: &mut TcpStream) -> RawReply {
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(Instant::now() < deadline, "no reply head: {buf:?}");
        assert!(buf.len() < 65536, "reply head too large");
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("reply timed out")
            .expect("read failed");
        assert!(
            n > 0,
            "connection closed before a reply: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len && Instant::now() < deadline {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("body timed out")
            .expect("read failed");
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    RawReply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// `Proxy-Authorization` value for Basic credentials.
pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Sends `CONNECT target` (with `auth` if any) on a new connection and reads the reply. The
/// connection is returned so that a tunnel can be used.
pub(crate) async fn connect(
    proxy: SocketAddr,
    target: &str,
    auth: Option<&str>,
) -> (RawReply, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let r = read_reply(&mut s).await;
    (r, s)
}

/// Sends a raw request (already formatted) to the proxy and reads the reply.
pub(crate) async fn raw(proxy: SocketAddr, request: &str) -> RawReply {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    read_reply(&mut s).await
}

/// A certificate authority for tests, and leaf certificates it signs.
pub(crate) struct TestCa {
    pub cert: rcgen::Certificate,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa {
            cert,
            issuer: rcgen::Issuer::new(p, key),
            pem,
        }
    }

    /// A client certificate with common name `cn` (PEM cert, PEM key).
    pub(crate) fn client(&self, cn: &str) -> (String, String) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_string());
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `names` (PEM cert, PEM key).
    pub(crate) fn server(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn certs_of(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn key_of(pem: &str) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// What a TLS test server saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct TlsSeen {
    pub path: String,
    /// SHA-256 (hex) of the client certificate presented, if any.
    pub client_cert_sha256: Option<String>,
}

/// An HTTPS server on 127.0.0.1. With `client_roots`, it requires a client certificate that
/// chains to one of them (handshakes without one, or with another, fail).
#[derive(Clone)]
pub(crate) struct TlsServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<TlsSeen>>>,
    pub handshake_failures: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsServer {
    pub(crate) async fn start(
        cert_pem: &str,
        key_pem: &str,
        client_roots: Option<&[String]>,
    ) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_roots {
            Some(roots) => {
                let mut store = rustls::RootCertStore::empty();
                for pem in roots {
                    for c in certs_of(pem) {
                        store.add(c).unwrap();
                    }
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(store),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs_of(cert_pem), key_of(key_pem))
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TlsServer {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            handshake_failures: Arc::default(),
        };
        let s2 = server.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let s3 = s2.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(_) => {
                            s3.handshake_failures
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                    };
                    let fp = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| {
                            use sha2::Digest;
                            hex::encode(sha2::Sha256::digest(c.as_ref()))
                        });
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let s4 = s3.clone();
                        let fp = fp.clone();
                        async move {
                            s4.seen.lock().unwrap().push(TlsSeen {
                                path: req.uri().path().to_string(),
                                client_cert_sha256: fp,
                            });
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"tls ok"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        server
    }

    pub(crate) fn seen(&self) -> Vec<TlsSeen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Runs a command with a time limit; returns (exit code, stdout, stderr).
pub(crate) fn run(cmd: &mut Command, secs: u64) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs curl with `args` (bounded to 10 s, no proxy from the environment, body discarded) and
/// returns (exit code, response heads, stderr).
pub(crate) fn curl_head(args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "10",
        "--noproxy",
        "",
        "-o",
        "/dev/null",
    ])
    .args(["-D", "-"])
    .args(args);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env_remove(var);
    }
    run(&mut c, 20)
}
