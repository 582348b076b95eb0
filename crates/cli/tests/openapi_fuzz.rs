//! Property-based API fuzzing: `schemathesis` (PyPI, pinned in interop/requirements.txt,
//! installed by `.ci/setup-interop`) reads `/api/v1/openapi.json` from the real `hookwarden
//! serve` and sends generated valid and invalid requests to every operation with the admin key.
//! The test fails on any 5xx, any response whose status, content type, headers or body the
//! document does not describe, schema-invalid input that is not refused, a route that ignores
//! the API key, and when schemathesis cannot run (it never skips).
//!
//! The fuzzer creates endpoints with arbitrary URLs and publishes events to them, so the server
//! is configured to keep everything on this machine: every address is denied
//! (`egress.deny_ranges = ["0.0.0.0/0", "::/0"]`) and no DNS query is sent
//! (`egress.system_resolver = false`: only the (empty) overrides answer). The test checks that
//! no delivery attempt ever reached a remote address.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Test cases per operation and phase (kept small: 2 cores, a couple of minutes).
const MAX_EXAMPLES: &str = "30";
/// The whole schemathesis run.
const RUN_LIMIT: Duration = Duration::from_secs(420);

/// `storage`: the lines of the `[storage]` section.
fn isolated_config(storage: &str) -> String {
    format!(
        r#"
[egress]
# Nothing leaves this machine: every address is refused and names are never looked up.
deny_ranges = ["0.0.0.0/0", "::/0"]
system_resolver = false
allow_http = true

[delivery]
max_attempts = 2
backoff_initial_secs = 1
request_timeout_secs = 2
connect_timeout_secs = 1
lease_secs = 30
claim_interval_ms = 200

[storage]
{storage}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    fuzz(&isolated_config("sqlite_synchronous = \"normal\"")).await;
}

/// The same on PostgreSQL (`HOOKWARDEN_TEST_DATABASE_URL`, as for the other PostgreSQL tests;
/// `.ci/run` sets it): its text and types refuse inputs SQLite takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_on_postgresql() {
    let Some(db) = Db::create("hw_fuzz").await else {
        return;
    };
    fuzz(&isolated_config(&format!(
        "url = \"{}\"\nmax_connections = 8\n{}",
        db.url,
        common::pg::security_section()
    )))
    .await;
}

/// One run at a time: each keeps a core busy.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn fuzz(config: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let python = interop_python();
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} missing: run .ci/setup-interop first",
        schemathesis.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), config, None);
    let api = server.api();
    // Something to find, so operations on ids and pages do not only see empty lists.
    let (s, v) = api
        .post(
            "/api/v1/endpoints",
            serde_json::json!({"url": "https://receiver.invalid/hook", "event_types": ["a.b"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    api.event("a.b", serde_json::json!({"n": 1})).await;

    let base = format!("http://{}", server.addr);
    let work = dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let out_path = work.join("output.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&schemathesis)
        .current_dir(&work)
        .env("HOME", &work)
        .env("SCHEMATHESIS_HOOKS", "")
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {}", server.key)])
        // Every check (no 5xx; status codes, content types, headers and bodies as documented;
        // schema-invalid input refused; the API key really enforced; 405 with `Allow` for
        // undocumented methods; deleted resources gone…) except `positive_data_acceptance`:
        // the API validates more than a schema can say (URL policy, secrets, CIDRs…), so
        // schema-valid input may rightly get a 422.
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        // Revoking keys would revoke the one this run uses (its stateful phase finds it in the
        // key listing) and leave every later request a 401: that route has its own tests.
        .args(["--exclude-path-regex", "^/api/v1/api-keys/[^/]+/revoke$"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20240601"])
        // One worker: CPython 3.11 ast.parse (used by hypothesis for reprs) is not thread-safe.
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "all"])
        .arg("--no-color")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("cannot start schemathesis");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    let status =
        status.unwrap_or_else(|| panic!("schemathesis ran longer than {RUN_LIMIT:?}:\n{output}"));
    assert!(
        status.success(),
        "schemathesis reported failures ({status}):\n{output}\n--- server log ---\n{}",
        tail(&server.log(), 200)
    );
    // It really tested something.
    assert!(
        output.contains("passed") && !output.contains("No operations"),
        "{output}"
    );

    // The server is still healthy afterwards…
    let (s, v) = api.get("/health").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // …and no delivery ever reached a remote address: every attempt was refused before
    // connecting (denied address or unknown name).
    let mut checked = 0;
    let (s, page) = api.get("/api/v1/deliveries?limit=250").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    for d in page["data"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let (s, attempts) = api.get(&format!("/api/v1/deliveries/{id}/attempts")).await;
        assert_eq!(s, StatusCode::OK, "{attempts}");
        for a in attempts["data"].as_array().unwrap() {
            checked += 1;
            assert_eq!(a["remote_address"], Value::Null, "connected somewhere: {a}");
            assert_eq!(a["status_code"], Value::Null, "got an answer: {a}");
        }
    }
    // The delivery created above was attempted at least once by now.
    assert!(checked >= 1, "no delivery attempt to check");
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
