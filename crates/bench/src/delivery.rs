//! Scenario `delivery`: E events fanned out to N endpoints through `serve` (SQLite, every
//! delivery signed and its attempt recorded durably), measured until every delivery is recorded
//! as succeeded. Baseline: the same receiver driven by a bare HTTP client loop with the same
//! concurrency, in the same run.

use crate::harness::*;
use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Endpoints each event fans out to.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Events posted through the API.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Concurrent API clients (and baseline client tasks).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Small run that finishes in well under 30 seconds.
    #[arg(long)]
    quick: bool,
    /// `full` (fsync per group commit, survives power loss) or `normal`.
    #[arg(long, default_value = "full")]
    sqlite_synchronous: String,
    /// Log level of the measured server.
    #[arg(long, default_value = "info")]
    log: String,
    /// Path to the hookwarden binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// `sqlite` (the embedded default) or `postgres` (which also measures SQLite first, for
    /// comparison).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// PostgreSQL: instance counts to measure, each on a fresh database (e.g. `1,2,3`).
    #[arg(long, default_value = "1")]
    instances: String,
    /// PostgreSQL: a server URL on which the bench may create and drop databases.
    #[arg(
        long,
        env = "HOOKWARDEN_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// PostgreSQL: finished deliveries put in the database before the run (e.g. 1000000).
    #[arg(long, default_value_t = 0)]
    prefill_finished: u64,
    /// With `--instructions`: also measure `serve` with the event type in the catalogue with a
    /// JSON Schema checked on every publish (`serve_schema`, in the same run).
    #[arg(long)]
    schema: bool,
    /// With `--instructions`: also measure `serve` with a payload filter on the endpoint,
    /// matched on every event (`serve_filter`, in the same run).
    #[arg(long)]
    filter: bool,
    /// With `--instructions`: also measure `serve` with a transformation on the endpoint, run on
    /// every delivery before it is signed (`serve_transform`, in the same run).
    #[arg(long)]
    transform: bool,
    #[command(flatten)]
    counts: crate::instructions::Options,
}

pub(crate) async fn run(mut args: Args) -> Result<()> {
    if args.counts.instructions {
        if args.store != "sqlite" {
            bail!("--instructions measures the SQLite store (the embedded default)");
        }
        return instructions(&args).await;
    }
    if args.quick {
        args.endpoints = args.endpoints.min(5);
        args.events = args.events.min(1000);
    }
    let bin = hookwarden_bin(args.bin.as_deref())?;
    let epoch = Instant::now();
    let receiver = Receiver::start(epoch).await?;
    let deliveries = args.endpoints * args.events;

    // Baseline: a bare client loop, same receiver, same concurrency, same request count.
    let (baseline_per_s, mut base_lat) = baseline(&receiver, deliveries, args.concurrency).await?;
    let base = Baseline {
        per_s: baseline_per_s,
        p50_ms: percentile_ms(&mut base_lat, 50.0),
        p99_ms: percentile_ms(&mut base_lat, 99.0),
    };
    receiver.reset();

    let instances = parse_instances(&args.instances)?;
    match args.store.as_str() {
        "sqlite" => {
            let config = sqlite_config(&args.sqlite_synchronous);
            measure(&args, &bin, &receiver, &base, "sqlite", &[config], 0).await?;
        }
        "postgres" => {
            // The embedded default first, for comparison, in the same run.
            let config = sqlite_config(&args.sqlite_synchronous);
            measure(&args, &bin, &receiver, &base, "sqlite", &[config], 0).await?;
            // With --prefill-finished, each instance count is measured on an empty database
            // and then on one holding that many finished deliveries, in the same run.
            let prefills: Vec<u64> = if args.prefill_finished > 0 {
                vec![0, args.prefill_finished]
            } else {
                vec![0]
            };
            for &n in &instances {
                for &prefill in &prefills {
                    let db = Database::create(&args.database_url).await?;
                    if prefill > 0 {
                        db.prefill_finished(prefill).await?;
                    }
                    // PostgreSQL instances share one master key (a fixed one: test data only).
                    let config = format!(
                        "{}[storage]\nurl = \"{}\"\nmax_connections = 16\n[security]\nmaster_key = \"{}\"\n",
                        common_config(),
                        db.url,
                        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
                    );
                    let configs = vec![config; n];
                    let r =
                        measure(&args, &bin, &receiver, &base, "postgres", &configs, prefill).await;
                    db.drop_database().await;
                    r?;
                }
            }
        }
        other => bail!("--store must be sqlite or postgres, not {other:?}"),
    }
    Ok(())
}

struct Baseline {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_instances(s: &str) -> Result<Vec<usize>> {
    parse_counts(s, "--instances", "1,2,3", 16)
}

/// The load generator is one address by design: no per-address connection bound on the
/// measured server (production keeps one; see `server.max_connections_per_peer`).
fn common_config() -> String {
    "[server]\nmax_connections_per_peer = 0\n\
     [egress]\nallow_ranges = [\"127.0.0.0/8\"]\nallow_http = true\n[metrics]\npublic = true\n"
        .into()
}

fn sqlite_config(synchronous: &str) -> String {
    format!(
        "{}[storage]\nsqlite_synchronous = \"{synchronous}\"\n",
        common_config()
    )
}

/// Starts one `serve` per config (all on one database when several), creates the endpoints,
/// posts the events spread over the instances, and prints one JSON line when every delivery is
/// recorded as succeeded.
async fn measure(
    args: &Args,
    bin: &std::path::Path,
    receiver: &Receiver,
    base: &Baseline,
    store: &str,
    configs: &[String],
    prefilled: u64,
) -> Result<()> {
    receiver.reset();
    let deliveries = args.endpoints * args.events;
    let first = Serve::start(bin, &configs[0], &args.log)?;
    let key = first.key.clone();
    let mut serves = vec![first];
    for c in &configs[1..] {
        serves.push(Serve::start_with_key(bin, c, &args.log, Some(key.clone()))?);
    }
    let client = http_client(args.concurrency * 2);
    let bases: Vec<String> = serves
        .iter()
        .map(|s| format!("http://{}", s.addr))
        .collect();
    let auth = format!("Bearer {key}");
    let api = Api::new(&serves[0]);
    for i in 0..args.endpoints {
        create_endpoint(&api, &format!("http://{}/ep{i}", receiver.addr)).await?;
    }

    let epoch = receiver.epoch;
    let started = Instant::now();
    let bases = Arc::new(bases);
    let shared = (client.clone(), bases.clone(), auth.clone());
    run_indexed(args.concurrency, args.events, move |i| {
        let (client, bases, auth) = shared.clone();
        async move {
            let body = event_body(i, epoch.elapsed().as_micros() as u64);
            let base = &bases[i % bases.len()];
            let req = Request::post(format!("{base}/api/v1/events"))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let (status, body) = send(&client, req).await?;
            if status != 202 {
                bail!(
                    "posting an event failed: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }
    })
    .await?;
    let posted_in = started.elapsed();

    // Done when every delivery has reached the receiver and none is pending any more (its
    // outcome recorded). Both checks are cheap, so a large table does not slow the poll.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if receiver.count.load(Ordering::Relaxed) as usize >= deliveries {
            let req = Request::get(format!(
                "{}/api/v1/deliveries?status=pending&limit=1",
                bases[0]
            ))
            .header("authorization", &auth)
            .body(Full::new(Bytes::new()))?;
            let (status, body) = send(&client, req).await?;
            if status != 200 {
                bail!("listing deliveries failed: {status}");
            }
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["data"].as_array().is_some_and(|a| a.is_empty()) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("deliveries did not finish in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Outside the timed part: every delivery must be recorded as succeeded.
    let req = Request::get(format!("{}/api/v1/stats", bases[0]))
        .header("authorization", &auth)
        .body(Full::new(Bytes::new()))?;
    let (_, body) = send(&client, req).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let ok = v["deliveries"]["succeeded"].as_u64().unwrap_or(0) as usize;
    if ok < deliveries + prefilled as usize / 2 {
        bail!("only {ok} deliveries are recorded as succeeded, expected {deliveries}");
    }
    let throughput = deliveries as f64 / elapsed;
    let mut lat = receiver
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let peak_rss = serves
        .iter()
        .map(|s| s.peak_rss_mb())
        .fold(0.0f64, f64::max);
    let out = json!({
        "scenario": "delivery",
        "store": store,
        "instances": configs.len(),
        "prefilled_finished_deliveries": prefilled,
        "sqlite_synchronous": (store == "sqlite").then_some(args.sqlite_synchronous.as_str()),
        "throughput_per_s": round2(throughput),
        "baseline_per_s": round2(base.per_s),
        "ratio": round2(throughput / base.per_s),
        "p50_ms": round2(percentile_ms(&mut lat, 50.0)),
        "p99_ms": round2(percentile_ms(&mut lat, 99.0)),
        "baseline_p50_ms": round2(base.p50_ms),
        "baseline_p99_ms": round2(base.p99_ms),
        "peak_rss_mb": round2(peak_rss),
        "endpoints": args.endpoints,
        "events": args.events,
        "deliveries": deliveries,
        "received": receiver.count.load(Ordering::Relaxed),
        "concurrency": args.concurrency,
        "events_posted_per_s": round2(args.events as f64 / posted_in.as_secs_f64()),
        "duration_s": round2(elapsed),
    });
    println!("{out}");
    drop(serves);
    Ok(())
}

/// A fresh PostgreSQL database for one measurement, dropped afterwards.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(admin: &str) -> Result<Database> {
        use sqlx::Connection;
        let name = format!(
            "hw_bench_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let mut c = sqlx::postgres::PgConnection::connect(admin).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .await?;
        let _ = c.close().await;
        let sep = if admin.contains('?') { '&' } else { '?' };
        Ok(Database {
            admin: admin.to_owned(),
            url: format!("{admin}{sep}dbname={name}"),
            name,
        })
    }

    /// Fills the database with `n` finished deliveries (half succeeded, half failed, with an
    /// attempt each), as a long-running installation would have, and analyses the tables.
    async fn prefill_finished(&self, n: u64) -> Result<()> {
        use sqlx::Connection;
        // The schema comes from the server's own migrations.
        let out = std::process::Command::new(hookwarden_bin(None)?)
            .args(["migrate"])
            .env("HOOKWARDEN_DATABASE_URL", &self.url)
            .output()?;
        if !out.status.success() {
            bail!(
                "hookwarden migrate failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut c = sqlx::postgres::PgConnection::connect(&self.url).await?;
        let started = Instant::now();
        // Finished within the last ~17 minutes: inside the retention window, like the recent
        // history of a busy installation (older rows would be swept away at start).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        sqlx::raw_sql(&format!(
            "INSERT INTO events (id, event_type, payload, created_at)
               VALUES ('evt_prefill', 'old.event', '{{}}', {now});
             INSERT INTO deliveries (id, event_id, endpoint_id, status, attempt_count,
                                     next_attempt_at, created_at, updated_at, completed_at)
               SELECT 'dlv_p' || lpad(g::text, 10, '0'), 'evt_prefill', 'ep_old' || (g % 50),
                      1 + (g % 2), 1, {now} - g, {now} - g, {now} - g, {now} - g
               FROM generate_series(1, {n}) g;
             INSERT INTO attempts (delivery_id, attempt_no, started_at, duration_ms, status_code,
                                   outcome)
               SELECT 'dlv_p' || lpad(g::text, 10, '0'), 1, {now} - g, 12, 200, 'succeeded'
               FROM generate_series(1, {n}) g;
             ANALYZE;"
        ))
        .execute(&mut c)
        .await?;
        let _ = c.close().await;
        eprintln!(
            "hookwarden-bench: prefilled {n} finished deliveries in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn drop_database(&self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut c)
            .await;
            let _ = c.close().await;
        }
    }
}

/// The event posted as number `i` (`sent_at_us`: when, for the receiver's latency).
fn event_body(i: usize, sent_at_us: u64) -> String {
    format!(
        r#"{{"type":"order.created","payload":{{"order":{i},"sent_at_us":{sent_at_us},"customer":"cus_8f3b2a","amount":4200,"currency":"EUR"}}}}"#
    )
}

/// The body of baseline request `i` (the size and shape of a delivery's).
fn baseline_body(i: usize, sent_at_us: u64) -> String {
    format!(
        r#"{{"id":"evt_{i}","type":"order.created","timestamp":"2026-11-23T10:00:00.000Z","data":{{"order":{i},"sent_at_us":{sent_at_us},"customer":"cus_8f3b2a","amount":4200,"currency":"EUR"}}}}"#
    )
}

fn baseline_request(url: &str, i: usize, sent_at_us: u64) -> Result<Request<Full<Bytes>>> {
    Ok(Request::post(url)
        .header("content-type", "application/json")
        .header("webhook-id", format!("evt_{i}"))
        .body(Full::new(Bytes::from(baseline_body(i, sent_at_us))))?)
}

#[derive(clap::Args)]
pub(crate) struct BareClientArgs {
    /// Where to listen for commands (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

/// `hookwarden-bench bare-client`: the baseline client loop in a process of its own, for
/// `--instructions`. `GET /run/{port}/{n}` sends `n` baseline requests one after another on one
/// keep-alive connection to `127.0.0.1:{port}` and answers when they are done.
pub(crate) async fn serve_bare_client(args: BareClientArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the bare client listens on loopback only");
    }
    let client = http_client(1);
    let next = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/run/{port}/{n}",
        axum::routing::get(
            move |axum::extract::Path((port, n)): axum::extract::Path<(u16, usize)>| {
                let (client, next) = (client.clone(), next.clone());
                async move {
                    let url = format!("http://127.0.0.1:{port}/baseline");
                    for _ in 0..n {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let sent = baseline_request(&url, i, 0);
                        let ok = match sent {
                            Ok(req) => send(&client, req).await.is_ok_and(|(s, _)| s == 200),
                            Err(_) => false,
                        };
                        if !ok {
                            return axum::http::StatusCode::BAD_GATEWAY;
                        }
                    }
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("bare-client: listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// `--instructions`: callgrind counts per delivered event for `serve` (the event accepted by the
/// API, fanned out to one endpoint, signed, sent, its attempt recorded; log line written) and
/// per request for the bare client loop, each in a process of its own, one event at a time.
async fn instructions(args: &Args) -> Result<()> {
    use crate::instructions::{Callgrind, Sizes, report};
    let opts = &args.counts;
    let cg = Callgrind::new(opts, "delivery", args.quick)?;
    let sizes = Sizes::new(args.quick);
    let bin = hookwarden_bin(args.bin.as_deref())?;
    let receiver = Receiver::start(Instant::now()).await?;
    let port = receiver.addr.port();
    let mut counts = Vec::new();

    let bare = ChildServer::start_under(&cg, "bare-client", &[])?;
    let control = http_client(1);
    let run = |n: usize| {
        let (control, addr) = (control.clone(), bare.addr);
        async move {
            let req = Request::get(format!("http://{addr}/run/{port}/{n}"))
                .body(Full::new(Bytes::new()))?;
            let (status, _) = send(&control, req).await?;
            if status != 200 {
                bail!("the bare client loop failed: {status}");
            }
            Ok(())
        }
    };
    run(sizes.warmup).await?;
    let pid = bare.child.id();
    counts.push(
        cg.count(pid, ("bare_client", "request"), sizes.measured, || {
            run(sizes.measured)
        })
        .await?,
    );
    drop(bare);

    let serve = Serve::start_under(
        &cg,
        &bin,
        &sqlite_config(&args.sqlite_synchronous),
        &args.log,
    )?;
    let api = Api::new(&serve);
    create_endpoint(&api, &format!("http://{}/ep0", receiver.addr)).await?;
    receiver.reset();
    one_by_one(&api, &receiver, 0, sizes.warmup).await?;
    counts.push(
        cg.count(serve.child.id(), ("serve", "event"), sizes.measured, || {
            one_by_one(&api, &receiver, sizes.warmup, sizes.measured)
        })
        .await?,
    );
    drop(serve);

    for (on, variant) in [
        (args.schema, Variant::Schema),
        (args.filter, Variant::Filter),
        (args.transform, Variant::Transform),
    ] {
        if !on {
            continue;
        }
        let serve = Serve::start_under(
            &cg,
            &bin,
            &sqlite_config(&args.sqlite_synchronous),
            &args.log,
        )?;
        let api = Api::new(&serve);
        variant
            .set_up(&api, &format!("http://{}/ep0", receiver.addr))
            .await?;
        receiver.reset();
        one_by_one(&api, &receiver, 0, sizes.warmup).await?;
        counts.push(
            cg.count(
                serve.child.id(),
                (variant.name(), "event"),
                sizes.measured,
                || one_by_one(&api, &receiver, sizes.warmup, sizes.measured),
            )
            .await?,
        );
        drop(serve);
    }

    let extra = json!({
        "serve_to_bare_client": crate::instructions::ratio(&counts, 1, 0),
        "variants_to_serve": counts
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, c)| (c.name.to_string(), json!(crate::instructions::ratio(&counts, i, 1))))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "sqlite_synchronous": args.sqlite_synchronous,
        "log": args.log,
        "endpoints": 1,
    });
    report("delivery", args.quick, opts, &counts, extra)
}

/// A variant of `serve` measured beside it: the same events, with one feature on.
#[derive(Clone, Copy)]
enum Variant {
    /// The event type in the catalogue with a JSON Schema checked on publish.
    Schema,
    /// A payload filter on the endpoint (matching every event: each is still delivered).
    Filter,
    /// A transformation on the endpoint: a field and a header added, run before signing.
    Transform,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Schema => "serve_schema",
            Variant::Filter => "serve_filter",
            Variant::Transform => "serve_transform",
        }
    }

    async fn set_up(self, api: &Api, url: &str) -> Result<()> {
        let endpoint = match self {
            Variant::Schema => {
                let event_type = json!({
                    "name": "order.created",
                    "schema": {
                        "type": "object",
                        "required": ["order", "customer", "amount", "currency"],
                        "properties": {
                            "order": {"type": "integer", "minimum": 0},
                            "sent_at_us": {"type": "integer"},
                            "customer": {"type": "string", "pattern": "^cus_[a-z0-9]+$"},
                            "amount": {"type": "integer", "minimum": 1},
                            "currency": {"enum": ["EUR", "USD", "GBP"]}
                        },
                        "additionalProperties": false
                    }
                });
                api.post(
                    "/api/v1/event-types",
                    event_type.to_string(),
                    201,
                    "creating an event type",
                )
                .await?;
                json!({ "url": url })
            }
            Variant::Filter => json!({
                "url": url,
                "filter": {
                    "type": {"$prefix": "order."},
                    "data.amount": {"$gte": 1},
                    "data.currency": {"$in": ["EUR", "USD", "GBP"]},
                    "data.customer": {"$regex": "^cus_[a-z0-9]+$"}
                }
            }),
            Variant::Transform => json!({
                "url": url,
                "transformation": "fn handler(webhook) {\n\
                    webhook.payload.data.amount_major = webhook.payload.data.amount / 100.0;\n\
                    webhook.headers[\"X-Customer\"] = webhook.payload.data.customer;\n\
                    webhook\n}"
            }),
        };
        api.post(
            "/api/v1/endpoints",
            endpoint.to_string(),
            201,
            "creating an endpoint",
        )
        .await?;
        Ok(())
    }
}

async fn create_endpoint(api: &Api, url: &str) -> Result<()> {
    let body = json!({ "url": url }).to_string();
    api.post("/api/v1/endpoints", body, 201, "creating an endpoint")
        .await?;
    Ok(())
}

/// Posts `n` events one at a time, each after the previous one reached the receiver; then waits
/// until no delivery is pending (the last attempt recorded).
async fn one_by_one(api: &Api, receiver: &Receiver, first: usize, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    for i in first..first + n {
        let body = event_body(i, 0);
        api.post("/api/v1/events", body, 202, "posting an event")
            .await?;
        while (receiver.count.load(Ordering::Relaxed) as usize) < i + 1 {
            if Instant::now() > deadline {
                bail!("event {i} was not delivered in time");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    loop {
        let pending = "/api/v1/deliveries?status=pending&limit=1";
        let body = api.get(pending, 200, "listing deliveries").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["data"].as_array().is_some_and(|a| a.is_empty()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("deliveries stayed pending");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests/s of a bare keep-alive client loop with `concurrency` tasks, and its latencies.
async fn baseline(
    receiver: &Receiver,
    total: usize,
    concurrency: usize,
) -> Result<(f64, Vec<u64>)> {
    let client = http_client(concurrency * 2);
    let url = Arc::new(format!("http://{}/baseline", receiver.addr));
    let epoch = receiver.epoch;
    let started = Instant::now();
    run_indexed(concurrency, total, move |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let sent = epoch.elapsed().as_micros() as u64;
            send(&client, baseline_request(&url, i, sent)?).await?;
            Ok(())
        }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let lat = receiver
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    Ok((total as f64 / secs, lat))
}
