//! Several `serve` instances on one PostgreSQL database: one stream of deliveries shared with
//! no double delivery while all are healthy and no loss when one is killed with SIGKILL, and a
//! revoked source refused by every instance within one second.
//!
//! `HOOKWARDEN_TEST_DATABASE_URL` names a PostgreSQL server and an administration database (as
//! for the store's PostgreSQL tests; `.ci/run` sets it). Every test creates its own database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn pg_config(url: &str) -> String {
    format!(
        r#"
[egress]
allow_ranges = ["127.0.0.0/8"]
allow_http = true

[delivery]
backoff_initial_secs = 1
backoff_multiplier = 1.0
jitter = 0.0
request_timeout_secs = 5
connect_timeout_secs = 2
lease_secs = 15
claim_interval_ms = 100

[storage]
url = "{url}"
max_connections = 8
{}"#,
        common::pg::security_section()
    )
}

/// Starts `n` instances on one database; the first prints the admin key.
fn start_instances(dirs: &[tempfile::TempDir], config: &str) -> Vec<Server> {
    let first = Server::start_in(dirs[0].path(), config, None);
    let key = first.key.clone();
    let mut out = vec![first];
    for d in &dirs[1..] {
        out.push(Server::start_in(d.path(), config, Some(key.clone())));
    }
    out
}

/// The dispatcher lease owner an instance logged at start.
fn owner_of(s: &Server) -> String {
    // The log is JSON lines when stderr is not a terminal.
    let log = s.log();
    let key = "\"owner\":\"";
    let i = log
        .find(key)
        .unwrap_or_else(|| panic!("no owner in the log:\n{log}"));
    log[i + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// POSTs a JSON body without panicking when the instance is dead: the status and the JSON
/// answer, or None when the request failed. `key` adds the admin bearer token.
async fn try_post(
    client: &HttpClient,
    addr: SocketAddr,
    key: Option<&str>,
    path: &str,
    body: String,
) -> Option<(u16, Value)> {
    let mut req =
        Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_a_stream_and_survive_a_sigkill() {
    const TOTAL: usize = 20_000;
    const KILL_AT: usize = 7_000;
    let Some(db) = Db::create("hw_scale").await else {
        return;
    };
    let rx = Receiver::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = start_instances(&dirs, &pg_config(&db.url));
    let key = servers[0].key.clone();
    let owners: Vec<String> = servers.iter().map(owner_of).collect();
    assert_eq!(
        owners.iter().collect::<HashSet<_>>().len(),
        3,
        "distinct lease owners: {owners:?}"
    );
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    servers[0]
        .api()
        .endpoint(json!({"url": rx.url("/hook")}))
        .await;

    // Post from 24 tasks, spread over the instances; a post to a dead instance goes to the
    // next one. Each accepted event id is kept.
    let accepted = Arc::new(Mutex::new(Vec::<String>::with_capacity(TOTAL)));
    let next = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (accepted, next, dead, client, addrs, key) = (
            accepted.clone(),
            next.clone(),
            dead.clone(),
            client.clone(),
            addrs.clone(),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL {
                    return;
                }
                // An idempotency key: a post that the killed instance committed but never
                // answered is retried elsewhere and must not become a second event.
                let body = json!({
                    "type": "order.created",
                    "payload": {"i": i},
                    "idempotency_key": format!("order-{i}"),
                });
                let mut target = i % 3;
                let mut tries = 0;
                loop {
                    if target == 2 && dead.load(Ordering::SeqCst) {
                        target = i % 2;
                    }
                    match try_post(
                        &client,
                        addrs[target],
                        Some(&key),
                        "/api/v1/events",
                        body.to_string(),
                    )
                    .await
                    {
                        Some((200 | 202, v)) => {
                            accepted
                                .lock()
                                .unwrap()
                                .push(v["id"].as_str().unwrap().to_owned());
                            break;
                        }
                        other => {
                            // Only the killed instance may fail to answer.
                            assert_eq!(target, 2, "instance {target} refused: {other:?}");
                            tries += 1;
                            assert!(tries < 5, "could not post event {i}");
                            target = i % 2;
                        }
                    }
                }
            }
        }));
    }

    // Kill instance 2 in the middle of the stream, then measure what it had in flight: the
    // deliveries it had leased and not yet recorded. Only those may arrive twice.
    let deadline = Instant::now() + Duration::from_secs(300);
    while rx.count() < KILL_AT {
        assert!(
            Instant::now() < deadline,
            "deliveries too slow before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dead.store(true, Ordering::SeqCst);
    servers[2].kill9();
    let mut c = db.connect().await;
    let in_flight: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 0 AND lease_owner = $1")
            .bind(&owners[2])
            .fetch_one(&mut c)
            .await
            .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        TOTAL,
        "every event is accepted by a live instance"
    );

    // Every accepted event arrives (the killed instance's leases expire and are taken over).
    let deadline = Instant::now() + Duration::from_secs(240);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::with_capacity(TOTAL);
        for c in rx.all() {
            *counts
                .entry(c.headers["webhook-id"].to_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let missing = accepted
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .count();
        if missing == 0 {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {TOTAL} accepted events never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "scale-out: {TOTAL} events over 3 instances, instance 3 killed after {KILL_AT} \
         deliveries with {in_flight} in flight; {duplicates} duplicates"
    );
    assert!(
        duplicates as i64 <= in_flight,
        "{duplicates} duplicates, more than the {in_flight} deliveries in flight on the killed instance"
    );
    // The survivors both took part, and everything ends recorded as succeeded.
    let api = servers[0].api();
    let stats = api
        .wait_for("/api/v1/stats", 180, |v| {
            v["deliveries"]["succeeded"].as_u64() == Some(TOTAL as u64)
        })
        .await;
    assert_eq!(stats["deliveries"]["pending"], 0, "{stats}");
    let by_owner: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT lease_owner, count(*) FROM deliveries GROUP BY lease_owner ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    eprintln!("scale-out: final lease owners {by_owner:?}");
    let _ = c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_changes_reach_every_instance_within_a_second() {
    let Some(db) = Db::create("hw_scale").await else {
        return;
    };
    let rx = Receiver::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = start_instances(&dirs, &pg_config(&db.url));
    let api0 = servers[0].api();
    let (ep, _) = api0
        .endpoint(json!({"url": rx.url("/hook"), "headers": {"x-version": "1"}}))
        .await;
    // Warm every instance's endpoint cache: an event posted to each is delivered by it.
    for s in &servers {
        s.api().event("warm", json!({})).await;
    }
    rx.wait_count(3, 30).await;
    // Change the custom header on instance 0, then post on the others at once: their
    // deliveries must carry the new header although their caches held the old one.
    let (st, v) = api0
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{ep}"),
            Some(json!({"headers": {"x-version": "2"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let changed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(changed_at.elapsed())).await;
    for s in &servers[1..] {
        s.api().event("after", json!({})).await;
    }
    let got = rx.wait_count(5, 30).await;
    for c in got.iter().skip(3) {
        assert_eq!(
            c.headers["x-version"], "2",
            "an instance used a stale endpoint more than one second after the change"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_source_is_refused_by_every_instance_within_a_second() {
    let Some(db) = Db::create("hw_scale").await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = start_instances(&dirs, &pg_config(&db.url));
    let api0 = servers[0].api();
    let (st, v) = api0
        .post(
            "/api/v1/sources",
            json!({"name": "scale", "allowed_cidrs": ["127.0.0.1"], "verification": {"type": "none"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let url = v["url"].as_str().unwrap();
    let path = url[url.find("/in/").unwrap()..].to_owned();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    // Ingest continuously on all three instances; every answer is logged.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::<(Instant, usize, u16)>::new()));
    let mut tasks = Vec::new();
    for (n, addr) in addrs.iter().copied().enumerate() {
        for _ in 0..2 {
            let (stop, log, client, path) =
                (stop.clone(), log.clone(), client.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    i += 1;
                    // Logged with the time the request was sent: a request sent more than one
                    // second after the revoke returned must be refused, whenever it is answered.
                    let sent = Instant::now();
                    let status = try_post(&client, addr, None, &path, format!("{{\"n\":{i}}}"))
                        .await
                        .map_or(0, |(s, _)| s);
                    log.lock().unwrap().push((sent, n, status));
                }
            }));
        }
    }
    // Every instance accepts before the revoke.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: HashSet<usize> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, s)| *s == 202)
            .map(|(_, n, _)| *n)
            .collect();
        if seen.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every instance accepted: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, v) = api0
        .post(&format!("/api/v1/sources/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let revoked_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let late: Vec<_> = log
        .iter()
        .filter(|(at, _, s)| *s == 202 && *at > revoked_at + Duration::from_secs(1))
        .collect();
    assert!(
        late.is_empty(),
        "{} requests accepted more than one second after the revoke returned",
        late.len()
    );
    let last_accept = log
        .iter()
        .filter(|(_, _, s)| *s == 202)
        .map(|(at, _, _)| at.saturating_duration_since(revoked_at))
        .max()
        .unwrap_or_default();
    for n in 0..3 {
        let after: Vec<u16> = log
            .iter()
            .filter(|(at, m, _)| *m == n && *at > revoked_at + Duration::from_secs(1))
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            !after.is_empty(),
            "instance {n} was not exercised after the revoke"
        );
        assert!(
            after.iter().all(|s| *s == 410),
            "instance {n} answered {after:?} after the revoke"
        );
    }
    eprintln!(
        "scale-out revoke: {} ingest requests on 3 instances; last acceptance {last_accept:?} after the revoke returned",
        log.len()
    );
}
