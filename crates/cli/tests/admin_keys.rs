//! Admin API keys: named, listed, expiring and revoked (API and CLI), refused by every instance
//! within a second of a revocation; the bootstrap key is never lost to a failed first start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::inproc::InProcess;
use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn keys_cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("keys")
        .chain(args.iter().copied())
        .collect();
    cli_in(dir, &args)
}

/// Polls `GET /api/v1/endpoints` with `key` until it answers `want`; returns how long it took.
async fn until_status(api: &Api, key: &str, want: StatusCode, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (st, _) = api.with_key(key).get("/api/v1/endpoints").await;
        if st == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {st} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key that expires 2 s after it is made (checked to work at first).
async fn short_lived_key(api: &Api) -> String {
    let (_, short) = api
        .post(
            "/api/v1/api-keys",
            json!({"name": "short", "expires_in_secs": 2}),
        )
        .await;
    let short = short["secret"].as_str().unwrap().to_string();
    let (st, _) = api.with_key(&short).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    short
}

#[tokio::test]
async fn keys_are_named_listed_expired_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &test_config(""), None);
    let api = s.api();

    // Made through the API: the key is shown once; the listing never shows it.
    let (st, made) = api
        .post(
            "/api/v1/api-keys",
            json!({"name": "ci deploys", "description": "pipeline", "expires_in_secs": 3600}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("hwk_"));
    assert_eq!(made["name"], "ci deploys");
    assert_eq!(made["status"], "active");
    assert!(made["expires_at"].is_string());
    let (st, _) = api.with_key(&secret).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    let (_, list) = api.get("/api/v1/api-keys").await;
    let text = list.to_string();
    assert!(!text.contains(&secret[4..]), "a key was listed: {text}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci deploys", "bootstrap"]);
    // Its use is recorded (in the background, at most once a minute).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, k) = api.get(&format!("/api/v1/api-keys/{id}")).await;
        if k["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "last use never recorded: {k}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Bad requests are refused with codes.
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "expires_in_secs": 0}),
        json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "expires_at": "2099-01-01T00:00:00Z", "expires_in_secs": 5}),
        json!({"name": "a\u{0000}b"}),
        json!([null]),
    ] {
        let (st, v) = api.post("/api/v1/api-keys", bad.clone()).await;
        assert!(
            st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST,
            "{bad}: {st} {v}"
        );
    }

    // Revoked through the API: refused at once by this instance.
    let (st, v) = api
        .post(&format!("/api/v1/api-keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    let (st, v) = api.with_key(&secret).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "INVALID_API_KEY");
    let (st, _) = api
        .post("/api/v1/api-keys/key_nope/revoke", json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A key that expires: works, then stops without anyone doing anything (the listing below
    // shows it expired; `a_key_stops_working_when_it_expires` shows the boundary).
    let short = short_lived_key(&api).await;
    until_status(
        &api,
        &short,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(10),
    )
    .await;

    // The CLI: create with a name and lifetime (the key alone on stdout), list, revoke.
    let (ok, out, err) = keys_cli(
        dir.path(),
        &["create", "--name", "laptop", "--expires-in", "90d"],
    );
    assert!(ok, "{err}");
    let cli_key = out.trim().to_string();
    assert!(
        cli_key.starts_with("hwk_") && !cli_key.contains(' '),
        "{out}"
    );
    let (st, _) = api.with_key(&cli_key).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    let (ok, table, err) = keys_cli(dir.path(), &["list"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("laptop") && table.contains("revoked") && table.contains("expired"),
        "{table}"
    );
    assert!(!table.contains(&cli_key), "{table}");
    let (ok, lines, _) = keys_cli(dir.path(), &["list", "--json"]);
    assert!(ok);
    let laptop: Value = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["name"] == "laptop")
        .unwrap();
    let laptop_id = laptop["id"].as_str().unwrap();
    assert_eq!(laptop["status"], "active");
    let (ok, _, err) = keys_cli(dir.path(), &["revoke", laptop_id]);
    assert!(ok, "{err}");
    // Revoked by another process on the same database: refused within a second.
    let took = until_status(
        &api,
        &cli_key,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (ok, _, err) = keys_cli(dir.path(), &["revoke", "key_nope"]);
    assert!(!ok && err.contains("no API key"), "{err}");
}

/// A first start that fails (the port is taken) must not consume the bootstrap key: the next
/// start prints it. A start with no usable key says how to make one.
#[tokio::test]
async fn the_bootstrap_key_is_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg_path = dir.path().join("hookwarden.toml");
    std::fs::write(&cfg_path, test_config("")).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &busy.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("hwk_"), "{stdout}");
    drop(busy);
    // The next start works and shows the key.
    let mut s = Server::start_in(dir.path(), &test_config(""), None);
    assert!(s.key.starts_with("hwk_"));
    let (st, _) = s.api().get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    // Every key revoked: the next start says how to make one (and prints no key).
    let (_, list) = s.api().get("/api/v1/api-keys").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .api()
        .post(&format!("/api/v1/api-keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.terminate(), Some(0));
    let s2 = Server::start_in(dir.path(), &test_config(""), Some("unused".into()));
    assert!(
        s2.stdout_lines
            .iter()
            .any(|l| l.contains("no usable admin API key") && l.contains("hookwarden keys create")),
        "{:?}",
        s2.stdout_lines
    );
    assert!(!s2.stdout_lines.iter().any(|l| l.contains("hwk_")));
}

/// On a shared database, a revocation made through one instance is honoured by the others
/// within a second.
#[tokio::test]
async fn a_revoked_key_is_refused_by_every_instance_within_a_second() {
    let Some(db) = Db::create("hw_keys").await else {
        return;
    };
    let cfg = test_config(&format!(
        "[storage]\nurl = \"{}\"\nmax_connections = 4\n{}",
        db.url,
        common::pg::security_section()
    ))
    .replace("[storage]\nsqlite_synchronous = \"normal\"\n", "");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_in(d1.path(), &cfg, None);
    let b = Server::start_in(d2.path(), &cfg, Some(a.key.clone()));
    let (st, made) = a
        .api()
        .post("/api/v1/api-keys", json!({"name": "shared"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_string();
    // Instance b knows the key (and caches it).
    let (st, _) = b.api().with_key(&secret).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = a
        .api()
        .post(
            &format!("/api/v1/api-keys/{}/revoke", made["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let took = until_status(
        &b.api(),
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A key that expires, in process on a manual clock: it still works just before its expiry and
/// is refused just after (a real-time test cannot show the boundary).
#[tokio::test]
async fn a_key_stops_working_when_it_expires() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let short = short_lived_key(&api).await;
    s.advance_ms(1_900);
    let (st, _) = api.with_key(&short).get("/api/v1/endpoints").await;
    assert_eq!(st, StatusCode::OK, "refused before its expiry");
    s.advance_ms(200);
    let (st, v) = api.with_key(&short).get("/api/v1/endpoints").await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "still usable after its expiry: {v}"
    );
    s.shutdown().await;
}
