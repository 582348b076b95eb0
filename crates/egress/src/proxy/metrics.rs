//! The proxy's Prometheus metrics (through the `metrics` crate) and the small listener that
//! serves them.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) const REQUESTS: &str = "hookwarden_proxy_requests_total";
pub(crate) const CONNECTIONS_ACTIVE: &str = "hookwarden_proxy_connections_active";
pub(crate) const CONNECTIONS_REJECTED: &str = "hookwarden_proxy_connections_rejected_total";
pub(crate) const TUNNELS_ACTIVE: &str = "hookwarden_proxy_tunnels_active";
pub(crate) const BYTES: &str = "hookwarden_proxy_bytes_total";
pub(crate) const CONNECT_SECONDS: &str = "hookwarden_proxy_upstream_connect_seconds";
pub(crate) const TUNNEL_SECONDS: &str = "hookwarden_proxy_tunnel_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder: installed on first use. `None` when another recorder was
/// installed first (metrics then go there).
pub(crate) fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                        30.0, 300.0, 3600.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            spawn_upkeep(handle.clone(), UPKEEP_INTERVAL);
            Some(handle)
        })
        .clone()
}

/// How often the samples recorded into histograms since the last pass are folded into their
/// buckets. The recorder keeps every sample until then (about 16 bytes each): without this
/// pass a process that nobody scraped grew by that much for every request it timed.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Folds `handle`'s pending histogram samples into their buckets every `every`, on a thread of
/// its own (a pass over a busy second's samples takes about a millisecond, which would
/// otherwise hold up one runtime worker). A recorder lives as long as the process, and so
/// does the thread. Used by the proxy's recorder and by `serve`'s. Should the thread not
/// start, a warning says so (samples are then folded only by a scrape).
pub fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "metrics upkeep thread not started: histogram samples are \
            only folded into their buckets when /metrics is scraped");
    }
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Proxy requests by kind (connect, http), decision (allow, deny, report) and code"
    );
    metrics::describe_gauge!(CONNECTIONS_ACTIVE, "Open client connections");
    metrics::describe_counter!(
        CONNECTIONS_REJECTED,
        "Client connections closed at once, by reason: max_connections reached, or the peer holds max_connections_per_peer"
    );
    metrics::describe_gauge!(
        TUNNELS_ACTIVE,
        "Open upstream connections (tunnels and forwards)"
    );
    metrics::describe_counter!(BYTES, "Bytes relayed, by direction (up, down)");
    metrics::describe_histogram!(
        CONNECT_SECONDS,
        "DNS lookup and TCP connect to destinations"
    );
    metrics::describe_histogram!(TUNNEL_SECONDS, "Lifetime of CONNECT tunnels");
}

/// Most connections the metrics listener serves at once (scrapers need one or two); more wait in
/// the accept queue.
const METRICS_MAX_CONNECTIONS: usize = 64;
/// Most of those one address may hold.
const METRICS_MAX_PER_PEER: usize = 16;

/// Serves `GET /metrics` and `GET /health` until `stop` changes: at most
/// [`METRICS_MAX_CONNECTIONS`] connections (and [`METRICS_MAX_PER_PEER`] per address), each for
/// at most 30 s, with a 5 s header timeout and `write_timeout` for a client that stops reading.
pub(crate) async fn serve(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    write_timeout: std::time::Duration,
) {
    let handle = handle();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    let peers = hookwarden_netguard::PeerLimiter::new(
        METRICS_MAX_PER_PEER,
        hookwarden_netguard::CidrList::default(),
    );
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Some(peer_slot) = peers.try_acquire(peer.ip()) else {
            drop((tcp, slot));
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            let svc = service_fn(move |req: Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    let resp = match req.uri().path() {
                        "/metrics" => match &handle {
                            Some(h) => Response::builder()
                                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(h.render()))),
                            None => Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::from_static(
                                    b"metrics recorder unavailable\n",
                                ))),
                        },
                        "/health" => {
                            Response::builder().body(Full::new(Bytes::from_static(b"ok\n")))
                        }
                        _ => Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found\n"))),
                    };
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(5))
                    .serve_connection(
                        TokioIo::new(hookwarden_netguard::StallGuard::new(tcp, write_timeout)),
                        svc,
                    ),
            )
            .await;
        });
    }
}
