//! The web console at `/console`: its HTTP surface (security headers on every response, content
//! types, caching, no route without the key) against the real binary, and an end-to-end run in
//! a real headless browser — Debian's `chromium` driven by `playwright-core`
//! (`interop/console_e2e.mjs`): sign in, create an endpoint pointing at a local receiver, send
//! events, see the deliveries succeed with masked request headers, create and revoke a source
//! and see it refused (410) in the audit view, with a hostile user agent that must not run.
//!
//! Chromium and playwright-core come from `.ci/setup-interop`; like every interop test, the
//! browser test fails (never skips) when they are missing.
//! `HOOKWARDEN_SCREENSHOTS=<dir>` saves screenshots of the main pages there (those in
//! `docs/console.md` come from `HOOKWARDEN_SCREENSHOTS=$PWD/docs/screenshots cargo test -p hookwarden --test console`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(
        "[circuit_breaker]\nenabled = false\n",
        "max_attempts = 2\nbackoff_max_secs = 1",
    );
    let server = Server::start_in(dir.path(), &cfg, None);
    (dir, server)
}

fn header<'a>(h: &'a hyper::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn console_is_served_with_strict_headers() {
    let (_dir, server) = start().await;
    let api = server.api();
    let anon = Api::new(server.addr, "");

    // /console redirects to /console/, which is the page.
    let (st, h, _) = anon.raw("GET", "/console", &[], vec![]).await;
    assert_eq!(st, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&h, "location"), "/console/");

    let mut tags = Vec::new();
    for (path, ctype) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/assets/app.js", "text/javascript; charset=utf-8"),
        ("/console/assets/views.js", "text/javascript; charset=utf-8"),
        ("/console/assets/console.css", "text/css; charset=utf-8"),
        ("/console/assets/icon.svg", "image/svg+xml"),
    ] {
        let (st, h, body) = anon.raw("GET", path, &[], vec![]).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert_eq!(header(&h, "content-type"), ctype, "{path}");
        assert_eq!(header(&h, "content-security-policy"), CSP, "{path}");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&h, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header(&h, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&h, "cache-control"), "no-cache", "{path}");
        assert!(h.get("set-cookie").is_none(), "{path}");
        assert!(!body.is_empty());
        let etag = header(&h, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        // Revalidation: the same tag answers 304, with the same security headers.
        let (st, h, body) = anon
            .raw("GET", path, &[("if-none-match", etag.as_str())], vec![])
            .await;
        assert_eq!(st, StatusCode::NOT_MODIFIED, "{path}");
        assert!(body.is_empty());
        assert_eq!(header(&h, "content-security-policy"), CSP, "{path}");
        tags.push(etag);
    }
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 5);

    // The page has no inline script or style and loads only its own assets.
    let (_, _, page) = anon.raw("GET", "/console/", &[], vec![]).await;
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains(r#"<script type="module" src="/console/assets/app.js"></script>"#));
    assert!(!page.contains("<script>") && !page.contains("style=") && !page.contains("<style"));
    assert!(!page.contains("http://") && !page.contains("https://"));

    // Unknown console paths: 404 with the console headers; the API still wants the key.
    for path in [
        "/console/assets/nope.js",
        "/console/assets/..%2fapp.js",
        "/console/x/y",
    ] {
        let (st, h, _) = anon.raw("GET", path, &[], vec![]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&h, "content-security-policy"), CSP, "{path}");
    }
    let (st, _) = anon.get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = api.get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    // API answers keep `no-store`.
    let auth = format!("Bearer {}", server.key);
    let (_, h, _) = api
        .raw(
            "GET",
            "/api/v1/endpoints",
            &[("authorization", auth.as_str())],
            vec![],
        )
        .await;
    assert_eq!(header(&h, "cache-control"), "no-store");
}

#[tokio::test]
async fn stats_routes_count_deliveries_and_ingest() {
    let (_dir, server) = start().await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let (ep, _) = api.endpoint(json!({"url": receiver.url("/ok")})).await;
    let failing = Receiver::start().await;
    failing.set_default(Reply::status(500));
    let (bad, _) = api
        .endpoint(json!({"url": failing.url("/bad"), "event_types": ["t.fail"]}))
        .await;
    for _ in 0..3 {
        api.event("t.ok", json!({})).await;
    }
    api.event("t.fail", json!({})).await;
    receiver.wait_count(4, 20).await;
    // The failing endpoint's delivery fails for good after 2 attempts.
    let path = format!("/api/v1/stats/deliveries?endpoint_id={bad}&bucket=1m");
    let v = api
        .wait_for(&path, 20, |v| v["failed"].as_i64() == Some(1))
        .await;
    assert_eq!(v["succeeded"], 0);
    let v = api
        .wait_for(
            &format!("/api/v1/stats/deliveries?endpoint_id={ep}&bucket=1m"),
            20,
            |v| v["succeeded"].as_i64() == Some(4),
        )
        .await;
    assert_eq!(v["failed"], 0);
    assert_eq!(v["bucket_secs"], 60);
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(
        buckets.len(),
        25,
        "24 buckets back from now, aligned: 25 starts"
    );
    let sum: i64 = buckets
        .iter()
        .map(|b| b["succeeded"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 4);
    let v = api
        .wait_for("/api/v1/stats/deliveries?bucket=5m", 10, |v| {
            v["succeeded"].as_i64() == Some(4) && v["failed"].as_i64() == Some(1)
        })
        .await;
    assert!(v["endpoint_id"].is_null());

    // Attempts record their request headers, secrets masked.
    let (_, d) = api
        .get(&format!("/api/v1/endpoints/{ep}/deliveries?limit=1"))
        .await;
    let did = d["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, a) = api.get(&format!("/api/v1/deliveries/{did}/attempts")).await;
    let hdrs = a["data"][0]["request_headers"].as_array().unwrap().clone();
    let get = |n: &str| {
        hdrs.iter()
            .find(|p| p[0] == n)
            .and_then(|p| p[1].as_str())
            .map(str::to_owned)
    };
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        get("webhook-id").as_deref(),
        Some(d["data"][0]["event_id"].as_str().unwrap())
    );
    assert!(get("webhook-signature").unwrap().starts_with("****"));
    let sent = receiver.all()[0].headers["webhook-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !a.to_string().contains(&sent[3..20]),
        "signature value not stored"
    );

    // Ingest: accepted and refused per source, by outcome.
    let (st, src) = api
        .post(
            "/api/v1/sources",
            json!({"name": "s", "verification": {"type": "none"}, "allowed_cidrs": ["127.0.0.1/32"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{src}");
    let sid = src["id"].as_str().unwrap().to_owned();
    let path = src["url"]
        .as_str()
        .unwrap()
        .split_once("/in/")
        .unwrap()
        .1
        .to_owned();
    let ingest = Api::new(server.addr, "");
    for i in 0..2 {
        // Distinct bodies: an identical one within the replay window is a replay (409).
        let body = format!("{{\"n\":{i}}}").into_bytes();
        let (st, _, _) = ingest
            .raw(
                "POST",
                &format!("/in/{path}"),
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
    }
    let (st, _) = api
        .post(&format!("/api/v1/sources/{sid}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = ingest
        .raw(
            "POST",
            &format!("/in/{path}"),
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::GONE);
    let v = api
        .wait_for(&format!("/api/v1/sources/{sid}/stats?bucket=1h"), 10, |v| {
            v["refused"].as_i64() == Some(1)
        })
        .await;
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["outcomes"]["WEBHOOK_REVOKED"], 1);
    let all = api.get("/api/v1/stats/ingest?bucket=1h").await.1;
    assert_eq!(all["outcomes"]["ACCEPTED"], 2);

    // Bounds: too many buckets, too long, bad bucket, bad id.
    for (q, why) in [
        ("bucket=1s&since=0&until=86400000", "too many buckets"),
        ("bucket=1d&since=0&until=9000000000", "too long"),
        ("bucket=7x", "bad bucket"),
        ("endpoint_id=../x", "bad id"),
        ("since=tomorrow", "bad time"),
        ("nope=1", "unknown parameter"),
    ] {
        let (st, body) = api.get(&format!("/api/v1/stats/deliveries?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_QUERY", "{why}");
    }
    let (st, _) = Api::new(server.addr, "")
        .get("/api/v1/stats/deliveries")
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.interop")
}

/// Chromium and playwright-core, or why not.
fn browser_tools() -> Result<PathBuf, String> {
    let chromium =
        std::env::var("HOOKWARDEN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let chromium = PathBuf::from(chromium);
    if !chromium.exists() {
        return Err(format!("{} not found", chromium.display()));
    }
    if !interop_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err("playwright-core not installed in .interop/node_modules".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node not found".into());
    }
    Ok(chromium)
}

#[tokio::test]
async fn browser_signs_in_delivers_and_sees_a_revoked_source_refused() {
    let chromium = match browser_tools() {
        Ok(c) => c,
        Err(why) => panic!("console browser test: {why}: run .ci/setup-interop first"),
    };
    // Published egress ranges (documentation prefixes) for the security page.
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config_with(
        "[circuit_breaker]\nenabled = false\n",
        "max_attempts = 2\nbackoff_max_secs = 1",
    )
    .replace(
        "allow_http = true\n",
        "allow_http = true\npublished_ranges = [\"203.0.113.10/31\", \"2001:db8:40::/48\"]\n",
    );
    let server = Server::start_in(dir.path(), &cfg, None);
    let (st, cert) = server
        .api()
        .post(
            "/api/v1/client-certificates",
            json!({"name": "prod", "generate": {"common_name": "hookwarden.example.com", "organization": "Example", "days_valid": 365}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{cert}");
    let receiver = Receiver::start().await;
    receiver.set_default(Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"received":true}"#.into(),
        delay: Duration::ZERO,
    });
    let failing = Receiver::start().await;
    failing.set_default(Reply::status(500));

    let shots = std::env::var("HOOKWARDEN_SCREENSHOTS").ok();
    let shots_dir = match &shots {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            Some(std::fs::canonicalize(d).unwrap())
        }
        None => None,
    };
    let cfg = json!({
        "base": format!("http://{}", server.addr),
        "key": server.key,
        "receiver_url": receiver.url("/webhooks"),
        "failing_url": failing.url("/crm/hook"),
        "screenshots": shots_dir,
        "chromium": chromium,
        "timeout_ms": 30000,
    });
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/console_e2e.mjs"),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new("node")
        .current_dir(interop_dir())
        .args(["--input-type=module", "--eval"])
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.to_string().as_bytes())
        .unwrap();
    // Bounded: the script's own waits are bounded; this kills it if it hangs anyway.
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(240);
    while !waiter.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !waiter.is_finished() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    let out = waiter.join().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_else(|_| {
            panic!(
                "browser script printed no result:\n{stdout}\n{stderr}\n{}",
                server.log()
            )
        });
    assert!(
        out.status.success() && seen["ok"] == true,
        "browser test failed after {:?}: {}\nchecks passed: {}\nat {}: {}\nbrowser console: {}\n\
         stderr: {stderr}\nserver log:\n{}",
        started.elapsed(),
        seen["error"],
        seen["checks"],
        seen["url_at_failure"],
        seen["page_at_failure"],
        seen["console_errors"],
        server.log()
    );
    assert_eq!(seen["csp"], CSP);
    assert_eq!(seen["foreign_requests"], json!([]));
    assert!(seen["checks"].as_array().unwrap().len() >= 25, "{seen}");
    // What the browser did really happened on the wire.
    assert!(receiver.count() >= 3, "the receiver got the deliveries");
    let got = receiver.all();
    assert_eq!(got[0].headers["x-tenant"], "acme");
    assert_eq!(
        got[0].headers["authorization"], "Bearer receiver-token-123456",
        "the masked header kept its real value"
    );
}
