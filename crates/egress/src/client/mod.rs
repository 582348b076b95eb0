//! The guarded outbound HTTP client: every request Hookwarden itself makes goes through here.
//!
//! For each request:
//! 1. the URL is validated with [`parse_endpoint_url`] and the guard's address policy (an
//!    address literal the policy refuses never reaches the network);
//! 2. a pooled keep-alive connection for (client identity, bind address) is reused, or a new one
//!    is made by [`Guard::connect`] — resolve once, check every answer, connect to exactly the
//!    checked address — followed by TLS (ring provider, webpki roots plus operator CAs, optional
//!    client certificate);
//! 3. redirects are never followed (a 3xx is returned like any response);
//! 4. the response body is read up to [`ClientConfig::max_response_body`] bytes, the rest is
//!    discarded;
//! 5. everything, from the first step to the last body byte, is bounded by the request timeout.

mod connector;
mod error;
pub(crate) mod proxy;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hookwarden_netguard::{Guard, Target, UrlPolicy, parse_endpoint_url};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;

pub use connector::{ConnInfo, MaybeTls};
pub use error::{BoxError, EgressError, ErrorClass, SendError};
pub use proxy::ProxyEndpoint;
pub use tls::ClientIdentity;

use connector::GuardedConnector;
use error::{from_body_error, from_client_error};
use proxy::ProxySet;

/// Largest accepted [`ClientConfig::max_response_body`].
pub const MAX_RESPONSE_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Most bind addresses.
const MAX_BIND_ADDRESSES: usize = 64;
/// Most client identities whose connection pools are kept at once.
const MAX_IDENTITIES: usize = 4096;
/// After the body limit is reached, at most this much more is read (and discarded) so the
/// connection can be reused; a longer body closes the connection instead.
const DRAIN_LIMIT: usize = 256 * 1024;
/// ... and for at most this long.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// Request headers that the caller may not set: the client owns connection management and
/// message framing (letting a caller set them invites request smuggling), and `Host` always
/// comes from the validated URL.
const CONTROLLED_HEADERS: [HeaderName; 9] = [
    header::HOST,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
];

/// How the client behaves. [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on DNS-checked TCP connect (all addresses of a name together), and separately on
    /// the TLS handshake. Default 5 s.
    pub connect_timeout: Duration,
    /// Bound on a whole request, including reading the (bounded) response body, unless the request
    /// sets its own. Default 15 s.
    pub request_timeout: Duration,
    /// How much of a response body is kept; the rest is discarded and
    /// [`OutboundResponse::body_truncated`] is set. Default 64 KiB, at most
    /// [`MAX_RESPONSE_BODY_LIMIT`].
    pub max_response_body: usize,
    /// How long an idle keep-alive connection is kept. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept per (identity, bind address, scheme, host, port).
    /// Default 32.
    pub pool_max_idle_per_host: usize,
    /// Local addresses that outbound connections leave from, used round-robin per request (each
    /// has its own pool). Empty: the operating system chooses.
    pub bind_addresses: Vec<IpAddr>,
    /// Extra trusted root CA certificates in PEM (each string may hold several), in addition to
    /// the webpki (Mozilla) roots.
    pub extra_root_certs_pem: Vec<String>,
    /// URL rules (http allowed? which ports?).
    pub url_policy: UrlPolicy,
    /// The `User-Agent` sent when the request has none. Default `hookwarden/<version>`.
    pub user_agent: String,
    /// Egress proxies. When any are set, every connection is a `CONNECT` tunnel through one of
    /// them (for `http` and `https` targets), spread across them in turn, healthy ones first;
    /// there is never a direct connection. The proxy resolves names and applies its own policy;
    /// address literals are still checked here. Bind addresses apply to the connections to the
    /// proxies. At most 64.
    pub proxies: Vec<ProxyEndpoint>,
    /// How often every proxy is probed (TCP connect). Default 10 s.
    pub proxy_health_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_body: 64 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            bind_addresses: Vec::new(),
            extra_root_certs_pem: Vec::new(),
            url_policy: UrlPolicy::default(),
            user_agent: concat!("hookwarden/", env!("CARGO_PKG_VERSION")).to_owned(),
            proxies: Vec::new(),
            proxy_health_interval: Duration::from_secs(10),
        }
    }
}

/// One outbound request.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The endpoint URL (validated on every send).
    pub url: String,
    /// The method.
    pub method: Method,
    /// Request headers. `Host`, `Connection`, `Transfer-Encoding`, `Content-Length`, `TE`,
    /// `Trailer`, `Upgrade`, `Keep-Alive` and `Proxy-Authorization` are dropped: the client sets
    /// what is needed from the URL and body.
    pub headers: HeaderMap,
    /// The body (`Content-Length` is set from it).
    pub body: Bytes,
    /// A client certificate to present (mTLS).
    pub identity: Option<Arc<ClientIdentity>>,
    /// Overrides [`ClientConfig::request_timeout`].
    pub timeout: Option<Duration>,
}

impl OutboundRequest {
    /// A request with no headers, no body, no identity and the default timeout.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            identity: None,
            timeout: None,
        }
    }
}

/// A response (any status, including 3xx: redirects are not followed).
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The first [`ClientConfig::max_response_body`] bytes of the body.
    pub body: Bytes,
    /// Whether the body was longer than that.
    pub body_truncated: bool,
    /// The local address the request left from.
    pub local_addr: Option<SocketAddr>,
    /// The (checked) remote address it went to (through a proxy: as the proxy reported it).
    pub remote_addr: Option<SocketAddr>,
    /// The egress proxy it went through, if any. `local_addr` is then the egress address the
    /// proxy reported (else the local address of the connection to the proxy).
    pub proxy_addr: Option<SocketAddr>,
    /// From the start of `send` to the last body byte read.
    pub duration: Duration,
}

type HyperClient = Client<GuardedConnector, Full<Bytes>>;

/// The guarded outbound HTTP client. Cheap to clone (clones share pools).
#[derive(Clone)]
pub struct GuardedClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    guard: Arc<Guard>,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    builder: hyper_util::client::legacy::Builder,
    binds: Vec<Option<IpAddr>>,
    /// One client (pool) per bind address, for requests without an identity.
    anonymous: Vec<HyperClient>,
    /// Per identity id: the identity it was built from and one client per bind address.
    identities: RwLock<HashMap<String, IdentityEntry>>,
    next_bind: AtomicUsize,
    user_agent: HeaderValue,
    proxies: Option<Arc<ProxySet>>,
}

struct IdentityEntry {
    identity: Arc<ClientIdentity>,
    clients: Vec<HyperClient>,
}

impl GuardedClient {
    /// Build a client. Fails on an invalid configuration (zero timeouts, a body limit above
    /// [`MAX_RESPONSE_BODY_LIMIT`], an unusable user agent, too many bind addresses, or an
    /// unreadable extra root certificate).
    pub fn new(cfg: ClientConfig, guard: Arc<Guard>) -> Result<Self, EgressError> {
        if cfg.connect_timeout.is_zero() || cfg.request_timeout.is_zero() {
            return Err(EgressError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        if cfg.max_response_body > MAX_RESPONSE_BODY_LIMIT {
            return Err(EgressError::Config(format!(
                "max_response_body must be at most {MAX_RESPONSE_BODY_LIMIT} bytes"
            )));
        }
        if cfg.bind_addresses.len() > MAX_BIND_ADDRESSES {
            return Err(EgressError::Config(format!(
                "at most {MAX_BIND_ADDRESSES} bind addresses"
            )));
        }
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|_| EgressError::Config("user_agent is not a valid header value".into()))?;
        let provider = Arc::new(tls::provider());
        let roots = Arc::new(tls::root_store(&cfg.extra_root_certs_pem)?);
        let base_tls = tls::client_config(&provider, &roots, None)?;

        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());

        let binds: Vec<Option<IpAddr>> = if cfg.bind_addresses.is_empty() {
            vec![None]
        } else {
            cfg.bind_addresses.iter().copied().map(Some).collect()
        };
        if !cfg.proxies.is_empty() && cfg.proxy_health_interval.is_zero() {
            return Err(EgressError::Config(
                "proxy_health_interval must be greater than zero".into(),
            ));
        }
        let proxies = ProxySet::new(&cfg.proxies, guard.resolver().clone(), cfg.connect_timeout)?;
        if let Some(set) = &proxies {
            proxy::spawn_health_checks(
                set,
                cfg.proxy_health_interval,
                cfg.bind_addresses.first().copied(),
            );
        }
        let mut inner = Inner {
            proxies,
            cfg,
            guard,
            provider,
            roots,
            builder,
            binds,
            anonymous: Vec::new(),
            identities: RwLock::new(HashMap::new()),
            next_bind: AtomicUsize::new(0),
            user_agent,
        };
        inner.anonymous = inner.build_clients(&base_tls);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The guard (policy and resolver) this client uses.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.inner.guard
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The configured egress proxies (`host:port`) and whether each is currently considered
    /// healthy. Empty without proxies.
    pub fn proxy_health(&self) -> Vec<(String, bool)> {
        self.inner
            .proxies
            .as_ref()
            .map(|p| p.health())
            .unwrap_or_default()
    }

    /// Every check of a URL that needs no network (URL rules and, for address literals and
    /// `localhost`, the address policy), as [`send`](Self::send) does it. For refusing bad
    /// endpoint URLs when they are configured.
    pub fn check_url(&self, url: &str) -> Result<Target, SendError> {
        let target = parse_endpoint_url(url, &self.inner.cfg.url_policy)?;
        target.check_target(self.inner.guard.policy())?;
        Ok(target)
    }

    /// Send one request. See the [module documentation](self) for what happens.
    pub async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, SendError> {
        let started = Instant::now();
        let timeout = req.timeout.unwrap_or(self.inner.cfg.request_timeout);
        match tokio::time::timeout(timeout, self.send_inner(req, started)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout { after: timeout }),
        }
    }

    async fn send_inner(
        &self,
        req: OutboundRequest,
        started: Instant,
    ) -> Result<OutboundResponse, SendError> {
        let inner = &*self.inner;
        let target = self.check_url(&req.url)?;
        if req.method == Method::CONNECT {
            return Err(SendError::InvalidRequest("CONNECT is not allowed".into()));
        }
        let uri = to_uri(target.url.as_str())?;
        let client = inner.client_for(req.identity.as_ref())?;

        let mut headers = req.headers;
        for name in &CONTROLLED_HEADERS {
            headers.remove(name);
        }
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, inner.user_agent.clone());
        }
        let mut request = http::Request::new(Full::new(req.body));
        *request.method_mut() = req.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        let response = client.request(request).await.map_err(from_client_error)?;
        let info = response.extensions().get::<ConnInfo>().copied();
        let (parts, body) = response.into_parts();
        let (body, body_truncated) = read_bounded(body, inner.cfg.max_response_body).await?;
        Ok(OutboundResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            body_truncated,
            local_addr: info.map(|i| i.local),
            remote_addr: info.map(|i| i.remote),
            proxy_addr: info.and_then(|i| i.proxy),
            duration: started.elapsed(),
        })
    }
}

impl fmt::Debug for GuardedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedClient")
            .field("config", &self.inner.cfg)
            .field("guard", &self.inner.guard)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn build_clients(&self, tls: &Arc<rustls::ClientConfig>) -> Vec<HyperClient> {
        self.binds
            .iter()
            .map(|bind| {
                self.builder.build(GuardedConnector::new(
                    self.guard.clone(),
                    tls.clone(),
                    *bind,
                    self.cfg.connect_timeout,
                    self.proxies.clone(),
                ))
            })
            .collect()
    }

    fn bind_index(&self) -> usize {
        match self.binds.len() {
            0 | 1 => 0,
            n => self.next_bind.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// The pooled client for this identity and the next bind address. Without an identity this
    /// takes no lock; with one, a read lock and a map lookup (building the TLS configuration and
    /// pools once per identity).
    fn client_for(&self, identity: Option<&Arc<ClientIdentity>>) -> Result<HyperClient, SendError> {
        let idx = self.bind_index();
        let Some(identity) = identity else {
            return self
                .anonymous
                .get(idx)
                .cloned()
                .ok_or_else(|| SendError::Internal("no client for bind address".into()));
        };
        let matches = |e: &IdentityEntry| {
            Arc::ptr_eq(&e.identity, identity) || e.identity.same_material(identity)
        };
        {
            let map = self
                .identities
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.get(&identity.id)
                && matches(entry)
                && let Some(client) = entry.clients.get(idx)
            {
                return Ok(client.clone());
            }
        }
        // Build outside the lock; a concurrent builder of the same identity may win the insert.
        let key = identity
            .certified_key(&self.provider)
            .map_err(SendError::Identity)?;
        let tls = tls::client_config(&self.provider, &self.roots, Some(key))
            .map_err(SendError::Identity)?;
        let clients = self.build_clients(&tls);
        let mut map = self
            .identities
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get(&identity.id)
            && matches(entry)
            && let Some(client) = entry.clients.get(idx)
        {
            return Ok(client.clone());
        }
        if map.len() >= MAX_IDENTITIES
            && !map.contains_key(&identity.id)
            && let Some(victim) = map.keys().next().cloned()
        {
            map.remove(&victim);
        }
        let client = clients
            .get(idx)
            .cloned()
            .ok_or_else(|| SendError::Internal("no client for bind address".into()))?;
        map.insert(
            identity.id.clone(),
            IdentityEntry {
                identity: identity.clone(),
                clients,
            },
        );
        Ok(client)
    }
}

/// The URL as an `http::Uri`. WHATWG leaves a few characters unescaped in paths and queries that
/// RFC 3986 (and so `http`) does not allow; they are percent-encoded here.
fn to_uri(url: &str) -> Result<Uri, SendError> {
    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b)
    }
    let encoded;
    let s = if url.bytes().all(allowed) {
        url
    } else {
        let mut out = String::with_capacity(url.len() + 16);
        for b in url.bytes() {
            if allowed(b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        encoded = out;
        &encoded
    };
    s.parse()
        .map_err(|e| SendError::Internal(format!("validated URL is not a valid URI: {e}")))
}

/// Read at most `max` bytes of `body`; report whether there was more. After the limit, up to
/// [`DRAIN_LIMIT`] more bytes are read for [`DRAIN_TIME`] so the connection can be reused; beyond
/// that the body is dropped, which closes the connection.
async fn read_bounded(mut body: Incoming, max: usize) -> Result<(Bytes, bool), SendError> {
    let mut first = Bytes::new();
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    let mut truncated = false;
    while len < max {
        let Some(frame) = body.frame().await else {
            return Ok((join(first, rest), false));
        };
        let Ok(data) = frame.map_err(from_body_error)?.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        let take = (max - len).min(data.len());
        if take < data.len() {
            truncated = true;
        }
        len += take;
        let chunk = data.slice(..take);
        match &mut rest {
            Some(buf) => buf.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut buf = BytesMut::with_capacity((first.len() + chunk.len()).max(8 * 1024));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&chunk);
                first = Bytes::new();
                rest = Some(buf);
            }
        }
    }
    // At the limit. Anything more?
    if !body.is_end_stream() && drain(&mut body).await {
        truncated = true;
    }
    Ok((join(first, rest), truncated))
}

/// Read and discard what is left of `body`, within [`DRAIN_LIMIT`] and [`DRAIN_TIME`]; returns
/// whether there was any more data. A body known to be longer than the limit is not read at all
/// (dropping it closes the connection).
async fn drain(body: &mut Incoming) -> bool {
    match body.size_hint().exact() {
        Some(0) => return false,
        Some(n) if n > DRAIN_LIMIT as u64 => return true,
        _ => {}
    }
    let mut discarded = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                discarded = discarded.saturating_add(data.len());
                if discarded > DRAIN_LIMIT {
                    break;
                }
            }
        }
    })
    .await;
    discarded > 0
}

fn join(first: Bytes, rest: Option<BytesMut>) -> Bytes {
    match rest {
        Some(buf) => buf.freeze(),
        None => first,
    }
}
