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

/// Bounds the time a handler may take (503 `TIMEOUT` when exceeded).
pub async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => crate::error::ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "TIMEOUT",
            "The request took too long",
        )
        .into_response(),
    }
}
