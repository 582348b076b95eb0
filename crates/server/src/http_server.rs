//! The HTTP listener: bounded connections (in all and per peer), a header-read timeout that also
//! bounds idle keep-alive, a write timeout (a client that stops reading loses its connection), the
//! peer address for handlers, and graceful shutdown.

use crate::tls::{ConnectionTls, MaybeTlsStream, TlsTerminator};
use axum::Router;
use axum::extract::ConnectInfo;
use hookwarden_netguard::{PeerLimiter, StallGuard, accept_with_backoff};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, warn};

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from the connection's start or the end of
    /// the previous response: it is also the bound on an idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest wait of one response write for the client to read (then the connection closes).
    pub write_timeout: Duration,
    /// Connections per peer (see [`PeerLimiter`]).
    pub peers: Arc<PeerLimiter>,
    /// Time given to open connections to finish after shutdown starts.
    pub drain: Duration,
}

/// What a peer over its connection bound gets before the connection is closed (written only when
/// it fits the socket buffer at once; never waited on).
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 113\r\n\r\n\
{\"success\":false,\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"Too many open connections from this address\"}}";

/// Serves `app` on `listener` until `shutdown` completes. With `tls`, connections that start
/// with a TLS handshake are terminated with it (see [`crate::tls`]); every request carries a
/// [`ConnectionTls`] extension saying whether its connection was TLS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    tls: Option<Arc<TlsTerminator>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = accept_with_backoff(&listener) => r,
            _ = &mut shutdown => break,
        };
        let Some(peer_permit) = limits.peers.try_acquire(peer.ip()) else {
            metrics::counter!("hookwarden_connections_refused_total", "reason" => "per_peer")
                .increment(1);
            debug!(%peer, "connection refused: the peer holds max_connections_per_peer");
            if tls.is_none() {
                let _ = stream.try_write(TOO_MANY_CONNECTIONS);
            }
            drop((stream, permit));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        let header_read_timeout = limits.header_read_timeout;
        let write_timeout = limits.write_timeout;
        tokio::spawn(async move {
            // The TLS handshake (bounded by its own timeout) runs here, off the accept loop.
            let io = match &tls {
                None => MaybeTlsStream::Plain(stream),
                Some(t) => match t.accept(stream).await {
                    Some(io) => io,
                    None => {
                        drop((permit, peer_permit));
                        return;
                    }
                },
            };
            let secure = ConnectionTls(io.is_tls());
            let svc = app.map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(secure);
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(true)
                .max_buf_size(64 * 1024)
                .serve_connection(
                    TokioIo::new(StallGuard::new(io, write_timeout)),
                    TowerToHyperService::new(svc),
                );
            if let Err(e) = watcher.watch(conn).await {
                debug!(error = %e, %peer, "connection ended with an error");
            }
            drop((permit, peer_permit));
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("some connections were still open when the drain time ran out");
    }
}

/// What every response gets, from one layer around the whole app: the handler's time is bounded
/// (`503 TIMEOUT` when exceeded) and the security headers are set (`X-Content-Type-Options:
/// nosniff`, `Referrer-Policy: no-referrer`, and `Cache-Control: no-store` unless the handler
/// chose one). With [`HttpsOnly`] (`[server.tls]` configured), requests that did not arrive over
/// TLS are refused or redirected before any handler runs, and answers over TLS carry
/// `Strict-Transport-Security`. One concrete future instead of boxed `from_fn` middlewares, each
/// of which cloned the boxed route and boxed its future on every request.
#[derive(Debug, Clone)]
pub struct Hardening {
    limit: Duration,
    https_only: Option<Arc<HttpsOnly>>,
}

impl Hardening {
    pub fn new(limit: Duration) -> Self {
        Hardening {
            limit,
            https_only: None,
        }
    }

    /// Refuse plain HTTP (see [`HttpsOnly`]).
    pub fn https_only(mut self, rule: HttpsOnly) -> Self {
        self.https_only = Some(Arc::new(rule));
        self
    }
}

/// `Strict-Transport-Security` sent on answers over TLS: one year (no `includeSubDomains`, which
/// would bind other services of the domain).
pub const HSTS: &str = "max-age=31536000";

/// The rule for a listener that serves TLS: a request over plain HTTP gets `308` to the same
/// path over `https` (`GET`/`HEAD` without credentials: a browser opening the console) or `403
/// HTTPS_REQUIRED` (everything else: an API call that already sent its key in clear should fail
/// loudly, not be redirected and keep doing so). Not affected: `/health` (load balancers' plain
/// checks; no data), ingest under `/in/` (which has its own audited rule, see
/// `inbound.require_https`), and requests from a trusted proxy that says the client used https
/// (`X-Forwarded-Proto`, or `Forwarded: proto=` when the operator reads `Forwarded`).
#[derive(Debug, Clone)]
pub struct HttpsOnly {
    /// Peers whose forwarded protocol is believed.
    pub trusted_proxies: hookwarden_netguard::CidrList,
    /// Whether `Forwarded: proto=` is read too.
    pub rfc7239: bool,
    /// `https://host[:port]` redirects go to (from `server.public_url`); else the request's
    /// `Host`.
    pub public_base: Option<String>,
}

impl HttpsOnly {
    /// `None` when the request may go on (and whether its answer gets HSTS); otherwise the
    /// answer.
    fn check<B>(&self, req: &http::Request<B>) -> Result<bool, Box<axum::response::Response>> {
        if req.extensions().get::<ConnectionTls>().is_some_and(|t| t.0) {
            return Ok(true);
        }
        let path = req.uri().path();
        if path == "/health" || path.starts_with("/in/") {
            return Ok(false);
        }
        let peer = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        if peer.is_some_and(|p| self.trusted_proxies.contains(p))
            && crate::inbound::forwarded_https(req.headers(), self.rfc7239)
        {
            return Ok(true);
        }
        metrics::counter!("hookwarden_plain_http_refused_total").increment(1);
        Err(Box::new(self.refusal(req)))
    }

    fn refusal<B>(&self, req: &http::Request<B>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let refuse = || {
            crate::error::ApiError::new(
                http::StatusCode::FORBIDDEN,
                "HTTPS_REQUIRED",
                "This server only answers over HTTPS",
            )
            .into_response()
        };
        let browsing = matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && !req.headers().contains_key(http::header::AUTHORIZATION);
        if !browsing {
            return refuse();
        }
        let base = match &self.public_base {
            Some(b) => b.clone(),
            None => match req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .filter(|a| !a.as_str().contains('@'))
            {
                Some(a) => format!("https://{a}"),
                None => return refuse(),
            },
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        match http::HeaderValue::from_str(&format!("{base}{path}")) {
            Ok(location) => (
                http::StatusCode::PERMANENT_REDIRECT,
                [(http::header::LOCATION, location)],
            )
                .into_response(),
            Err(_) => refuse(),
        }
    }
}

impl<S> tower::Layer<S> for Hardening {
    type Service = Hardened<S>;
    fn layer(&self, inner: S) -> Hardened<S> {
        Hardened {
            inner,
            limit: self.limit,
            https_only: self.https_only.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hardened<S> {
    inner: S,
    limit: Duration,
    https_only: Option<Arc<HttpsOnly>>,
}

impl<S, B> tower::Service<http::Request<B>> for Hardened<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = HardenedFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let hsts = match self.https_only.as_deref().map(|h| h.check(&req)) {
            None => false,
            Some(Ok(hsts)) => hsts,
            Some(Err(answer)) => {
                return HardenedFuture {
                    inner: None,
                    answer: Some(*answer),
                    hsts: false,
                };
            }
        };
        HardenedFuture {
            inner: Some(tokio::time::timeout(self.limit, self.inner.call(req))),
            answer: None,
            hsts,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct HardenedFuture<F> {
        #[pin]
        inner: Option<tokio::time::Timeout<F>>,
        // An answer given without calling the inner service (plain HTTP refused).
        answer: Option<axum::response::Response>,
        hsts: bool,
    }
}

impl<F> std::future::Future for HardenedFuture<F>
where
    F: std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>,
{
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use axum::response::IntoResponse;
        let me = self.project();
        let mut resp = match me.inner.as_pin_mut() {
            None => me.answer.take().unwrap_or_else(|| {
                crate::error::ApiError::unavailable("the answer was already given").into_response()
            }),
            Some(inner) => match std::task::ready!(inner.poll(cx)) {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => crate::error::ApiError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "TIMEOUT",
                    "The request took too long",
                )
                .into_response(),
            },
        };
        set_security_headers(resp.headers_mut());
        if *me.hsts {
            resp.headers_mut().insert(
                http::header::STRICT_TRANSPORT_SECURITY,
                http::HeaderValue::from_static(HSTS),
            );
        }
        std::task::Poll::Ready(Ok(resp))
    }
}

fn set_security_headers(h: &mut http::HeaderMap) {
    use http::HeaderValue;
    use http::header;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use http::{HeaderMap, StatusCode, header};

    fn app() -> Router {
        Router::new()
            .route("/fast", get(|| async { "ok" }))
            .route(
                "/cached",
                get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "ok") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .layer(Hardening::new(Duration::from_millis(300)))
    }

    async fn get_path(path: &str) -> (StatusCode, HeaderMap, String) {
        let resp = app()
            .oneshot(
                http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn hardened(h: &HeaderMap) -> (&str, &str, &str) {
        let v = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        (
            v(header::X_CONTENT_TYPE_OPTIONS),
            v(header::REFERRER_POLICY),
            v(header::CACHE_CONTROL),
        )
    }

    #[tokio::test]
    async fn every_answer_is_hardened_and_slow_handlers_time_out() {
        let (status, h, body) = get_path("/fast").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        assert_eq!(hardened(&h), ("nosniff", "no-referrer", "no-store"));
        // A handler's own cache policy stands.
        let (_, h, _) = get_path("/cached").await;
        assert_eq!(
            hardened(&h),
            ("nosniff", "no-referrer", "public, max-age=60")
        );
        // Past the limit: 503 TIMEOUT, with the same headers.
        let started = std::time::Instant::now();
        let (status, h, body) = get_path("/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "TIMEOUT", "{body}");
        assert_eq!(hardened(&h), ("nosniff", "no-referrer", "no-store"));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(30),
            "{waited:?}"
        );
        // Unknown routes (the fallback) are hardened too.
        let (status, h, _) = get_path("/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(hardened(&h).0, "nosniff");
    }
}
