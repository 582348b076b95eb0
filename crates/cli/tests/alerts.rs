//! Usage alerts against the real `hookwarden serve` over HTTP: refused requests from an address
//! outside a source's allowlist, a burst of requests to a source and an endpoint that keeps
//! answering 500 each raise one operational event, visible in `GET /api/v1/events`, delivered to
//! a subscribed local receiver and counted in `hookwarden_alerts_total`; the same condition again
//! within the rate limit raises nothing more. Thresholds are configured small so that the tests
//! run in seconds. Loopback only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::inproc::{self, InProcess};
use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn config(alerts: &str) -> String {
    test_config(&format!(
        "[metrics]\npublic = true\nrefresh_interval_ms = 0\n\n{alerts}"
    ))
}

async fn start(alerts: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &config(alerts), None);
    (dir, s)
}

/// The stored events of type `ty`, newest first, as the API's type filter lists them (checked
/// against the unfiltered listing, filtered here).
async fn events_of(api: &Api, ty: &str) -> Vec<Value> {
    let (st, v) = api.get("/api/v1/events?limit=250").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let here: Vec<Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == ty)
        .cloned()
        .collect();
    let (st, v) = api
        .get(&format!("/api/v1/events?limit=250&event_type=no.such,{ty}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let filtered = v["data"].as_array().unwrap().clone();
    // Asked second, it may hold events published in between, never fewer or other types.
    assert!(filtered.iter().all(|e| e["type"] == ty), "{filtered:?}");
    assert!(
        here.iter().all(|e| filtered.contains(e)),
        "the API's event_type filter lost events: {here:?} vs {filtered:?}"
    );
    filtered
}

/// Waits until there are `n` events of type `ty` (panics after `secs`).
async fn wait_events(api: &Api, ty: &str, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = events_of(api, ty).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {ty} events expected within {secs} s, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `hookwarden_alerts_total{kind}` (0 when the series does not exist yet).
async fn alerts_total(api: &Api, kind: &str) -> f64 {
    let (st, v) = api.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let prefix = format!("hookwarden_alerts_total{{kind=\"{kind}\"}} ");
    v.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A source verified by an API key header on the server at `addr`; returns (id, ingest URL).
async fn source(api: &Api, addr: std::net::SocketAddr, extra: Value) -> (String, String) {
    let mut body = json!({"name": "alerts",
        "verification": {"type": "api_key", "header": "x-api-key", "secret": "k3y-value"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (st, v) = api.post("/api/v1/sources", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let url = v["url"].as_str().unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        format!("http://{}{}", addr, &url[url.find("/in/").unwrap()..]),
    )
}

const KEY: [(&str, &str); 1] = [("x-api-key", "k3y-value")];

/// A body never sent before (identical bodies are refused as replays).
fn fresh_body() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{{\"n\":{n}}}")
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_outside_the_allowlist_raise_one_source_anomaly() {
    let (_d, s) = start(
        "[alerts.ip_not_allowed]\nthreshold = 5\nwindow_secs = 60\n[alerts.spike]\nenabled = false\n",
    )
    .await;
    let api = s.api();
    let watcher = Receiver::start().await;
    api.endpoint(json!({"url": watcher.url("/ops"), "event_types": ["source.anomaly"]}))
        .await;
    let (src, url) = source(&api, s.addr, json!({"allowed_cidrs": ["127.0.0.1/32"]})).await;
    // The type filter refuses what is not an event type.
    let (st, v) = api.get("/api/v1/events?event_type=bad%20type").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_QUERY");

    // Accepted requests and four refusals: under the threshold.
    for _ in 0..3 {
        assert_eq!(
            post_from("127.0.0.1", &url, &KEY, &fresh_body()).await,
            StatusCode::ACCEPTED
        );
    }
    for from in ["127.0.0.7", "127.0.0.8", "127.0.0.7", "127.0.0.8"] {
        assert_eq!(
            post_from(from, &url, &KEY, &fresh_body()).await,
            StatusCode::FORBIDDEN
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events_of(&api, "source.anomaly").await.is_empty());
    assert_eq!(alerts_total(&api, "ip_not_allowed").await, 0.0);

    // The fifth refusal crosses it.
    assert_eq!(
        post_from("127.0.0.9", &url, &KEY, &fresh_body()).await,
        StatusCode::FORBIDDEN
    );
    let ev = wait_events(&api, "source.anomaly", 1, 20).await;
    let p = &ev[0]["payload"];
    assert_eq!(p["kind"], "ip_not_allowed", "{p}");
    assert_eq!(p["source_id"], src.as_str());
    assert_eq!(p["count"], 5);
    assert_eq!(p["threshold"], 5);
    assert_eq!(p["window_secs"], 60);
    let mut ips: Vec<&str> = p["sample_client_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.7", "127.0.0.8", "127.0.0.9"]);
    // Delivered, signed like any event, to the subscribed receiver.
    let got = watcher.wait_count(1, 20).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "source.anomaly");
    assert_eq!(body["id"], ev[0]["id"]);
    assert_eq!(body["data"]["source_id"], src.as_str());
    assert!(got[0].headers.contains_key("webhook-signature"));
    assert_eq!(alerts_total(&api, "ip_not_allowed").await, 1.0);

    // More refusals within the rate limit: no second alert.
    for _ in 0..10 {
        post_from("127.0.0.7", &url, &KEY, &fresh_body()).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(events_of(&api, "source.anomaly").await.len(), 1);
    assert_eq!(watcher.count(), 1);
    assert_eq!(alerts_total(&api, "ip_not_allowed").await, 1.0);
    let log = s.log();
    assert!(log.contains("usage alert"), "{log}");
}

/// In process, on a manual clock: the trickle's half seconds pass on the clock.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_well_above_the_baseline_raises_one_spike() {
    let s = InProcess::start(&config(
        "[alerts.spike]\nwindow_secs = 1\nfactor = 4.0\nmin_requests = 15\nbaseline_windows = 3\nwarmup_windows = 2\n",
    ))
    .await;
    let api = s.api();
    let watcher = Receiver::start().await;
    api.endpoint(json!({"url": watcher.url("/ops"), "event_types": ["source.anomaly"]}))
        .await;
    let (src, url) = source(&api, s.addr, json!({})).await;

    // A steady trickle (about 2 per second) for 3.5 seconds: the baseline, no alert.
    for _ in 0..7 {
        assert_eq!(
            post_from("127.0.0.1", &url, &KEY, &fresh_body()).await,
            StatusCode::ACCEPTED
        );
        s.advance_ms(500);
    }
    assert!(events_of(&api, "source.anomaly").await.is_empty());

    // A burst: 60 requests as fast as they go (refused ones count too: it is traffic).
    for i in 0..60 {
        let key = if i % 2 == 0 {
            KEY[0]
        } else {
            ("x-api-key", "no")
        };
        post_from("127.0.0.1", &url, &[key], &fresh_body()).await;
    }
    let ev = wait_events(&api, "source.anomaly", 1, 20).await;
    let p = &ev[0]["payload"];
    assert_eq!(p["kind"], "spike", "{p}");
    assert_eq!(p["source_id"], src.as_str());
    assert_eq!(p["window_secs"], 1);
    let (count, baseline) = (
        p["count"].as_f64().unwrap(),
        p["baseline"].as_f64().unwrap(),
    );
    assert!(count >= 15.0 && count >= 4.0 * baseline, "{p}");
    assert!(baseline < 10.0, "{p}");
    watcher.wait_count(1, 20).await;
    assert_eq!(alerts_total(&api, "spike").await, 1.0);

    // A second burst within the rate limit: nothing more.
    for _ in 0..60 {
        post_from("127.0.0.1", &url, &KEY, &fresh_body()).await;
    }
    tokio::time::sleep(inproc::NOTICE).await;
    assert_eq!(events_of(&api, "source.anomaly").await.len(), 1);
    assert_eq!(watcher.count(), 1);
    assert_eq!(alerts_total(&api, "spike").await, 1.0);
    s.shutdown().await;
}

/// In process, on a manual clock: the retries' one-second backoffs pass on the clock.
#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_answering_500_raises_one_endpoint_failing() {
    let s = InProcess::start(&config(
        "[alerts.endpoint_failing]\nmin_attempts = 4\nfailure_rate = 0.5\nwindow_secs = 60\n",
    ))
    .await;
    let api = s.api();
    let watcher = Receiver::start().await;
    api.endpoint(json!({"url": watcher.url("/ops"), "event_types": ["endpoint.failing"]}))
        .await;
    let healthy = Receiver::start().await;
    let (ok_id, _) = api
        .endpoint(json!({"url": healthy.url("/ok"), "event_types": ["order.created"]}))
        .await;
    let failing = Receiver::start().await;
    failing.set_default(Reply::status(500));
    let (bad_id, _) = api
        .endpoint(json!({"url": failing.url("/down"), "event_types": ["order.created"]}))
        .await;

    for i in 0..3 {
        api.event("order.created", json!({"n": i})).await;
    }
    failing.wait_count(3, 20).await;
    healthy.wait_count(3, 20).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Three failed attempts are under min_attempts (the retries come a second later on the
    // clock, which has not moved: none has been made yet).
    let early = events_of(&api, "endpoint.failing").await;
    assert_eq!(failing.count(), 3);
    assert!(early.is_empty(), "{early:?}");

    s.advance_ms(1_100);
    let ev = wait_events(&api, "endpoint.failing", 1, 20).await;
    let p = &ev[0]["payload"];
    assert_eq!(p["endpoint_id"], bad_id.as_str(), "{p}");
    assert!(p["attempts"].as_u64().unwrap() >= 4, "{p}");
    assert_eq!(p["failure_rate"], 1.0, "{p}");
    assert_eq!(p["threshold"], 0.5);
    assert_eq!(p["window_secs"], 60);
    let got = watcher.wait_count(1, 20).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "endpoint.failing");
    assert_eq!(body["data"]["endpoint_id"], bad_id.as_str());

    // The endpoint keeps failing (retries every second): still one alert, and none for the
    // healthy endpoint.
    let before = failing.count();
    for _ in 0..2 {
        tokio::time::sleep(inproc::NOTICE).await;
        s.advance_ms(1_100);
    }
    failing.wait_count(before + 4, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ev = events_of(&api, "endpoint.failing").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev.iter()
            .all(|e| e["payload"]["endpoint_id"] != ok_id.as_str())
    );
    assert_eq!(watcher.count(), 1);
    assert_eq!(alerts_total(&api, "endpoint_failing").await, 1.0);
    s.shutdown().await;
}
