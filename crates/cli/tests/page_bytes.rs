//! Listings bounded in bytes, against the real binary over real HTTP: `GET /api/v1/events` with
//! `limit=100` over events of about 1 MB answers pages of at most `server.max_page_bytes` (the
//! default, 4 MiB), returns every event exactly once, lists an event larger than the bound alone
//! on its page, and the server's resident memory stays bounded while a client pages through
//! (before the bound, one such page was 100 MB and took the server from 60 MB to 400 MB).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// The default `server.max_page_bytes`.
const BOUND: usize = 4 * MIB;
/// What a page's JSON may add to the stored bytes it holds (field names, ids, times).
const SLACK: usize = 64 * 1024;

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_pages_are_bounded_in_bytes_and_memory() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config("[server]\nmax_body_bytes = 8388608\n");
    let s = Server::start_in(dir.path(), &config, None);
    let api = s.api();
    let pid = s.child.id();

    // 80 events of about 1 MB, and two of 5 MB (each larger than a page may hold).
    let mut created: Vec<(String, usize)> = Vec::new();
    for i in 0..82 {
        let n = if i == 20 || i == 61 {
            5_000_000
        } else {
            1_000_000
        };
        let fill = char::from(b'a' + (i % 26) as u8).to_string().repeat(n);
        let body = serde_json::json!({"type": "bulk.item", "payload": {"i": i, "fill": fill}});
        let (st, _, v) = api
            .raw(
                "POST",
                "/api/v1/events",
                &[
                    ("authorization", &format!("Bearer {}", s.key)),
                    ("content-type", "application/json"),
                ],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&v));
        let v: Value = serde_json::from_slice(&v).unwrap();
        created.push((v["id"].as_str().unwrap().to_string(), n));
    }
    created.sort_by(|a, b| b.0.cmp(&a.0));

    // Sample the server's resident memory while a client pages through everything.
    let before_paging = rss(pid);
    let peak = Arc::new(AtomicU64::new(before_paging));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let auth = format!("Bearer {}", s.key);
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &before {
            Some(b) => format!("/api/v1/events?limit=100&before={b}"),
            None => "/api/v1/events?limit=100".into(),
        };
        let (st, _, body) = api
            .raw("GET", &path, &[("authorization", &auth)], Vec::new())
            .await;
        assert_eq!(st, StatusCode::OK);
        pages += 1;
        let v: Value = serde_json::from_slice(&body).unwrap();
        let data = v["data"].as_array().unwrap();
        assert!(
            !data.is_empty(),
            "page {pages} is empty though events remain"
        );
        if data.len() > 1 {
            assert!(
                body.len() <= BOUND + SLACK,
                "page {pages}: {} events in {} bytes",
                data.len(),
                body.len()
            );
        } else {
            // One event alone: the bound, or the event itself when it is larger.
            let id = data[0]["id"].as_str().unwrap();
            let n = created.iter().find(|c| c.0 == id).unwrap().1;
            assert!(
                body.len() <= BOUND.max(n) + SLACK,
                "page {pages}: {} bytes",
                body.len()
            );
        }
        seen.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        match (v["has_more"].as_bool().unwrap(), v["next_before"].as_str()) {
            (true, Some(b)) => {
                assert_eq!(b, seen.last().unwrap());
                before = Some(b.to_string());
            }
            (false, None) => break,
            other => panic!("page {pages}: has_more/next_before disagree: {other:?}"),
        }
        assert!(pages <= created.len(), "paging does not end");
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    // Every event exactly once, newest first; the big ones alone on their pages.
    assert_eq!(seen.len(), created.len());
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    assert_eq!(
        seen,
        created.iter().map(|c| c.0.clone()).collect::<Vec<_>>()
    );
    assert!(
        pages >= 82 / 4,
        "{pages} pages: 4 MiB hold at most four 1 MB events"
    );
    let peak = peak.load(Ordering::Relaxed);
    let grew = peak.saturating_sub(before_paging);
    eprintln!(
        "{pages} pages; server RSS {} MiB before paging, peak {} MiB while paging",
        before_paging / MIB as u64,
        peak / MIB as u64
    );
    // A few pages' worth (rows, their JSON, socket buffers), never the hundred-event page.
    assert!(
        grew < 64 * MIB as u64,
        "resident memory grew {} MiB while paging",
        grew / MIB as u64
    );

    // A smaller limit still bounds by bytes; `limit=1` pages one by one.
    let (st, v) = api.get("/api/v1/events?limit=2").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["has_more"], true);

    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
