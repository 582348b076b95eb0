//! Sending through egress proxies: every connection is an HTTP `CONNECT` tunnel through one of
//! the configured proxies (for `https` and `http` targets alike), chosen in turn among the
//! healthy ones, with failover to the next when a proxy cannot be reached. There is never a
//! direct connection when proxies are configured.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hookwarden_netguard::{Resolve, TargetHost};
use http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::error::{ConnectError, EgressError, ErrorClass};
use crate::proxy::{
    EGRESS_ADDRESS_HEADER, ERROR_HEADER, TARGET_HOST_HEADER, UPSTREAM_ADDRESS_HEADER,
};

/// Most proxies.
pub(crate) const MAX_PROXIES: usize = 64;
/// Largest `CONNECT` reply head read.
const MAX_REPLY_HEAD: usize = 16 * 1024;

/// One egress proxy: `http://host:port` and optional Basic credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyEndpoint {
    /// `http://host:port` (no credentials, no path).
    pub url: String,
    /// Basic auth user name.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
}

impl fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyEndpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

struct Proxy {
    host: TargetHost,
    port: u16,
    /// `host:port` for messages.
    name: String,
    /// The `Proxy-Authorization` header line, if any.
    auth: Option<String>,
    healthy: AtomicBool,
}

/// The configured proxies and their health.
pub(crate) struct ProxySet {
    proxies: Vec<Proxy>,
    next: AtomicUsize,
    resolver: Arc<dyn Resolve>,
    connect_timeout: Duration,
}

impl fmt::Debug for ProxySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.proxies.iter().map(|p| &p.name))
            .finish()
    }
}

fn parse_endpoint(p: &ProxyEndpoint) -> Result<Proxy, EgressError> {
    let bad = |why: &str| EgressError::Config(format!("proxy {:?}: {why}", p.url));
    let uri: Uri = p.url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// proxy URLs are supported"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("put credentials in username/password, not in the URL"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("a proxy URL has no path or query"));
    }
    let host = TargetHost::from_host_str(authority.host()).ok_or_else(|| bad("invalid host"))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("the port is required"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    let auth = match (&p.username, &p.password) {
        (None, None) => None,
        (Some(u), pw) => {
            if u.contains(':') || u.len() > 256 || pw.as_ref().is_some_and(|p| p.len() > 1024) {
                return Err(bad("invalid username or password"));
            }
            let token = STANDARD.encode(format!("{u}:{}", pw.as_deref().unwrap_or("")));
            Some(format!("Proxy-Authorization: Basic {token}\r\n"))
        }
        (None, Some(_)) => return Err(bad("a password needs a username")),
    };
    Ok(Proxy {
        name: authority.as_str().to_owned(),
        host,
        port,
        auth,
        healthy: AtomicBool::new(true),
    })
}

/// The outcome of one `CONNECT`.
pub(crate) struct Tunnel {
    pub(crate) stream: TcpStream,
    /// The egress address the proxy reported (else the local address of our connection to it).
    pub(crate) local: SocketAddr,
    /// The destination the proxy reported (else the proxy's address).
    pub(crate) remote: SocketAddr,
    /// The proxy's address.
    pub(crate) proxy: SocketAddr,
}

impl ProxySet {
    pub(crate) fn new(
        endpoints: &[ProxyEndpoint],
        resolver: Arc<dyn Resolve>,
        connect_timeout: Duration,
    ) -> Result<Option<Arc<ProxySet>>, EgressError> {
        if endpoints.is_empty() {
            return Ok(None);
        }
        if endpoints.len() > MAX_PROXIES {
            return Err(EgressError::Config(format!(
                "at most {MAX_PROXIES} proxies"
            )));
        }
        let proxies = endpoints
            .iter()
            .map(parse_endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(ProxySet {
            proxies,
            next: AtomicUsize::new(0),
            resolver,
            connect_timeout,
        })))
    }

    /// (`host:port`, healthy) of every proxy.
    pub(crate) fn health(&self) -> Vec<(String, bool)> {
        self.proxies
            .iter()
            .map(|p| (p.name.clone(), p.healthy.load(Ordering::Relaxed)))
            .collect()
    }

    /// Healthy proxies first (starting at the next in turn), then the others.
    fn order(&self) -> Vec<&Proxy> {
        let n = self.proxies.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let rotated = (0..n).filter_map(|i| self.proxies.get((start + i) % n));
        let (mut healthy, sick): (Vec<&Proxy>, Vec<&Proxy>) =
            rotated.partition(|p| p.healthy.load(Ordering::Relaxed));
        healthy.extend(sick);
        healthy
    }

    async fn addrs(&self, p: &Proxy) -> io::Result<Vec<SocketAddr>> {
        match &p.host {
            TargetHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, p.port)]),
            TargetHost::Domain(d) => {
                let ips = tokio::time::timeout(self.connect_timeout, self.resolver.resolve(d))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "DNS lookup timed out")
                    })??;
                Ok(ips
                    .into_iter()
                    .take(8)
                    .map(|ip| SocketAddr::new(ip, p.port))
                    .collect())
            }
        }
    }

    async fn tcp(
        &self,
        p: &Proxy,
        bind: Option<IpAddr>,
        budget: Duration,
    ) -> io::Result<TcpStream> {
        let addrs = tokio::time::timeout(budget, self.addrs(p))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS lookup timed out"))??;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the proxy host has no address");
        for addr in addrs
            .into_iter()
            .filter(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(b) = bind {
                socket.bind(SocketAddr::new(b, 0))?;
            }
            match tokio::time::timeout(budget, socket.connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, "connect to the proxy timed out")
                }
            }
        }
        Err(last)
    }

    /// A tunnel to `authority` (a checked `ip:port`) through the first proxy that gives one,
    /// naming `name` (the host it was resolved from) in [`TARGET_HOST_HEADER`]. Proxies that
    /// cannot be reached (or refuse our credentials, or are overloaded) are marked unhealthy and
    /// the next is tried; a refusal of the destination (403, DNS, connect failures reported by
    /// the proxy) is final.
    pub(crate) async fn connect(
        &self,
        authority: &str,
        name: Option<&str>,
        bind: Option<IpAddr>,
    ) -> Result<Tunnel, ConnectError> {
        let order = self.order();
        let now = Instant::now();
        // A huge configured timeout must not overflow (`Instant + Duration` panics).
        let deadline = now
            .checked_add(self.connect_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let mut last: Option<ConnectError> = None;
        for (i, p) in order.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let left = u32::try_from(order.len() - i).unwrap_or(1).max(1);
            let budget = (deadline - now) / left;
            let stream = match self.tcp(p, bind, budget).await {
                Ok(s) => s,
                Err(e) => {
                    p.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(proxy = %p.name, error = %e, "egress proxy unreachable; trying the next");
                    last = Some(proxy_error(
                        ErrorClass::Proxy,
                        "PROXY_UNREACHABLE",
                        format!("egress proxy {} is unreachable: {e}", p.name),
                    ));
                    continue;
                }
            };
            match self.handshake(p, stream, authority, name).await {
                Ok(t) => {
                    p.healthy.store(true, Ordering::Relaxed);
                    return Ok(t);
                }
                Err((e, failover)) => {
                    if !failover {
                        return Err(e);
                    }
                    p.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(proxy = %p.name, error = %e, "egress proxy failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            proxy_error(
                ErrorClass::Timeout,
                "PROXY_TIMEOUT",
                "no egress proxy answered in time".into(),
            )
        }))
    }

    /// Send `CONNECT` and read the reply. The error says whether to try another proxy.
    async fn handshake(
        &self,
        p: &Proxy,
        mut stream: TcpStream,
        authority: &str,
        name: Option<&str>,
    ) -> Result<Tunnel, (ConnectError, bool)> {
        let proxy_addr = stream.peer_addr().map_err(|e| {
            (
                proxy_error(ErrorClass::Proxy, "PROXY_UNREACHABLE", e.to_string()),
                true,
            )
        })?;
        // `name` is a domain name already validated by the URL parser (no spaces, no CR/LF).
        let named = name.map_or_else(String::new, |n| format!("{TARGET_HOST_HEADER}: {n}\r\n"));
        let request = format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{named}{}\r\n",
            p.auth.as_deref().unwrap_or("")
        );
        let head = tokio::time::timeout(self.connect_timeout, async {
            stream.write_all(request.as_bytes()).await?;
            read_head(&mut stream).await
        })
        .await;
        let head = match head {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return Err((
                    proxy_error(
                        ErrorClass::Proxy,
                        "PROXY_PROTOCOL_ERROR",
                        format!("egress proxy {}: {e}", p.name),
                    ),
                    true,
                ));
            }
            Err(_) => {
                return Err((
                    proxy_error(
                        ErrorClass::Timeout,
                        "PROXY_TIMEOUT",
                        format!("egress proxy {} did not answer CONNECT in time", p.name),
                    ),
                    false,
                ));
            }
        };
        let reply = Reply::parse(&head).ok_or_else(|| {
            (
                proxy_error(
                    ErrorClass::Proxy,
                    "PROXY_PROTOCOL_ERROR",
                    format!("egress proxy {} sent a malformed CONNECT reply", p.name),
                ),
                true,
            )
        })?;
        if (200..300).contains(&reply.status) {
            let local = reply
                .header(EGRESS_ADDRESS_HEADER)
                .and_then(|v| v.parse().ok())
                .or_else(|| stream.local_addr().ok())
                .unwrap_or(proxy_addr);
            let remote = reply
                .header(UPSTREAM_ADDRESS_HEADER)
                .and_then(|v| v.parse().ok())
                .unwrap_or(proxy_addr);
            return Ok(Tunnel {
                stream,
                local,
                remote,
                proxy: proxy_addr,
            });
        }
        Err(refusal(&p.name, &reply))
    }
}

fn proxy_error(class: ErrorClass, code: &'static str, message: String) -> ConnectError {
    ConnectError::Proxy {
        class,
        code,
        message,
    }
}

/// Codes a Hookwarden egress proxy sends, by class.
fn known_code(code: &str) -> Option<(&'static str, ErrorClass)> {
    Some(match code {
        "DESTINATION_DENIED" => ("DESTINATION_DENIED", ErrorClass::Policy),
        "HOST_DENIED" => ("PROXY_HOST_DENIED", ErrorClass::Policy),
        "HOST_NOT_ALLOWED" => ("PROXY_HOST_NOT_ALLOWED", ErrorClass::Policy),
        "HOST_INVALID" => ("PROXY_HOST_INVALID", ErrorClass::Policy),
        "PORT_NOT_ALLOWED" => ("PROXY_PORT_NOT_ALLOWED", ErrorClass::Policy),
        "DNS_ERROR" => ("DNS_ERROR", ErrorClass::Dns),
        "DNS_NO_ADDRESSES" => ("DNS_NO_ADDRESSES", ErrorClass::Dns),
        "DNS_TIMEOUT" => ("DNS_TIMEOUT", ErrorClass::Dns),
        "CONNECT_ERROR" => ("CONNECT_ERROR", ErrorClass::Connect),
        "CONNECT_TIMEOUT" => ("CONNECT_TIMEOUT", ErrorClass::Timeout),
        _ => return None,
    })
}

/// A non-2xx `CONNECT` reply as an error, and whether another proxy may do better.
fn refusal(name: &str, reply: &Reply) -> (ConnectError, bool) {
    let sent = reply.header(ERROR_HEADER).unwrap_or("");
    let message = format!(
        "egress proxy {name} answered {}{}",
        reply.status,
        if sent.is_empty() {
            String::new()
        } else {
            format!(" ({sent})")
        }
    );
    if let Some((code, class)) = known_code(sent) {
        return (proxy_error(class, code, message), false);
    }
    match reply.status {
        // The destination is refused: the same policy applies at every proxy.
        403 => (
            proxy_error(ErrorClass::Policy, "PROXY_DENIED", message),
            false,
        ),
        407 => (
            proxy_error(ErrorClass::Proxy, "PROXY_AUTH_FAILED", message),
            true,
        ),
        502 => (
            proxy_error(ErrorClass::Connect, "PROXY_BAD_GATEWAY", message),
            false,
        ),
        504 => (
            proxy_error(ErrorClass::Timeout, "PROXY_GATEWAY_TIMEOUT", message),
            false,
        ),
        _ => (proxy_error(ErrorClass::Proxy, "PROXY_ERROR", message), true),
    }
}

/// Read up to the end of a response head. After a 2xx the proxy sends nothing until we speak
/// (TLS and HTTP are client-first), so bytes after it are a protocol error.
pub(crate) async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the CONNECT reply",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // A refusal may carry a body (the connection is dropped then); a tunnel may not.
            let extra = end + 4 != buf.len();
            if extra && buf.starts_with(b"HTTP/1.1 2") | buf.starts_with(b"HTTP/1.0 2") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the CONNECT reply",
                ));
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_REPLY_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "CONNECT reply head too large",
            ));
        }
    }
}

/// `HTTP/1.0` or `HTTP/1.1`, a space, exactly three digits, then nothing or a space and a reason.
/// Anything looser (`HTTP/1.9`, `+200`, `0200`) could make a reply look like a success to this
/// parser but not to `read_head`'s check for bytes after a 2xx head.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    if !matches!(parts.next()?, "HTTP/1.1" | "HTTP/1.0") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn parse(head: &[u8]) -> Option<Reply> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let status = parse_status_line(lines.next()?)?;
        let headers = lines
            .take(100)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        Some(Reply { status, headers })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Probes every proxy with a TCP connect each `interval` (until the set is dropped), marking it
/// healthy or not. Requests mark proxies too (passively), as they succeed or fail.
pub(crate) fn spawn_health_checks(set: &Arc<ProxySet>, interval: Duration, bind: Option<IpAddr>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<ProxySet> = Arc::downgrade(set);
    rt.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(set) = weak.upgrade() else {
                return;
            };
            for p in &set.proxies {
                let ok = set.tcp(p, bind, set.connect_timeout).await.is_ok();
                let was = p.healthy.swap(ok, Ordering::Relaxed);
                if was != ok {
                    if ok {
                        tracing::info!(proxy = %p.name, "egress proxy is reachable again");
                    } else {
                        tracing::warn!(proxy = %p.name, "egress proxy failed its health check");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> ProxyEndpoint {
        ProxyEndpoint {
            url: url.into(),
            username: None,
            password: None,
        }
    }

    #[test]
    fn proxy_urls() {
        assert!(parse_endpoint(&ep("http://127.0.0.1:3128")).is_ok());
        assert!(parse_endpoint(&ep("http://proxy.internal:3128/")).is_ok());
        assert!(parse_endpoint(&ep("http://[::1]:3128")).is_ok());
        for bad in [
            "https://127.0.0.1:3128",
            "http://127.0.0.1",
            "http://u:p@127.0.0.1:3128",
            "http://127.0.0.1:3128/path",
            "socks5://127.0.0.1:1080",
            "not a url",
            "http://127.0.0.1:0",
        ] {
            assert!(parse_endpoint(&ep(bad)).is_err(), "{bad}");
        }
        let mut with_pw = ep("http://127.0.0.1:3128");
        with_pw.password = Some("x".into());
        assert!(parse_endpoint(&with_pw).is_err());
        with_pw.username = Some("u".into());
        let p = parse_endpoint(&with_pw).unwrap();
        assert_eq!(
            p.auth.as_deref(),
            Some("Proxy-Authorization: Basic dTp4\r\n")
        );
        assert!(!format!("{with_pw:?}").contains("\"x\""));
    }

    #[test]
    fn replies_and_refusals() {
        let r = Reply::parse(
            b"HTTP/1.1 200 OK\r\nX-Hookwarden-Egress-Address: 127.0.0.3:5000\r\nx-other: 1",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header(EGRESS_ADDRESS_HEADER), Some("127.0.0.3:5000"));
        assert!(Reply::parse(b"SSH-2.0-x").is_none());
        // Only HTTP/1.0 and HTTP/1.1 with a three-digit status (found by fuzzing).
        for bad in [
            &b"HTTP/1.9 200 OK"[..],
            b"HTTP/1.1 +200 OK",
            b"HTTP/1.1 0200 OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000",
            b"HTTP/1.10 200 OK",
        ] {
            assert!(
                Reply::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(Reply::parse(b"HTTP/1.0 204").map(|r| r.status), Some(204));
        let code = |head: &[u8]| {
            let (e, failover) = refusal("p", &Reply::parse(head).unwrap());
            match e {
                ConnectError::Proxy { class, code, .. } => (class, code, failover),
                _ => unreachable!(),
            }
        };
        for (head, want) in [
            (
                &b"HTTP/1.1 403 Forbidden\r\nX-Hookwarden-Error: DESTINATION_DENIED"[..],
                (ErrorClass::Policy, "DESTINATION_DENIED", false),
            ),
            (
                b"HTTP/1.1 403 Forbidden",
                (ErrorClass::Policy, "PROXY_DENIED", false),
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\nX-Hookwarden-Error: DNS_NO_ADDRESSES",
                (ErrorClass::Dns, "DNS_NO_ADDRESSES", false),
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required",
                (ErrorClass::Proxy, "PROXY_AUTH_FAILED", true),
            ),
            (
                b"HTTP/1.0 503 Service Unavailable",
                (ErrorClass::Proxy, "PROXY_ERROR", true),
            ),
        ] {
            assert_eq!(code(head), want, "{}", String::from_utf8_lossy(head));
        }
    }
}
