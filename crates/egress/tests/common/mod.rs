//! Shared by the proxy tests: loopback test servers, a raw proxy client, and an in-process
//! egress proxy. Only 127.0.0.0/8 is ever dialled.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookwarden_egress::proxy::{self, ProxyConfig, RunningProxy};
use hookwarden_netguard::Resolve;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

/// A test HTTP server: `/` answers `ok from <name>`, `/redirect?to=URL` answers 302 to URL,
/// `/headers` echoes the request headers (one `name: value` per line). Records peers.
#[derive(Clone)]
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl TestServer {
    pub(crate) async fn start(bind: SocketAddr, name: &'static str) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(bind).await?;
        let s = TestServer {
            addr: listener.local_addr()?,
            hits: Arc::default(),
            peers: Arc::default(),
        };
        let s2 = s.clone();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                s2.peers.lock().expect("lock").push(peer);
                let hits = s2.hits.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        async move { Ok::<_, Infallible>(answer(name, &req)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(s)
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("lock").clone()
    }
}

fn answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/redirect" {
        let to = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("to="))
            .unwrap_or("/");
        return Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    if path == "/headers" {
        let mut text = String::new();
        for (k, v) in req.headers() {
            text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        return Response::new(Full::new(Bytes::from(text)));
    }
    Response::new(Full::new(Bytes::from(format!("ok from {name}"))))
}

/// A "public" server on 127.0.0.2 and its internal twin on 127.0.0.1 with the same port (what a
/// rebinding or redirect attack would reach instead). Retries until both binds succeed.
pub(crate) async fn twin_servers() -> (TestServer, TestServer) {
    for _ in 0..50 {
        let public = TestServer::start("127.0.0.2:0".parse().expect("addr"), "public")
            .await
            .expect("bind 127.0.0.2");
        let twin = SocketAddr::new(ip("127.0.0.1"), public.addr.port());
        if let Ok(internal) = TestServer::start(twin, "internal").await {
            return (public, internal);
        }
    }
    panic!("could not bind twin test servers");
}

/// A proxy reply: status, headers (lowercase names), and the body read so far.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    Some((status, headers))
}

/// Read one response head (and, without `head_only`, everything until the peer closes).
pub(crate) async fn read_reply(stream: &mut TcpStream, head_only: bool) -> Option<RawReply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let fut = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, headers) = parse_head(&buf[..end])?;
                let mut body = buf[end + 4..].to_vec();
                if !head_only {
                    let _ = stream.read_to_end(&mut body).await;
                }
                return Some(RawReply {
                    status,
                    headers,
                    body,
                });
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 64 * 1024 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

/// Send `raw` (a request head, `\r\n\r\n` included) to the proxy; read the reply head. For a
/// CONNECT answered 200, the stream is returned to use the tunnel.
pub(crate) async fn raw_request(proxy: SocketAddr, raw: &str) -> (Option<RawReply>, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.expect("connect to proxy");
    s.write_all(raw.as_bytes()).await.expect("write");
    let reply = read_reply(&mut s, raw.starts_with("CONNECT")).await;
    (reply, s)
}

/// `CONNECT authority`, then (when 200) `GET /` through the tunnel; returns the CONNECT reply
/// and the tunnelled response.
pub(crate) async fn connect_and_get(
    proxy: SocketAddr,
    authority: &str,
    auth: Option<&str>,
    path: &str,
) -> (Option<RawReply>, Option<RawReply>) {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let (reply, mut s) = raw_request(
        proxy,
        &format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n"),
    )
    .await;
    if reply.as_ref().is_none_or(|r| r.status != 200) {
        return (reply, None);
    }
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (reply, None);
    }
    let inner = read_reply(&mut s, false).await;
    (reply, inner)
}

/// An absolute-form request through the proxy.
pub(crate) async fn absolute_get(
    proxy: SocketAddr,
    url: &str,
    auth: Option<&str>,
) -> Option<RawReply> {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("x");
    raw_request(
        proxy,
        &format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
    .0
}

/// Start an in-process proxy from TOML (listen defaults to 127.0.0.1:0).
pub(crate) async fn start_proxy(toml: &str, resolver: Option<Arc<dyn Resolve>>) -> RunningProxy {
    let mut cfg = ProxyConfig::parse(toml).expect("proxy config");
    cfg.listen = "127.0.0.1:0".into();
    proxy::start(cfg, resolver).await.expect("start proxy")
}
