//! The proxy itself: listeners, authentication, decisions, CONNECT tunnels and forwarded
//! plain-HTTP requests.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookwarden_netguard::{
    AddressPolicy, CidrList, Connected, Guard, GuardError, PeerLimiter, PeerPermit, Resolve,
    StallGuard, StaticResolver, SystemResolver, TargetHost, TimeoutPhase, accept_with_backoff,
};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::config::{ConfigError, Limits, ProxyConfig, Validated};
use super::metrics as m;
use super::policy::normalize_host;
use super::relay::{Counters, relay};
use super::tls;
use super::{EGRESS_ADDRESS_HEADER, ERROR_HEADER, TARGET_HOST_HEADER, UPSTREAM_ADDRESS_HEADER};

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

struct Shared {
    v: Validated,
    guard: Guard,
    next_bind: AtomicUsize,
    conns: Arc<Semaphore>,
    peers: Arc<PeerLimiter>,
    tunnels: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn limits(&self) -> &Limits {
        &self.v.cfg.limits
    }

    fn bind(&self) -> Option<IpAddr> {
        let binds = &self.v.cfg.egress.bind_addresses;
        match binds.len() {
            0 => None,
            1 => binds.first().copied(),
            n => binds
                .get(self.next_bind.fetch_add(1, Ordering::Relaxed) % n)
                .copied(),
        }
    }
}

/// A running proxy. Dropping it stops nothing; call [`RunningProxy::shutdown`].
pub struct RunningProxy {
    /// The plain listener's address.
    pub listen_addr: SocketAddr,
    /// The TLS listener's address, when configured.
    pub tls_addr: Option<SocketAddr>,
    /// The metrics listener's address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy")
            .field("listen_addr", &self.listen_addr)
            .field("tls_addr", &self.tls_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl RunningProxy {
    /// Stop accepting, ask open client connections to finish, and wait for them up to
    /// `limits.shutdown_grace_secs`. Tunnels still open then are cut when the runtime ends.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let max = self.shared.limits().max_connections;
        let grace = Duration::from_secs(self.shared.limits().shutdown_grace_secs);
        let deadline = Instant::now() + grace;
        while self.shared.conns.available_permits() < max && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Start the proxy described by `cfg`. With `resolver`, names are resolved by it (tests, or an
/// operator's own resolver); otherwise by the system configuration with
/// `egress.resolve_overrides` in front.
pub async fn start(
    cfg: ProxyConfig,
    resolver: Option<Arc<dyn Resolve>>,
) -> Result<RunningProxy, StartError> {
    let v = cfg.validate()?;
    let tls_acceptor = match &v.cfg.tls {
        Some(t) => Some(tls::acceptor(t)?),
        None => None,
    };
    let resolver: Arc<dyn Resolve> = match resolver {
        Some(r) => r,
        None => {
            let system: Arc<dyn Resolve> = Arc::new(SystemResolver::new());
            if v.cfg.egress.resolve_overrides.is_empty() {
                system
            } else {
                let mut r = StaticResolver::new();
                for (host, ips) in &v.cfg.egress.resolve_overrides {
                    r.insert(host, ips.iter().copied());
                }
                Arc::new(r.with_fallback(system))
            }
        }
    };
    let guard = Guard::new(
        AddressPolicy::new(v.allow.clone(), v.deny.clone()),
        resolver,
    )
    .with_resolve_timeout(Duration::from_secs(v.cfg.limits.connect_timeout_secs));
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })
    };
    let plain = bind(v.listen).await?;
    let listen_addr = plain.local_addr().map_err(|source| StartError::Listen {
        addr: v.listen,
        source,
    })?;
    let tls_listener = match v.tls_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let metrics_listener = match v.metrics_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    // Install the recorder before the first request so nothing is lost.
    let _ = m::handle();
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        conns: Arc::new(Semaphore::new(v.cfg.limits.max_connections)),
        peers: PeerLimiter::new(v.cfg.limits.max_connections_per_peer, CidrList::default()),
        tunnels: Arc::new(Semaphore::new(v.cfg.limits.max_tunnels)),
        next_bind: AtomicUsize::new(0),
        guard,
        stop: stop_rx.clone(),
        v,
    });
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(accept_loop(
        plain,
        shared.clone(),
        None,
        stop_rx.clone(),
    )));
    let mut tls_addr = None;
    if let (Some(l), Some(acceptor)) = (tls_listener, tls_acceptor) {
        tls_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(accept_loop(
            l,
            shared.clone(),
            Some(acceptor),
            stop_rx.clone(),
        )));
    }
    let mut metrics_addr = None;
    if let Some(l) = metrics_listener {
        metrics_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(m::serve(
            l,
            stop_rx.clone(),
            Duration::from_secs(shared.limits().write_timeout_secs),
        )));
    }
    info!(
        listen = %listen_addr,
        tls = tls_addr.map(|a| a.to_string()),
        metrics = metrics_addr.map(|a| a.to_string()),
        "egress proxy started"
    );
    Ok(RunningProxy {
        listen_addr,
        tls_addr,
        metrics_addr,
        stop: stop_tx,
        tasks,
        shared,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = accept_with_backoff(&listener) => r,
            _ = stop.changed() => return,
        };
        let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
            metrics::counter!(m::CONNECTIONS_REJECTED, "reason" => "max_connections").increment(1);
            debug!(%peer, "connection refused: max_connections reached");
            drop(tcp);
            continue;
        };
        let Some(peer_permit) = shared.peers.try_acquire(peer.ip()) else {
            metrics::counter!(m::CONNECTIONS_REJECTED, "reason" => "per_peer").increment(1);
            debug!(%peer, "connection refused: the peer holds max_connections_per_peer");
            drop((tcp, permit));
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            metrics::gauge!(m::CONNECTIONS_ACTIVE).increment(1.0);
            let permit = Arc::new((permit, peer_permit));
            let write_timeout = Duration::from_secs(shared.limits().write_timeout_secs);
            match tls {
                None => {
                    let io = TokioIo::new(StallGuard::new(tcp, write_timeout));
                    serve_conn(shared, io, peer, None, permit).await;
                }
                Some(acceptor) => {
                    let timeout = Duration::from_secs(shared.limits().header_read_timeout_secs);
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let name = tls::client_name(&stream);
                            let io = TokioIo::new(StallGuard::new(stream, write_timeout));
                            serve_conn(shared, io, peer, name, permit).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            metrics::gauge!(m::CONNECTIONS_ACTIVE).decrement(1.0);
        });
    }
}

/// Who is asking, on which connection.
struct Ctx {
    peer: SocketAddr,
    /// The client certificate's common name (TLS listener).
    cert_name: Option<String>,
    /// Held by the connection and by every tunnel made on it (its place in `max_connections`
    /// and in its peer's count).
    permit: Arc<(OwnedSemaphorePermit, PeerPermit)>,
}

async fn serve_conn<I>(
    shared: Arc<Shared>,
    io: I,
    peer: SocketAddr,
    cert_name: Option<String>,
    permit: Arc<(OwnedSemaphorePermit, PeerPermit)>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let ctx = Arc::new(Ctx {
        peer,
        cert_name,
        permit,
    });
    let sh = shared.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let (sh, ctx) = (sh.clone(), ctx.clone());
        async move { Ok::<_, Infallible>(handle(sh, ctx, req).await) }
    });
    let limits = shared.limits();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(100)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let mut stop = shared.stop.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "client connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(shared.limits().shutdown_grace_secs), conn).await;
        }
    }
}

/// A refusal: status, stable code and message.
pub(crate) struct Refusal {
    status: StatusCode,
    pub(crate) code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn response(&self) -> Response<Body> {
        let mut resp = Response::new(full(format!("{}: {}\n", self.code, self.message)));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(ERROR_HEADER, HeaderValue::from_static(self.code));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            h.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hookwarden-egress\""),
            );
        }
        resp
    }

    fn from_guard(e: &GuardError) -> Refusal {
        let status = match e {
            GuardError::Denied { .. } => StatusCode::FORBIDDEN,
            GuardError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        // The client gets the code and a fixed message: never the addresses a name resolved to
        // (internal DNS answers are not the client's to learn). The decision log has the detail.
        let message = match e {
            GuardError::Denied { .. } => "the destination is not allowed by the egress policy",
            GuardError::Resolve { .. } => "the destination's name could not be resolved",
            GuardError::NoAddresses { .. } => "the destination's name has no address",
            GuardError::Connect { .. } => "the destination could not be reached",
            GuardError::Timeout {
                phase: TimeoutPhase::Resolve,
                ..
            } => "resolving the destination's name timed out",
            _ => "connecting to the destination timed out",
        };
        debug!(error = %e, code = e.code(), "upstream refused or failed");
        Refusal::new(status, e.code(), message)
    }
}

/// What the request asks for.
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// The destination of a request with this method and request target: `CONNECT host:port`, or an
/// absolute `http://` URL.
pub(crate) fn target_of(method: &Method, uri: &Uri) -> Result<Target, Refusal> {
    let invalid = |why: &str| Refusal::new(StatusCode::FORBIDDEN, "HOST_INVALID", why.to_owned());
    if method != Method::CONNECT {
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "SCHEME_NOT_SUPPORTED",
                    "only http:// URLs are forwarded; use CONNECT for https",
                ));
            }
            None => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "NOT_A_PROXY_REQUEST",
                    "this is a forward proxy: send CONNECT host:port or an absolute http:// URL",
                ));
            }
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the request names no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the target are not allowed"));
    }
    let host = match authority
        .host()
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
    {
        // An IPv6 address, in its one standard spelling (so rules and logs see one form).
        Some(inner) => match inner.parse::<std::net::Ipv6Addr>() {
            Ok(v6) if v6.to_string() == inner => inner.to_owned(),
            _ => {
                return Err(invalid(
                    "the IPv6 address is not in its standard form (lowercase, shortest)",
                ));
            }
        },
        None => normalize_host(authority.host())
            .ok_or_else(|| invalid("the host is malformed (numeric spellings are refused)"))?,
    };
    let port = match (authority.port_u16(), method == Method::CONNECT) {
        (Some(0), _) => return Err(invalid("port 0 is not a destination")),
        (Some(p), _) => p,
        (None, true) => return Err(invalid("CONNECT needs host:port")),
        (None, false) => 80,
    };
    Ok(Target { host, port })
}

/// The decision log line and metric.
struct Log<'a> {
    kind: &'static str,
    ctx: &'a Ctx,
    client: Option<&'a str>,
    host: &'a str,
    port: u16,
    started: Instant,
}

impl Log<'_> {
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        decision: &'static str,
        action: &'static str,
        code: &'static str,
        status: u16,
        resolved: Option<SocketAddr>,
        egress: Option<SocketAddr>,
        bytes: (u64, u64),
        end: &'static str,
    ) {
        metrics::counter!(m::REQUESTS, "kind" => self.kind, "decision" => decision, "code" => code)
            .increment(1);
        info!(
            kind = self.kind,
            client = self.client.unwrap_or("-"),
            peer = %self.ctx.peer,
            host = self.host,
            port = self.port,
            resolved = resolved.map(|a| a.to_string()),
            egress = egress.map(|a| a.to_string()),
            decision,
            action,
            reason = code,
            status,
            bytes_up = bytes.0,
            bytes_down = bytes.1,
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            end,
            "proxy decision"
        );
    }

    /// Logs a refusal made before any upstream connection, and answers it.
    fn refuse(&self, decision: &'static str, action: &'static str, r: &Refusal) -> Response<Body> {
        self.emit(
            decision,
            action,
            r.code,
            r.status.as_u16(),
            None,
            None,
            (0, 0),
            "refused",
        );
        r.response()
    }
}

fn authenticate(
    sh: &Shared,
    ctx: &Ctx,
    req: &Request<Incoming>,
) -> Result<Option<String>, Refusal> {
    if let Some(name) = &ctx.cert_name {
        return Ok(Some(name.clone()));
    }
    if sh.v.users.is_empty() {
        return Ok(None);
    }
    match sh
        .v
        .users
        .check(req.headers().get(header::PROXY_AUTHORIZATION))
    {
        Some(user) => Ok(Some(user)),
        None => Err(Refusal::new(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "PROXY_AUTH_REQUIRED",
            "valid Proxy-Authorization: Basic credentials are required",
        )),
    }
}

async fn handle(sh: Arc<Shared>, ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let kind = if req.method() == Method::CONNECT {
        "connect"
    } else {
        "http"
    };
    let client = match authenticate(&sh, &ctx, &req) {
        Ok(c) => c,
        Err(r) => {
            metrics::counter!(m::REQUESTS, "kind" => kind, "decision" => "deny", "code" => r.code)
                .increment(1);
            info!(kind, peer = %ctx.peer, decision = "deny", reason = r.code, status = r.status.as_u16(), "proxy decision");
            return r.response();
        }
    };
    let target = match target_of(req.method(), req.uri()) {
        Ok(t) => t,
        Err(r) => {
            let log = Log {
                kind,
                ctx: &ctx,
                client: client.as_deref(),
                host: "-",
                port: 0,
                started,
            };
            return log.refuse("deny", "-", &r);
        }
    };
    // A Hookwarden client asks for the address it checked and names the host it resolved: the
    // host rules apply to that name, and the name is resolved and checked here again.
    let named = named_target(&req, &target);
    let policy_host = named.as_deref().unwrap_or(&target.host);
    let log = Log {
        kind,
        ctx: &ctx,
        client: client.as_deref(),
        host: policy_host,
        port: target.port,
        started,
    };
    let decision =
        sh.v.policy
            .decide(client.as_deref(), policy_host, target.port);
    if decision.refused {
        let code = decision.refusal.map_or("HOST_NOT_ALLOWED", |r| r.code());
        let r = Refusal::new(
            StatusCode::FORBIDDEN,
            code,
            format!(
                "{}:{} is not allowed by the egress policy",
                target.host, target.port
            ),
        );
        return log.refuse("deny", decision.action, &r);
    }
    let (verdict, reason) = match decision.refusal {
        Some(r) => ("report", r.code()),
        None => ("allow", "ALLOWED"),
    };
    let Ok(tunnel_permit) = sh.tunnels.clone().try_acquire_owned() else {
        let r = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_TUNNELS",
            "the proxy is at its limit of upstream connections",
        );
        return log.refuse("deny", decision.action, &r);
    };
    let Some(host) = TargetHost::from_host_str(&target.host) else {
        let r = Refusal::new(
            StatusCode::FORBIDDEN,
            "HOST_INVALID",
            "the host is malformed",
        );
        return log.refuse("deny", decision.action, &r);
    };
    let connect_started = Instant::now();
    let connected = match connect_upstream(&sh, &host, named.as_deref(), target.port).await {
        Ok(c) => c,
        Err(e) => {
            let r = Refusal::from_guard(&e);
            let decision = if e.denied().is_some() {
                "deny"
            } else {
                verdict
            };
            return log.refuse(decision, "-", &r);
        }
    };
    metrics::histogram!(m::CONNECT_SECONDS).record(connect_started.elapsed().as_secs_f64());
    if kind == "connect" {
        connect(
            sh.clone(),
            ctx.clone(),
            req,
            connected,
            tunnel_permit,
            verdict,
            decision.action,
            reason,
            client,
            target,
            started,
        )
    } else {
        forward(
            &sh,
            req,
            connected,
            tunnel_permit,
            &log,
            verdict,
            decision.action,
            reason,
        )
        .await
    }
}

/// The name in [`TARGET_HOST_HEADER`] of a `CONNECT` to an address literal (normalised), when it
/// is a valid host name. Ignored on anything else.
fn named_target(req: &Request<Incoming>, target: &Target) -> Option<String> {
    if req.method() != Method::CONNECT || target.host.parse::<IpAddr>().is_err() {
        return None;
    }
    let raw = req.headers().get(TARGET_HOST_HEADER)?.to_str().ok()?;
    normalize_host(raw.trim()).filter(|n| n.parse::<IpAddr>().is_err())
}

/// Connects to the target through the guard. With a `name` (see [`named_target`]): the name is
/// resolved and every answer checked here too; the requested address is used when it is one of
/// them, else the name's own checked answers (DNS may rotate between the client's lookup and
/// ours), so the host rules that allowed the name always describe the connection.
async fn connect_upstream(
    sh: &Shared,
    host: &TargetHost,
    name: Option<&str>,
    port: u16,
) -> Result<Connected, GuardError> {
    let timeout = Duration::from_secs(sh.limits().connect_timeout_secs);
    let Some(name) = name else {
        return sh.guard.connect(host, port, sh.bind(), timeout).await;
    };
    let named = TargetHost::Domain(name.to_owned());
    let answers = sh.guard.resolve_checked(&named).await?;
    let target = match host.ip() {
        Some(ip) if answers.contains(&hookwarden_netguard::normalize(ip)) => host,
        _ => &named,
    };
    sh.guard.connect(target, port, sh.bind(), timeout).await
}

#[allow(clippy::too_many_arguments)]
fn connect(
    sh: Arc<Shared>,
    ctx: Arc<Ctx>,
    mut req: Request<Incoming>,
    up: Connected,
    tunnel_permit: OwnedSemaphorePermit,
    verdict: &'static str,
    action: &'static str,
    reason: &'static str,
    client: Option<String>,
    target: Target,
    started: Instant,
) -> Response<Body> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (local, remote) = (up.local, up.remote);
    tokio::spawn(async move {
        let _conn_permit = ctx.permit.clone();
        let _tunnel_permit = tunnel_permit;
        metrics::gauge!(m::TUNNELS_ACTIVE).increment(1.0);
        let counters = Arc::new(Counters::default());
        let limits = sh.limits();
        let idle = Duration::from_secs(limits.idle_timeout_secs);
        let lifetime = Duration::from_secs(limits.max_tunnel_secs);
        let tunnel_started = Instant::now();
        let end = match tokio::time::timeout(
            Duration::from_secs(limits.header_read_timeout_secs),
            on_upgrade,
        )
        .await
        {
            Ok(Ok(upgraded)) => {
                let mut upstream = up.stream;
                // The relay bounds the tunnel (idle, lifetime): the client's stream goes in bare.
                match upgraded.downcast::<TokioIo<StallGuard<TcpStream>>>() {
                    Ok(parts) => {
                        if parts.read_buf.is_empty()
                            || upstream.write_all(&parts.read_buf).await.is_ok()
                        {
                            counters
                                .up
                                .fetch_add(parts.read_buf.len() as u64, Ordering::Relaxed);
                            relay(
                                parts.io.into_inner().into_inner(),
                                upstream,
                                counters.clone(),
                                idle,
                                lifetime,
                            )
                            .await
                            .as_str()
                        } else {
                            "error"
                        }
                    }
                    Err(upgraded) => relay(
                        TokioIo::new(upgraded),
                        upstream,
                        counters.clone(),
                        idle,
                        lifetime,
                    )
                    .await
                    .as_str(),
                }
            }
            _ => "upgrade_failed",
        };
        metrics::gauge!(m::TUNNELS_ACTIVE).decrement(1.0);
        metrics::histogram!(m::TUNNEL_SECONDS).record(tunnel_started.elapsed().as_secs_f64());
        let (b_up, b_down) = (
            counters.up.load(Ordering::Relaxed),
            counters.down.load(Ordering::Relaxed),
        );
        metrics::counter!(m::BYTES, "direction" => "up").increment(b_up);
        metrics::counter!(m::BYTES, "direction" => "down").increment(b_down);
        let log = Log {
            kind: "connect",
            ctx: &ctx,
            client: client.as_deref(),
            host: &target.host,
            port: target.port,
            started,
        };
        log.emit(
            verdict,
            action,
            reason,
            200,
            Some(remote),
            Some(local),
            (b_up, b_down),
            end,
        );
    });
    let mut resp = Response::new(full(Bytes::new()));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&local.to_string()) {
        h.insert(EGRESS_ADDRESS_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&remote.to_string()) {
        h.insert(UPSTREAM_ADDRESS_HEADER, v);
    }
    resp
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), those named in `Connection`, and every `Proxy-*`
/// header. `Host` is never removed here.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .take(64)
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
    ] {
        h.remove(n);
    }
    let proxy: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for n in proxy {
        h.remove(n);
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    sh: &Shared,
    req: Request<Incoming>,
    up: Connected,
    tunnel_permit: OwnedSemaphorePermit,
    log: &Log<'_>,
    verdict: &'static str,
    action: &'static str,
    reason: &'static str,
) -> Response<Body> {
    let (local, remote) = (up.local, up.remote);
    let fail = |r: Refusal| {
        log.emit(
            verdict,
            action,
            r.code,
            r.status.as_u16(),
            Some(remote),
            Some(local),
            (0, 0),
            "upstream_failed",
        );
        r.response()
    };
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    parts.uri = match Uri::try_from(path) {
        Ok(u) => u,
        Err(_) => {
            return fail(Refusal::new(
                StatusCode::BAD_REQUEST,
                "REQUEST_INVALID",
                "bad request target",
            ));
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    // RFC 9112 §3.2.2: the Host header is replaced by the absolute URI's authority.
    if let Some(a) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        parts.headers.insert(header::HOST, a);
    }
    let limits = sh.limits();
    // A forwarded exchange with no byte either way for `idle_timeout_secs` is cut, as a tunnel.
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let upstream = StallGuard::new(up.stream, idle).with_read_timeout(idle);
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
        .handshake::<_, Incoming>(TokioIo::new(upstream))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            return fail(Refusal::new(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_ERROR",
                e.to_string(),
            ));
        }
    };
    let lifetime = Duration::from_secs(limits.max_tunnel_secs);
    tokio::spawn(async move {
        let _permit = tunnel_permit;
        metrics::gauge!(m::TUNNELS_ACTIVE).increment(1.0);
        let _ = tokio::time::timeout(lifetime, conn).await;
        metrics::gauge!(m::TUNNELS_ACTIVE).decrement(1.0);
    });
    let request = Request::from_parts(parts, body);
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    let resp = match tokio::time::timeout(timeout, sender.send_request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return fail(Refusal::new(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_ERROR",
                e.to_string(),
            ));
        }
        Err(_) => {
            return fail(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                "UPSTREAM_TIMEOUT",
                format!("no response within {timeout:?}"),
            ));
        }
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let down = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    log.emit(
        verdict,
        action,
        reason,
        parts.status.as_u16(),
        Some(remote),
        Some(local),
        (0, down),
        "forwarded",
    );
    Response::from_parts(parts, body.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "a.example"),
            ("connection", "keep-alive, x-secret, host"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("content-length", "3"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host", "x-kept"]);
    }
}
