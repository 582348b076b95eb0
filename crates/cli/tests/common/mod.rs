//! Test harness: runs the real `hookwarden` binary on 127.0.0.1 and local receivers that record
//! what they get. Only loopback traffic.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) mod inproc;
pub(crate) mod pg;
#[allow(unused_imports)]
pub(crate) use pg::Db;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hookwarden");

/// Config for tests: loopback endpoints allowed, plain HTTP allowed, fast retries.
pub(crate) fn test_config(extra: &str) -> String {
    test_config_with(extra, "")
}

/// `test_config` with extra keys inside its `[delivery]` section.
pub(crate) fn test_config_with(extra: &str, delivery: &str) -> String {
    format!(
        r#"
[egress]
allow_ranges = ["127.0.0.0/8"]
allow_http = true

[delivery]
backoff_initial_secs = 1
backoff_multiplier = 1.0
jitter = 0.0
request_timeout_secs = 5
connect_timeout_secs = 2
lease_secs = 30
claim_interval_ms = 100
{delivery}

[storage]
sqlite_synchronous = "normal"

{extra}
"#
    )
}

pub(crate) struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub key: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// Starts `serve` with `config_toml` in `dir` and waits until it listens.
    pub(crate) fn start_in(dir: &Path, config_toml: &str, key: Option<String>) -> Server {
        Self::start_listening(dir, config_toml, key, "127.0.0.1:0")
    }

    /// `start_in` with another listen address (e.g. `[::1]:0`).
    pub(crate) fn start_listening(
        dir: &Path,
        config_toml: &str,
        key: Option<String>,
        listen: &str,
    ) -> Server {
        let config = dir.join("hookwarden.toml");
        std::fs::write(&config, config_toml).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", listen])
            .env("HOOKWARDEN_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn hookwarden");
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
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut addr = None;
        let mut new_key = None;
        let mut lines = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(a) = line
                        .strip_prefix("hookwarden: listening on http://")
                        .or_else(|| line.strip_prefix("hookwarden: listening on https://"))
                    {
                        addr = Some(a.trim().parse::<SocketAddr>().unwrap());
                    }
                    if let Some(i) = line.find("hwk_") {
                        new_key = Some(line[i..].trim().to_string());
                    }
                    let done = line.starts_with("hookwarden: admin API key")
                        || (line.starts_with("hookwarden: data in") && key.is_some());
                    lines.push(line);
                    if done && addr.is_some() {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let log =
                            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
                        panic!("hookwarden exited early: {status}\n{log}");
                    }
                    if addr.is_some()
                        && key.is_some()
                        && lines.iter().any(|l| l.starts_with("hookwarden: data in"))
                    {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let addr = addr.unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("hookwarden did not report its address: {lines:?}\n{log}")
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let key = key
            .or(new_key)
            .expect("no API key: first start must print one");
        Server {
            child,
            addr,
            key,
            dir: dir.to_path_buf(),
            config,
            stdout_lines: lines,
        }
    }

    pub(crate) fn api(&self) -> Api {
        Api::new(self.addr, &self.key)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    key: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Over HTTPS to `addr`, trusting this certificate (a server with `[server.tls]`, which
    /// refuses the admin API over plain HTTP).
    tls: Option<(SocketAddr, Arc<rustls::ClientConfig>)>,
}

/// A rustls client configuration that trusts only `ca_pem`.
pub(crate) fn tls_client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

impl Api {
    pub(crate) fn new(addr: SocketAddr, key: &str) -> Api {
        Api {
            base: format!("http://{addr}"),
            key: key.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            tls: None,
        }
    }

    /// The API over HTTPS (the server's certificate names `localhost`).
    pub(crate) fn new_tls(addr: SocketAddr, key: &str, ca_pem: &str) -> Api {
        Api {
            tls: Some((addr, tls_client_config(ca_pem))),
            ..Api::new(addr, key)
        }
    }

    pub(crate) fn with_key(&self, key: &str) -> Api {
        Api {
            key: key.to_string(),
            ..self.clone()
        }
    }

    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        if let Some((addr, cfg)) = &self.tls {
            return tls_request(*addr, cfg.clone(), method, path, headers, body).await;
        }
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![("authorization", auth.as_str())];
        let bytes = match &body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(b).unwrap()
            }
            None => Vec::new(),
        };
        let (status, _, body) = self.raw(method, path, &headers, bytes).await;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        (status, v)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Creates an endpoint and returns (id, secret).
    pub(crate) async fn endpoint(&self, body: Value) -> (String, String) {
        let (s, v) = self.post("/api/v1/endpoints", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    pub(crate) async fn event(&self, ty: &str, payload: Value) -> String {
        let (s, v) = self
            .post(
                "/api/v1/events",
                serde_json::json!({"type": ty, "payload": payload}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Polls until `f` is true for the JSON at `path` (or panics after `secs`).
    pub(crate) async fn wait_for(
        &self,
        path: &str,
        secs: u64,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, v) = self.get(path).await;
            if f(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting on {path}: last {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One request over a new TLS connection to `addr` (server name `localhost`).
pub(crate) async fn tls_request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        sender.send_request(b.body(Full::new(Bytes::from(body))).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// Whether any file under `dir` contains `needle`.
pub(crate) fn files_contain(dir: &Path, needle: &str) -> bool {
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

#[derive(Clone, Debug)]
pub(crate) struct Captured {
    pub at: Instant,
    pub peer: SocketAddr,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A local webhook receiver that records every request and answers from a script (then 200).
#[derive(Clone)]
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Captured>>>,
    /// Requests answered (the response was produced, after any delay).
    pub acked: Arc<std::sync::atomic::AtomicUsize>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0").await
    }

    pub(crate) async fn start_on(bind: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            addr,
            got: Arc::default(),
            acked: Arc::default(),
            script: Arc::default(),
            default: Arc::new(Mutex::new(Reply {
                status: 200,
                headers: vec![],
                body: "ok".into(),
                delay: Duration::ZERO,
            })),
        };
        let r2 = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    break;
                };
                let r3 = r2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let r4 = r3.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let reply = r4
                                .script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or_else(|| r4.default.lock().unwrap().clone());
                            r4.got.lock().unwrap().push(Captured {
                                at: Instant::now(),
                                peer,
                                headers,
                                body,
                            });
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            r4.acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let mut resp = Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        r
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    pub(crate) fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    pub(crate) fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub(crate) fn all(&self) -> Vec<Captured> {
        self.got.lock().unwrap().clone()
    }

    pub(crate) async fn wait_count(&self, n: usize, secs: u64) -> Vec<Captured> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.count() < n {
            if Instant::now() > deadline {
                panic!("receiver got {} of {n} requests in {secs} s", self.count());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.all()
    }
}

/// Runs `hookwarden <args…> --config <dir>/hookwarden.toml --data-dir <dir>/data` (the files a
/// [`Server`] started in `dir` uses): (success, stdout, stderr).
pub(crate) fn cli_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir.join("hookwarden.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `serve` with `config` (a file path) and the data of `dir`, expecting it to refuse to
/// start; returns what it said on stderr.
pub(crate) fn serve_refuses(dir: &Path, config: &Path) -> String {
    let config = config.to_str().unwrap();
    let (ok, printed) = serve_exit(dir, &["--config", config, "--listen", "127.0.0.1:0"], &[]);
    assert!(!ok, "serve started");
    printed
}

/// `hookwarden serve --data-dir <dir>/data <args>` with `env` set, for a start that ends (is
/// refused): whether it exited 0, and what it printed (stdout, then stderr).
pub(crate) fn serve_exit(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// A plain-HTTP client whose connections leave from `local` (any 127.0.0.0/8 address).
pub(crate) async fn post_from(
    local: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> StatusCode {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(local.parse::<std::net::IpAddr>().unwrap()));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(c);
    let mut b = Request::builder().method("POST").uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

/// The interop Python interpreter (see .ci/setup-interop).
pub(crate) fn interop_python() -> PathBuf {
    if let Ok(p) = std::env::var("HOOKWARDEN_INTEROP_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.interop/venv/bin/python");
    assert!(
        p.exists(),
        "interop Python not found at {}: run .ci/setup-interop first",
        p.display()
    );
    p
}
