//! The HTTP listener: bounded connections, a header-read timeout (slow clients cannot hold
//! connections open), the peer address for handlers, and graceful shutdown.

use crate::tls::{ConnectionTls, MaybeTlsStream, TlsTerminator};
use axum::Router;
use axum::extract::ConnectInfo;
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
    pub header_read_timeout: Duration,
    /// Time given to open connections to finish after shutdown starts.
    pub drain: Duration,
}

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
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // The TLS handshake (bounded by its own timeout) runs here, off the accept loop.
            let io = match &tls {
                None => MaybeTlsStream::Plain(stream),
                Some(t) => match t.accept(stream).await {
                    Some(io) => io,
                    None => {
                        drop(permit);
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
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn).await {
                debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
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
/// chose one). One concrete future instead of two boxed `from_fn` middlewares, each of which
/// cloned the boxed route and boxed its future on every request.
#[derive(Debug, Clone, Copy)]
pub struct Hardening {
    limit: Duration,
}

impl Hardening {
    pub fn new(limit: Duration) -> Self {
        Hardening { limit }
    }
}

impl<S> tower::Layer<S> for Hardening {
    type Service = Hardened<S>;
    fn layer(&self, inner: S) -> Hardened<S> {
        Hardened {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hardened<S> {
    inner: S,
    limit: Duration,
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
        HardenedFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct HardenedFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
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
        let mut resp = match std::task::ready!(self.project().inner.poll(cx)) {
            Ok(Ok(r)) => r,
            Ok(Err(never)) => match never {},
            Err(_) => crate::error::ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "TIMEOUT",
                "The request took too long",
            )
            .into_response(),
        };
        set_security_headers(resp.headers_mut());
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
