//! Prometheus metrics of the real binaries, checked by Prometheus's own `promtool check metrics`
//! (installed by `.ci/setup-interop`; these tests fail, never skip, without it): `serve` after
//! deliveries, a circuit-breaker trip, a due queue and inbound requests accepted and refused, on
//! its separate metrics listener; and `egress-proxy` after allowed and denied requests. Besides
//! the linter, the required series must be there with sensible values. Loopback only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;
mod egress_common;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// promtool: `HOOKWARDEN_PROMTOOL`, then `.interop/bin/promtool` (from `.ci/setup-interop`),
/// then one on the PATH (Debian's `prometheus` package).
fn promtool() -> PathBuf {
    if let Ok(p) = std::env::var("HOOKWARDEN_PROMTOOL") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.interop/bin/promtool");
    if local.exists() {
        return local;
    }
    if let Ok(out) = Command::new("promtool").arg("--version").output()
        && out.status.success()
    {
        return PathBuf::from("promtool");
    }
    panic!(
        "promtool not found at {} nor on the PATH: run .ci/setup-interop first",
        local.display()
    );
}

/// `promtool check metrics` on `text`: panics with its report on any parse or lint problem.
fn promtool_check(text: &str, what: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics on {what} found problems:\n{report}\n--- exposition ---\n{text}"
    );
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A strict enough reader of the text exposition format (the samples; comments skipped).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_string(), parse_labels(body))
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label value is quoted in {body:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape in {body:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// The value of the series `name` with exactly these labels.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
        })
        .map(|s| s.value)
}

fn must(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(all, name, labels).unwrap_or_else(|| {
        let same: Vec<_> = all.iter().filter(|s| s.name == name).collect();
        panic!("series {name}{labels:?} missing; {name} has {same:?}")
    })
}

/// Histogram samples are folded into their buckets by a thread of their own, not only by a
/// scrape (crates/server/tests/metrics_upkeep.rs shows what that saves). The thread is started
/// before the process says it listens, but it names itself only once it first runs, which on a
/// loaded machine can be a moment later: its name is looked for during a bounded wait.
fn assert_upkeep_thread(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .collect::<Vec<_>>();
        if threads.iter().any(|c| c.trim() == "metrics-upkeep") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics upkeep thread in process {pid}: {threads:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/metrics` through `api` (with its key).
async fn scrape(api: &Api) -> String {
    let (st, v) = api.get("/metrics").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v.as_str().expect("metrics are text").to_string()
}

fn metrics_addr(s: &Server) -> SocketAddr {
    s.stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("hookwarden: metrics on http://"))
        .map(|a| a.trim().trim_end_matches("/metrics").parse().unwrap())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", s.stdout_lines))
}

#[tokio::test(flavor = "current_thread")]
async fn serve_metrics_pass_promtool_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(
        r#"
[metrics]
listen = "127.0.0.1:0"
refresh_interval_ms = 0

[circuit_breaker]
failure_threshold = 3
min_failing_secs = 0
"#,
        "concurrency = 1",
    );
    let s = Server::start_in(dir.path(), &cfg, None);
    let api = s.api();
    let maddr = metrics_addr(&s);
    let mapi = Api::new(maddr, &s.key);

    assert_upkeep_thread(s.child.id());

    // The separate listener serves /metrics (with the API key) and nothing else; the main
    // listener no longer serves it.
    let (st, _, _) = mapi.raw("GET", "/metrics", &[], vec![]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = mapi.get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = api.get("/metrics").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Deliveries: one endpoint that answers 200, one that answers 500 until its breaker trips.
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.set_default(Reply::status(500));
    let (good_id, _) = api
        .endpoint(json!({"url": good.url("/ok"), "event_types": ["order.created"]}))
        .await;
    let (bad_id, _) = api
        .endpoint(json!({"url": bad.url("/fail"), "event_types": ["order.created"]}))
        .await;
    for i in 0..3 {
        api.event("order.created", json!({"n": i})).await;
    }
    good.wait_count(3, 30).await;
    api.wait_for(&format!("/api/v1/endpoints/{bad_id}"), 30, |v| {
        v["enabled"] == false
    })
    .await;

    // Inbound: accepted, refused by the allowlist, refused signature, unknown token.
    let (st, src) = api
        .post(
            "/api/v1/sources",
            json!({"name": "m", "allowed_cidrs": ["127.0.0.1/32"],
                   "verification": {"type": "api_key", "header": "x-api-key", "secret": "k3y-value"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{src}");
    let src_id = src["id"].as_str().unwrap().to_string();
    let url = src["url"].as_str().unwrap();
    let url = format!("http://{}{}", s.addr, &url[url.find("/in/").unwrap()..]);
    let key = [("x-api-key", "k3y-value")];
    assert_eq!(
        post_from("127.0.0.1", &url, &key, "{}").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_from("127.0.0.7", &url, &key, "{}").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_from("127.0.0.1", &url, &[("x-api-key", "wrong")], "{}").await,
        StatusCode::UNAUTHORIZED
    );
    let unknown = format!("http://{}/in/wh_{}", s.addr, "A".repeat(43));
    assert_eq!(
        post_from("127.0.0.1", &unknown, &[], "{}").await,
        StatusCode::NOT_FOUND
    );

    let text = scrape(&mapi).await;
    promtool_check(&text, "serve");
    let all = samples(&text);
    let ok = must(
        &all,
        "hookwarden_delivery_attempts_total",
        &[("endpoint_id", &good_id), ("outcome", "succeeded")],
    );
    assert_eq!(ok, 3.0);
    let retrying = must(
        &all,
        "hookwarden_delivery_attempts_total",
        &[("endpoint_id", &bad_id), ("outcome", "retrying")],
    );
    assert!(retrying >= 3.0, "{retrying}");
    assert!(
        value(
            &all,
            "hookwarden_delivery_attempts_total",
            &[("endpoint_id", &good_id), ("outcome", "retrying")]
        )
        .is_none()
    );
    assert_eq!(
        must(
            &all,
            "hookwarden_endpoint_attempt_seconds_count",
            &[("endpoint_id", &good_id)]
        ),
        3.0
    );
    let inf = must(
        &all,
        "hookwarden_endpoint_attempt_seconds_bucket",
        &[("endpoint_id", &good_id), ("le", "+Inf")],
    );
    assert_eq!(inf, 3.0);
    let fast = must(
        &all,
        "hookwarden_endpoint_attempt_seconds_bucket",
        &[("endpoint_id", &good_id), ("le", "5")],
    );
    assert_eq!(fast, 3.0, "a local receiver answers within 5 s");
    let sum = must(
        &all,
        "hookwarden_endpoint_attempt_seconds_sum",
        &[("endpoint_id", &good_id)],
    );
    assert!(sum > 0.0 && sum < 15.0, "{sum}");
    assert!(must(&all, "hookwarden_delivery_attempt_seconds_count", &[]) >= 6.0);
    assert!(
        must(
            &all,
            "hookwarden_delivery_attempt_errors_total",
            &[("class", "http_status")]
        ) >= 3.0
    );
    assert_eq!(
        must(&all, "hookwarden_circuit_breaker_trips_total", &[]),
        1.0
    );
    // The breaker, per endpoint.
    for (id, open, enabled) in [(&bad_id, 1.0, 0.0), (&good_id, 0.0, 1.0)] {
        let l = [("endpoint_id", id.as_str())];
        assert_eq!(must(&all, "hookwarden_endpoint_circuit_open", &l), open);
        assert_eq!(must(&all, "hookwarden_endpoint_enabled", &l), enabled);
    }
    assert!(
        must(
            &all,
            "hookwarden_endpoint_consecutive_failures",
            &[("endpoint_id", &bad_id)]
        ) >= 3.0
    );
    assert_eq!(must(&all, "hookwarden_endpoint_series_truncated", &[]), 0.0);
    // Ingest by source and outcome code.
    for (source, outcome) in [
        (src_id.as_str(), "ACCEPTED"),
        (src_id.as_str(), "IP_NOT_ALLOWED"),
        (src_id.as_str(), "SIGNATURE_INVALID"),
        ("unknown", "WEBHOOK_NOT_FOUND"),
    ] {
        assert_eq!(
            must(
                &all,
                "hookwarden_inbound_requests_total",
                &[("source", source), ("outcome", outcome)]
            ),
            1.0,
            "{source} {outcome}"
        );
    }
    assert_eq!(
        must(&all, "hookwarden_inbound_latency_seconds_count", &[]),
        4.0
    );
    // Nothing is due: the good deliveries are done, the tripped endpoint's are paused.
    assert_eq!(must(&all, "hookwarden_deliveries_due", &[]), 0.0);
    assert_eq!(
        must(&all, "hookwarden_oldest_due_delivery_age_seconds", &[]),
        0.0
    );
    assert_eq!(must(&all, "hookwarden_metrics_refresh_errors", &[]), 0.0);
    assert!(must(&all, "hookwarden_events_published_total", &[]) >= 3.0);
    // The SQLite writer: every write timed (events, deliveries, attempts, audit entries: far
    // more than the commits that carried them in batches), in the finer buckets of its own.
    let writes = must(&all, "hookwarden_sqlite_write_seconds_count", &[]);
    let commits = must(&all, "hookwarden_sqlite_commits_total", &[]);
    assert!(
        commits >= 1.0 && writes >= commits && writes >= 10.0,
        "{writes} {commits}"
    );
    assert_eq!(
        must(
            &all,
            "hookwarden_sqlite_write_seconds_bucket",
            &[("le", "+Inf")]
        ),
        writes
    );
    let fine = must(
        &all,
        "hookwarden_sqlite_write_seconds_bucket",
        &[("le", "0.0001")],
    );
    assert!(fine <= writes, "{fine}");
    let slow = writes
        - must(
            &all,
            "hookwarden_sqlite_write_seconds_bucket",
            &[("le", "5")],
        );
    assert_eq!(slow, 0.0, "no write of this test waits 5 s");
    let total = must(&all, "hookwarden_sqlite_write_seconds_sum", &[]);
    assert!(total > 0.0 && total < writes * 5.0, "{total}");

    // A due queue: with one delivery in flight at a time and a slow receiver, the deliveries
    // beyond what a dispatcher holds in memory (64) wait in the database.
    let slow = Receiver::start().await;
    slow.set_default(Reply {
        status: 200,
        headers: vec![],
        body: String::new(),
        delay: Duration::from_millis(300),
    });
    let (slow_id, _) = api
        .endpoint(json!({"url": slow.url("/slow"), "event_types": ["bulk.item"]}))
        .await;
    let queued_at = Instant::now();
    for i in 0..90 {
        api.event("bulk.item", json!({"i": i})).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = scrape(&mapi).await;
    promtool_check(&text, "serve with a due queue");
    let all = samples(&text);
    let due = must(&all, "hookwarden_deliveries_due", &[]);
    assert!((1.0..=90.0).contains(&due), "due {due}");
    let age = must(&all, "hookwarden_oldest_due_delivery_age_seconds", &[]);
    assert!(
        age >= 0.5 && age <= queued_at.elapsed().as_secs_f64() + 1.0,
        "oldest due age {age}"
    );
    assert!(must(&all, "hookwarden_deliveries_in_memory", &[]) >= 1.0);
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/endpoints/{slow_id}"), None)
        .await;
    assert!(st.is_success(), "{st}");
}

#[tokio::test(flavor = "current_thread")]
async fn main_listener_serves_metrics_unless_moved() {
    // Both listeners when asked, and public (no key) when configured.
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        test_config("[metrics]\nlisten = \"127.0.0.1:0\"\nmain_listener = true\npublic = true\n");
    let s = Server::start_in(dir.path(), &cfg, None);
    let maddr = metrics_addr(&s);
    for addr in [s.addr, maddr] {
        let (st, _, body) = Api::new(addr, "none")
            .raw("GET", "/metrics", &[], vec![])
            .await;
        assert_eq!(st, StatusCode::OK, "{addr}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("# TYPE hookwarden_deliveries_due gauge"),
            "{text}"
        );
        promtool_check(&text, "serve (idle)");
    }
    // Disabled: neither.
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config("[metrics]\nenabled = false\nlisten = \"127.0.0.1:0\"\n");
    let s = Server::start_in(dir.path(), &cfg, None);
    assert!(
        !s.stdout_lines
            .iter()
            .any(|l| l.starts_with("hookwarden: metrics on"))
    );
    let (st, _) = s.api().get("/metrics").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "current_thread")]
async fn egress_proxy_metrics_pass_promtool() {
    use egress_common::{ProxyProc, connect, raw};
    let dir = tempfile::tempdir().unwrap();
    let up = Receiver::start().await;
    let port = up.addr.port();
    let cfg = format!(
        r#"
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"

[egress]
allow_ranges = ["127.0.0.0/8"]

[egress.resolve_overrides]
"api.example.com" = ["127.0.0.1"]
"internal.example.com" = ["10.0.0.5"]

[policy]
action = "enforce"
allowed_ports = [{port}]
allow = ["*.example.com"]
"#
    );
    let p = ProxyProc::start(dir.path(), "proxy", &cfg);
    assert_upkeep_thread(p.child.id());
    let (r, _) = connect(p.addr, &format!("api.example.com:{port}"), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (r, _) = connect(p.addr, &format!("other.test:{port}"), None).await;
    assert_eq!(r.status, 403, "{r:?}");
    let (r, _) = connect(p.addr, &format!("internal.example.com:{port}"), None).await;
    assert_eq!(r.status, 403, "{r:?}");
    let (r, _) = connect(p.addr, "api.example.com:22", None).await;
    assert_eq!(r.status, 403, "{r:?}");

    // A tunnel is counted when it ends (with its bytes and end reason), which the proxy notices
    // a moment after the client hangs up: scrape until it is there (bounded).
    let req = "hookwarden_proxy_requests_total";
    let allowed = [
        ("kind", "connect"),
        ("decision", "allow"),
        ("code", "ALLOWED"),
    ];
    let mut tries = 0;
    let reply = loop {
        let reply = raw(
            p.metrics.unwrap(),
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(reply.status, 200);
        tries += 1;
        if value(&samples(&reply.body), req, &allowed).is_some() || tries == 50 {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    promtool_check(&reply.body, "egress-proxy");
    let all = samples(&reply.body);
    assert_eq!(must(&all, req, &allowed), 1.0);
    for code in ["HOST_NOT_ALLOWED", "DESTINATION_DENIED", "PORT_NOT_ALLOWED"] {
        assert_eq!(
            must(
                &all,
                req,
                &[("kind", "connect"), ("decision", "deny"), ("code", code)]
            ),
            1.0,
            "{code}"
        );
    }
    assert!(must(&all, "hookwarden_proxy_upstream_connect_seconds_count", &[]) >= 1.0);
}
