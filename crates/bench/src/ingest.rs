//! Scenario `ingest`: signed (GitHub HMAC-SHA256), allow-listed, durable inbound webhooks
//! (`202` only once the event and its audit entry are committed) posted to `serve` by many
//! concurrent keep-alive clients. Baseline: a bare axum handler that answers 202, driven the same
//! way in the same run. A second phase sends at 70 % of the measured peak (open loop, latency
//! counted from each request's scheduled time) to report the p99 under load short of saturation.
//! A third server, the durable floor, answers 202 only after committing each body to SQLite and
//! does nothing else: what durability alone costs on this machine. The bare handler also runs
//! in a process of its own (`process_baseline_*`), as `serve` does: in this process it shares
//! one runtime with the load generator.

use crate::harness::*;
use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Small run that finishes in well under 30 seconds.
    #[arg(long)]
    quick: bool,
    /// `full` (fsync per group commit, survives power loss) or `normal`.
    #[arg(long, default_value = "full")]
    sqlite_synchronous: String,
    /// Log level of the measured server (default `warn`; with --instructions `info`, the
    /// production default, so the per-request log line is counted).
    #[arg(long)]
    log: Option<String>,
    /// Path to the hookwarden binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    #[command(flatten)]
    counts: crate::instructions::Options,
}

const SECRET: &str = "bench-github-webhook-secret";

/// What one phase measured.
struct Phase {
    per_s: f64,
    lat_us: Vec<u64>,
    errors: usize,
}

impl Phase {
    /// The phase's figures once its client tasks (each returning its latencies) are done.
    async fn gather(
        tasks: Vec<tokio::task::JoinHandle<Result<Vec<u64>>>>,
        started: Instant,
        errors: &AtomicUsize,
    ) -> Result<Phase> {
        let mut lat_us = Vec::new();
        for t in tasks {
            lat_us.extend(t.await??);
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(Phase {
            per_s: lat_us.len() as f64 / secs,
            lat_us,
            errors: errors.load(Ordering::Relaxed),
        })
    }
}

/// Signed request `i` for `url` (each body is unique, so replay protection never refuses it).
fn request(url: &str, i: u64) -> Result<Request<Full<Bytes>>> {
    let body = format!(
        r#"{{"action":"opened","number":{i},"repository":{{"full_name":"acme/widgets"}},"sender":{{"login":"octocat"}}}}"#
    );
    let sig = hookwarden_signatures::sign(
        hookwarden_signatures::Scheme::GithubSha256,
        &[SECRET],
        &hookwarden_signatures::Outbound {
            msg_id: "x",
            timestamp: 0,
            body: body.as_bytes(),
        },
    )?;
    let mut b = Request::post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", format!("d-{i}"));
    for (k, v) in sig {
        b = b.header(k, v);
    }
    Ok(b.body(Full::new(Bytes::from(body)))?)
}

/// How a phase's clients pace their requests.
#[derive(Clone, Copy)]
enum Pace {
    /// Closed loop: back to back until `secs` have passed.
    Closed { secs: u64 },
    /// Open loop at `rate` requests/s for `secs`: request k is due at k / rate and its latency
    /// counts from that moment (so queueing behind a slow server is measured, not hidden).
    Open { rate: f64, secs: u64 },
}

/// Closed loop: `concurrency` clients send back to back for `secs`.
async fn closed_loop(url: &str, concurrency: usize, secs: u64, first: u64) -> Result<Phase> {
    drive_phase(url, concurrency, Pace::Closed { secs }, first).await
}

/// Open loop at `rate` requests/s for `secs` (see [`Pace::Open`]).
async fn open_loop(
    url: &str,
    concurrency: usize,
    rate: f64,
    secs: u64,
    first: u64,
) -> Result<Phase> {
    drive_phase(url, concurrency, Pace::Open { rate, secs }, first).await
}

/// `concurrency` clients send signed requests `first`, `first + 1`, … paced by `pace`.
async fn drive_phase(url: &str, concurrency: usize, pace: Pace, first: u64) -> Result<Phase> {
    let client = http_client(concurrency * 2);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, errors) =
            (client.clone(), url.to_owned(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let from = match pace {
                    Pace::Closed { secs } => {
                        if start.elapsed() >= Duration::from_secs(secs) {
                            break;
                        }
                        Instant::now()
                    }
                    Pace::Open { rate, secs } => {
                        if k >= (rate * secs as f64).max(1.0) as u64 {
                            break;
                        }
                        let due = start + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                let (status, _) = send(&client, request(&url, first + k)?).await?;
                lat.push(from.elapsed().as_micros() as u64);
                if status != 202 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    Phase::gather(tasks, start, &errors).await
}

/// Serves `app` on a free port of 127.0.0.1, in the background.
async fn serve_on_loopback(app: axum::Router) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// The bare handler: reads the body, answers 202.
fn bare_app() -> axum::Router {
    axum::Router::new().route(
        "/in/{token}",
        axum::routing::post(|_body: Bytes| async { axum::http::StatusCode::ACCEPTED }),
    )
}

/// A bare axum handler answering 202 on 127.0.0.1, in this process (the baseline).
async fn bare_axum() -> Result<std::net::SocketAddr> {
    serve_on_loopback(bare_app()).await
}

#[derive(clap::Args)]
pub(crate) struct BareArgs {
    /// Where to listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

/// `hookwarden-bench bare-ingest`: the bare handler in a process of its own, as `serve` is
/// (the second baseline: the load generator and the server no longer share one runtime).
pub(crate) async fn serve_bare(args: BareArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the bare handler listens on loopback only");
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("bare-ingest: listening on {}", listener.local_addr()?);
    axum::serve(listener, bare_app()).await?;
    Ok(())
}

/// The least a durable ingest can do, as a reference: the bare handler, but answering 202 only
/// once the body is committed to SQLite (WAL, the same `synchronous` setting, group commit by
/// one writer thread, one row per request; no verification, allowlist, replay check, audit
/// entry or checkpointer). What durability alone costs here, against the same baseline.
async fn durable_floor(dir: &std::path::Path, synchronous: &str) -> Result<std::net::SocketAddr> {
    serve_on_loopback(durable_floor_app(dir, synchronous)?).await
}

#[derive(clap::Args)]
pub(crate) struct FloorArgs {
    /// Where to listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// `full` or `normal`, as the `ingest` scenario's option.
    #[arg(long, default_value = "full")]
    sqlite_synchronous: String,
    /// The directory its database goes in (the parent's temporary directory: the process is
    /// killed, not stopped, so it cannot remove a directory of its own).
    #[arg(long)]
    data_dir: PathBuf,
}

/// `hookwarden-bench bare-durable`: the durable floor in a process of its own (for
/// `--instructions`, which counts one process's instructions).
pub(crate) async fn serve_floor(args: FloorArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the durable floor listens on loopback only");
    }
    let app = durable_floor_app(&args.data_dir, &args.sqlite_synchronous)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("bare-durable: listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn durable_floor_app(dir: &std::path::Path, synchronous: &str) -> Result<axum::Router> {
    type Job = (Bytes, tokio::sync::oneshot::Sender<bool>);
    let conn = rusqlite::Connection::open(dir.join("floor.db"))?;
    let sync = if synchronous == "normal" {
        "NORMAL"
    } else {
        "FULL"
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; \
         CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
    ))?;
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::spawn(move || {
        let mut batch: Vec<Job> = Vec::with_capacity(1024);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let ok = (|| -> rusqlite::Result<()> {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                let mut st = conn.prepare_cached("INSERT INTO requests (body) VALUES (?1)")?;
                for (body, _) in &batch {
                    st.execute([body.as_ref()])?;
                }
                conn.execute_batch("COMMIT")
            })()
            .is_ok();
            if !ok {
                let _ = conn.execute_batch("ROLLBACK");
            }
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(ok);
            }
        }
    });
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/in/{token}",
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let (reply, done) = tokio::sync::oneshot::channel();
                let sent = tx.send((body, reply)).is_ok();
                match (sent, done.await) {
                    (true, Ok(true)) => axum::http::StatusCode::ACCEPTED,
                    _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
        }),
    );
    Ok(app)
}

pub(crate) async fn run(mut args: Args) -> Result<()> {
    if args.counts.instructions {
        return instructions(&args).await;
    }
    if args.quick {
        args.duration_secs = args.duration_secs.min(4);
        args.concurrency = args.concurrency.min(32);
    }
    let bin = hookwarden_bin(args.bin.as_deref())?;

    let bare = bare_axum().await?;
    let base_url = format!("http://{bare}/in/wh_baseline");
    let mut base = closed_loop(&base_url, args.concurrency, args.duration_secs, 0).await?;
    let (process_base, process_base_cpu) = {
        let child = ChildServer::start("bare-ingest")?;
        let url = format!("http://{}/in/wh_baseline", child.addr);
        let cpu = cpu_seconds(child.child.id());
        let phase = closed_loop(&url, args.concurrency, args.duration_secs, 0).await?;
        let cpu = cpu_us_per_request(child.child.id(), cpu, phase.lat_us.len());
        (phase, cpu)
    };

    let config = format!(
        // One load-generator address by design: no per-address connection bound.
        "[server]\nmax_connections_per_peer = 0\n\
         [storage]\nsqlite_synchronous = \"{}\"\n[metrics]\npublic = true\n",
        args.sqlite_synchronous
    );
    let serve = Serve::start(&bin, &config, args.log.as_deref().unwrap_or("warn"))?;
    let url = create_source(&serve).await?;
    let client = http_client(4);

    let serve_cpu = cpu_seconds(serve.child.id());
    let mut peak = closed_loop(&url, args.concurrency, args.duration_secs, 0).await?;
    let serve_cpu = cpu_us_per_request(serve.child.id(), serve_cpu, peak.lat_us.len());
    if peak.errors > 0 {
        bail!("{} requests were not accepted", peak.errors);
    }
    let target = peak.per_s * 0.7;
    let server_before = server_metrics(&client, serve.addr).await?;
    // More senders than the closed loop had, so that the client never limits the rate.
    let mut at70 = open_loop(
        &url,
        (args.concurrency * 4).max(128),
        target,
        args.duration_secs,
        peak.lat_us.len() as u64 + 1,
    )
    .await?;
    if at70.errors > 0 {
        bail!("{} requests were not accepted at 70 %", at70.errors);
    }
    let server_at70 = server_metrics(&client, serve.addr)
        .await?
        .since(&server_before);
    // The same open loop against the bare handler: what the load generator itself adds to the
    // latency at this rate on this machine.
    let mut base70 = open_loop(
        &base_url,
        (args.concurrency * 4).max(128),
        target,
        args.duration_secs,
        0,
    )
    .await?;
    // Last, so that its writes (and the kernel flushing them) do not disturb the phases above.
    let floor_dir = tempfile::tempdir()?;
    let floor = durable_floor(floor_dir.path(), &args.sqlite_synchronous).await?;
    let floor_url = format!("http://{floor}/in/wh_floor");
    let mut floor = closed_loop(&floor_url, args.concurrency, args.duration_secs, 0).await?;
    if floor.errors > 0 {
        bail!("{} requests to the durable floor failed", floor.errors);
    }
    let out = json!({
        "scenario": "ingest",
        "store": "sqlite",
        "sqlite_synchronous": args.sqlite_synchronous,
        "throughput_per_s": round2(peak.per_s),
        "baseline_per_s": round2(base.per_s),
        "ratio": round2(peak.per_s / base.per_s),
        "p50_ms": round2(percentile_ms(&mut peak.lat_us, 50.0)),
        "p99_ms": round2(percentile_ms(&mut peak.lat_us, 99.0)),
        "process_baseline_per_s": round2(process_base.per_s),
        "process_baseline_ratio": round2(peak.per_s / process_base.per_s),
        "serve_cpu_us_per_request": serve_cpu,
        "process_baseline_cpu_us_per_request": process_base_cpu,
        "cpu_ratio": process_base_cpu.zip(serve_cpu).map(|(b, s)| round2(b / s)),
        "baseline_p50_ms": round2(percentile_ms(&mut base.lat_us, 50.0)),
        "baseline_p99_ms": round2(percentile_ms(&mut base.lat_us, 99.0)),
        "at_70pct_target_per_s": round2(target),
        "at_70pct_achieved_per_s": round2(at70.per_s),
        "at_70pct_p50_ms": round2(percentile_ms(&mut at70.lat_us, 50.0)),
        "at_70pct_p99_ms": round2(percentile_ms(&mut at70.lat_us, 99.0)),
        "baseline_at_same_rate_p50_ms": round2(percentile_ms(&mut base70.lat_us, 50.0)),
        "baseline_at_same_rate_p99_ms": round2(percentile_ms(&mut base70.lat_us, 99.0)),
        "at_70pct_server_p99_under_ms": server_at70.inbound.quantile_bound_ms(0.99),
        "at_70pct_server_over_5ms_pct": round2(server_at70.inbound.share_over(0.005) * 100.0),
        "at_70pct_sqlite_write_p99_under_ms": server_at70.writes.quantile_bound_ms(0.99),
        "at_70pct_sqlite_write_over_5ms_pct": round2(server_at70.writes.share_over(0.005) * 100.0),
        "at_70pct_sqlite_writes_per_commit": server_at70.writes_per_commit().map(round2),
        "durable_floor_per_s": round2(floor.per_s),
        "durable_floor_ratio": round2(floor.per_s / base.per_s),
        "durable_floor_p99_ms": round2(percentile_ms(&mut floor.lat_us, 99.0)),
        "peak_rss_mb": round2(serve.peak_rss_mb()),
        "concurrency": args.concurrency,
        "duration_s": args.duration_secs,
        "accepted": peak.lat_us.len() + at70.lat_us.len(),
    });
    println!("{out}");
    Ok(())
}

/// Creates the measured source (GitHub signatures, loopback allow-listed) on `serve`; its URL.
async fn create_source(serve: &Serve) -> Result<String> {
    let api = Api::new(serve);
    let body = json!({
        "name": "bench",
        "allowed_cidrs": ["127.0.0.0/8"],
        "verification": {"type": "github", "secret": SECRET},
    })
    .to_string();
    let body = api
        .post("/api/v1/sources", body, 201, "creating the source")
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let url = v["url"].as_str().unwrap_or_default();
    let Some(path) = url.find("/in/").map(|i| &url[i..]) else {
        bail!("no URL in {v}");
    };
    Ok(format!("http://{}{path}", serve.addr))
}

/// Warm-up, then one count over `sizes.measured` signed requests sent one after another on one
/// keep-alive connection; every one must be accepted.
async fn sequential(
    cg: &crate::instructions::Callgrind,
    pid: u32,
    name: &'static str,
    url: &str,
    sizes: crate::instructions::Sizes,
) -> Result<crate::instructions::Count> {
    let client = http_client(1);
    drive(&client, url, 0, sizes.warmup).await?;
    let first = sizes.warmup as u64;
    cg.count(pid, (name, "request"), sizes.measured, || {
        drive(&client, url, first, sizes.measured)
    })
    .await
}

/// `--instructions`: callgrind counts per accepted webhook for `serve` (signature verified,
/// allow-listed, replay-checked, event and audit entry committed, log line written), the bare
/// handler and the durable floor, each in a process of its own, one request at a time.
async fn instructions(args: &Args) -> Result<()> {
    use crate::instructions::{Callgrind, Sizes, report};
    let opts = &args.counts;
    let cg = Callgrind::new(opts, "ingest", args.quick)?;
    let sizes = Sizes::new(args.quick);
    let bin = hookwarden_bin(args.bin.as_deref())?;
    let log = args.log.as_deref().unwrap_or("info");
    let mut counts = Vec::new();

    let bare = ChildServer::start_under(&cg, "bare-ingest", &[])?;
    let url = format!("http://{}/in/wh_baseline", bare.addr);
    counts.push(sequential(&cg, bare.child.id(), "bare_handler", &url, sizes).await?);
    drop(bare);

    let floor_dir = tempfile::tempdir()?;
    let floor = ChildServer::start_under(
        &cg,
        "bare-durable",
        &[
            "--sqlite-synchronous",
            &args.sqlite_synchronous,
            "--data-dir",
            &floor_dir.path().to_string_lossy(),
        ],
    )?;
    let url = format!("http://{}/in/wh_floor", floor.addr);
    counts.push(sequential(&cg, floor.child.id(), "durable_floor", &url, sizes).await?);
    drop(floor);

    let config = format!(
        "[storage]\nsqlite_synchronous = \"{}\"\n",
        args.sqlite_synchronous
    );
    let serve = Serve::start_under(&cg, &bin, &config, log)?;
    let url = create_source(&serve).await?;
    counts.push(sequential(&cg, serve.child.id(), "serve", &url, sizes).await?);
    drop(serve);

    let ratio = |a: usize, b: usize| crate::instructions::ratio(&counts, a, b);
    let extra = json!({
        "serve_to_bare_handler": ratio(2, 0),
        "serve_to_durable_floor": ratio(2, 1),
        "sqlite_synchronous": args.sqlite_synchronous,
        "log": log,
    });
    report("ingest", args.quick, opts, &counts, extra)
}

async fn drive(client: &HttpClient, url: &str, first: u64, n: usize) -> Result<()> {
    for i in first..first + n as u64 {
        let (status, body) = send(client, request(url, i)?).await?;
        if status != 202 {
            bail!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    Ok(())
}

/// `serve`'s own histogram of ingest latency (`hookwarden_inbound_latency_seconds`: from the
/// handler's start to the answer, commit included), as cumulative `(upper bound s, count)`.
/// Set beside the client's figures, it tells the time spent in the handler from the time spent
/// before it (accepting, reading, scheduling) and in the load generator.
struct ServerLatency(Vec<(f64, u64)>);

impl ServerLatency {
    fn since(&self, before: &ServerLatency) -> ServerLatency {
        ServerLatency(
            self.0
                .iter()
                .map(|&(le, n)| {
                    let was = before.0.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
                    (le, n.saturating_sub(was))
                })
                .collect(),
        )
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|b| b.1).max().unwrap_or(0)
    }

    /// The smallest bucket bound (ms) under which `q` of the requests were answered.
    fn quantile_bound_ms(&self, q: f64) -> Option<f64> {
        let total = self.total() as f64;
        self.0
            .iter()
            .find(|b| total > 0.0 && b.1 as f64 >= q * total)
            .map(|b| b.0 * 1000.0)
    }

    /// The share of requests that took longer than `secs` (a bucket bound).
    fn share_over(&self, secs: f64) -> f64 {
        let total = self.total();
        let under = self.0.iter().find(|b| b.0 == secs).map_or(total, |b| b.1);
        if total == 0 {
            0.0
        } else {
            (total - under) as f64 / total as f64
        }
    }
}

/// `serve`'s histograms read from one scrape: ingest latency and the SQLite writes' latency
/// (`hookwarden_sqlite_write_seconds`: queue, batch and commit), and the writer's commits.
struct ServerMetrics {
    inbound: ServerLatency,
    writes: ServerLatency,
    commits: u64,
}

impl ServerMetrics {
    fn since(&self, before: &ServerMetrics) -> ServerMetrics {
        ServerMetrics {
            inbound: self.inbound.since(&before.inbound),
            writes: self.writes.since(&before.writes),
            commits: self.commits.saturating_sub(before.commits),
        }
    }

    /// Writes per commit: the writer's average batch.
    fn writes_per_commit(&self) -> Option<f64> {
        (self.commits > 0).then(|| self.writes.total() as f64 / self.commits as f64)
    }
}

async fn server_metrics(client: &HttpClient, addr: std::net::SocketAddr) -> Result<ServerMetrics> {
    let req = Request::get(format!("http://{addr}/metrics")).body(Full::new(Bytes::new()))?;
    let (status, body) = send(client, req).await?;
    if status != 200 {
        bail!("reading serve's metrics failed: {status}");
    }
    Ok(parse_metrics(&String::from_utf8_lossy(&body)))
}

fn parse_metrics(text: &str) -> ServerMetrics {
    let commits = text
        .lines()
        .find_map(|l| l.strip_prefix("hookwarden_sqlite_commits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    ServerMetrics {
        inbound: buckets(text, "hookwarden_inbound_latency_seconds"),
        writes: buckets(text, "hookwarden_sqlite_write_seconds"),
        commits,
    }
}

/// The cumulative buckets of histogram `name` in an exposition text.
fn buckets(text: &str, name: &str) -> ServerLatency {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix.as_str())?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    ServerLatency(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_latency_quantiles_from_buckets() {
        let before = ServerLatency(vec![(0.001, 10), (0.005, 10), (f64::INFINITY, 10)]);
        let after = ServerLatency(vec![(0.001, 910), (0.005, 1000), (f64::INFINITY, 1010)]);
        let d = after.since(&before);
        assert_eq!(d.total(), 1000);
        assert_eq!(d.quantile_bound_ms(0.5), Some(1.0));
        assert_eq!(d.quantile_bound_ms(0.99), Some(5.0));
        assert_eq!(d.quantile_bound_ms(0.999), Some(f64::INFINITY));
        assert!((d.share_over(0.005) - 0.01).abs() < 1e-9);
        assert_eq!(ServerLatency(vec![]).quantile_bound_ms(0.99), None);
    }

    #[test]
    fn histograms_and_commits_read_from_an_exposition() {
        let text = |writes: [u64; 3], commits: u64| {
            format!(
                "# TYPE hookwarden_sqlite_write_seconds histogram\n\
                 hookwarden_sqlite_write_seconds_bucket{{le=\"0.0001\"}} {}\n\
                 hookwarden_sqlite_write_seconds_bucket{{le=\"0.005\"}} {}\n\
                 hookwarden_sqlite_write_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 hookwarden_inbound_latency_seconds_bucket{{le=\"0.005\"}} 7\n\
                 hookwarden_inbound_latency_seconds_bucket{{le=\"+Inf\"}} 8\n\
                 hookwarden_sqlite_commits_total {commits}\n",
                writes[0], writes[1], writes[2]
            )
        };
        let before = parse_metrics(&text([10, 20, 20], 4));
        let after = parse_metrics(&text([60, 110, 120], 14));
        let d = after.since(&before);
        assert_eq!(d.writes.total(), 100);
        assert_eq!(d.writes.quantile_bound_ms(0.5), Some(0.1));
        assert!((d.writes.share_over(0.005) - 0.1).abs() < 1e-9);
        assert_eq!(d.writes_per_commit(), Some(10.0));
        assert_eq!(d.inbound.total(), 0);
        assert_eq!(after.inbound.total(), 8);
        // A serve without the writer's metrics (PostgreSQL): no batch figure.
        let none = parse_metrics("hookwarden_inbound_latency_seconds_bucket{le=\"+Inf\"} 3\n");
        assert_eq!(none.writes.total(), 0);
        assert_eq!(none.writes_per_commit(), None);
    }
}
