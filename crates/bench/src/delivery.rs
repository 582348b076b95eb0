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
pub struct Args {
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
}

pub async fn run(mut args: Args) -> Result<()> {
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
    let base_p50 = percentile_ms(&mut base_lat, 50.0);
    let base_p99 = percentile_ms(&mut base_lat, 99.0);
    receiver.reset();

    let config = format!(
        "[egress]\nallow_ranges = [\"127.0.0.0/8\"]\nallow_http = true\n\
         [storage]\nsqlite_synchronous = \"{}\"\n[metrics]\npublic = true\n",
        args.sqlite_synchronous
    );
    let serve = Serve::start(&bin, &config, &args.log)?;
    let client = http_client(args.concurrency * 2);
    let base = format!("http://{}", serve.addr);
    let auth = format!("Bearer {}", serve.key);
    for i in 0..args.endpoints {
        let body = json!({"url": format!("http://{}/ep{i}", receiver.addr)}).to_string();
        let req = Request::post(format!("{base}/api/v1/endpoints"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let (status, body) = send(&client, req).await?;
        if status != 201 {
            bail!(
                "creating an endpoint failed: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, auth, next) = (client.clone(), base.clone(), auth.clone(), next.clone());
        let total = args.events;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let sent = epoch.elapsed().as_micros() as u64;
                let body = format!(
                    r#"{{"type":"order.created","payload":{{"order":{i},"sent_at_us":{sent},"customer":"cus_8f3b2a","amount":4200,"currency":"EUR"}}}}"#
                );
                let req = Request::post(format!("{base}/api/v1/events"))
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let (status, body) = send(&client, req).await?;
                if status != 202 {
                    bail!("posting an event failed: {status} {}", String::from_utf8_lossy(&body));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let posted_in = started.elapsed();

    // Done when every delivery is recorded as succeeded (not merely received).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let req = Request::get(format!("{base}/api/v1/stats"))
            .header("authorization", &auth)
            .body(Full::new(Bytes::new()))?;
        let (_, body) = send(&client, req).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let ok = v["deliveries"]["succeeded"].as_u64().unwrap_or(0) as usize;
        if ok >= deliveries {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ok} of {deliveries} deliveries succeeded in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = deliveries as f64 / elapsed;
    let mut lat = receiver
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let out = json!({
        "scenario": "delivery",
        "store": "sqlite",
        "sqlite_synchronous": args.sqlite_synchronous,
        "throughput_per_s": round2(throughput),
        "baseline_per_s": round2(baseline_per_s),
        "ratio": round2(throughput / baseline_per_s),
        "p50_ms": round2(percentile_ms(&mut lat, 50.0)),
        "p99_ms": round2(percentile_ms(&mut lat, 99.0)),
        "baseline_p50_ms": round2(base_p50),
        "baseline_p99_ms": round2(base_p99),
        "peak_rss_mb": round2(serve.peak_rss_mb()),
        "endpoints": args.endpoints,
        "events": args.events,
        "deliveries": deliveries,
        "received": receiver.count.load(Ordering::Relaxed),
        "concurrency": args.concurrency,
        "events_posted_per_s": round2(args.events as f64 / posted_in.as_secs_f64()),
        "duration_s": round2(elapsed),
    });
    println!("{out}");
    Ok(())
}

/// Requests/s of a bare keep-alive client loop with `concurrency` tasks, and its latencies.
async fn baseline(
    receiver: &Receiver,
    total: usize,
    concurrency: usize,
) -> Result<(f64, Vec<u64>)> {
    let client = http_client(concurrency * 2);
    let url = format!("http://{}/baseline", receiver.addr);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        let epoch = receiver.epoch;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let sent = epoch.elapsed().as_micros() as u64;
                let body = format!(
                    r#"{{"id":"evt_{i}","type":"order.created","timestamp":"2026-11-23T10:00:00.000Z","data":{{"order":{i},"sent_at_us":{sent},"customer":"cus_8f3b2a","amount":4200,"currency":"EUR"}}}}"#
                );
                let req = Request::post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", format!("evt_{i}"))
                    .body(Full::new(Bytes::from(body)))?;
                send(&client, req).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let lat = receiver
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    Ok((total as f64 / secs, lat))
}
