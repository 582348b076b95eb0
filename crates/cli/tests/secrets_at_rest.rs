//! Secrets at rest, on the default configuration: every secret sealed (signing secrets, custom
//! header credentials, developer payloads, source secrets), the master key generated into a
//! 0600 file beside an embedded database and required for PostgreSQL, the data directory and
//! database files readable by their owner only, plaintext rows of earlier releases sealed at
//! start, a wrong or lost key refused, and a rotation that re-seals everything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const CREDENTIAL: &str = "Bearer customer-credential-8c1f5e";
const DEV_PAYLOAD: &str = "developer-payload-71b2";
const SOURCE_SECRET: &str = "gh-source-secret-55d0";

/// Creates an endpoint (with a credential header and a developer payload) and a source; returns
/// the endpoint's signing secret.
async fn make_secrets(api: &Api, rx: &Receiver) -> String {
    let (_, secret) = api
        .endpoint(json!({
            "url": rx.url("/hook"),
            "headers": {"authorization": CREDENTIAL, "x-team": "blue"},
            "developer_payload": DEV_PAYLOAD,
        }))
        .await;
    let (st, v) = api
        .post(
            "/api/v1/sources",
            json!({"name": "gh", "verification": {"type": "github", "secret": SOURCE_SECRET}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    secret
}

fn secrets_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("secrets")
        .chain(args.iter().copied())
        .collect();
    cli_in(dir, &args)
}

/// One delivery, verified with `secret` by the receiver's side of Standard Webhooks, carrying
/// the custom header and the developer payload.
async fn delivered_and_signed(api: &Api, rx: &Receiver, secret: &str, n: usize) {
    api.event("t", json!({"n": n})).await;
    let got = rx.wait_count(n, 30).await;
    let last = got.last().unwrap();
    assert_eq!(last.headers["authorization"], CREDENTIAL);
    let body = String::from_utf8_lossy(&last.body);
    assert!(body.contains(DEV_PAYLOAD), "{body}");
    let mut h = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        h.insert(name, last.headers[name].clone());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    hookwarden_signatures::verify(
        hookwarden_signatures::Scheme::StandardWebhooks,
        &[secret],
        &h,
        &last.body,
        now,
        300,
    )
    .expect("the delivery is signed with the endpoint's secret");
}

#[tokio::test]
async fn sqlite_default_seals_everything_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rx = Receiver::start().await;
    let mut s = Server::start_in(dir.path(), &test_config(""), None);
    let key_file = data.join("master.key");
    assert!(
        s.stdout_lines
            .iter()
            .any(|l| l.contains("made the master key") && l.contains("master.key")),
        "{:?}",
        s.stdout_lines
    );
    let api = s.api();
    let secret = make_secrets(&api, &rx).await;
    delivered_and_signed(&api, &rx, &secret, 1).await;

    // Files: the directory 0700, the key, database, WAL and lock 0600.
    assert_eq!(mode(&data), 0o700);
    for f in [
        "master.key",
        "hookwarden.db",
        "hookwarden.db-wal",
        "hookwarden.lock",
    ] {
        let p = data.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    // No secret is readable in the database files.
    for needle in [&secret[6..], CREDENTIAL, DEV_PAYLOAD, SOURCE_SECRET] {
        assert!(!files_contain(&data, needle), "{needle} in clear on disk");
    }
    // The API still shows what it showed (masked credential, the other header as it is).
    let (_, eps) = api.get("/api/v1/endpoints").await;
    assert_eq!(eps["data"][0]["headers"]["x-team"], "blue");
    assert_eq!(
        eps["data"][0]["headers"]["authorization"],
        format!("****{}", &CREDENTIAL[CREDENTIAL.len() - 4..])
    );

    let (ok, status, err) = secrets_cli(dir.path(), &["status"]);
    assert!(ok, "{err}");
    assert!(
        status.contains("0 with an earlier key, 0 in clear, 0 unreadable"),
        "{status}"
    );

    // Rotation (serve stopped: the embedded database belongs to one process).
    assert_eq!(s.terminate(), Some(0));
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let (ok, out, err) = secrets_cli(dir.path(), &["rotate"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("made a new master key"), "{out}");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key, new_key);
    let keys: Vec<&str> = new_key
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "the old key is dropped once nothing needs it"
    );
    assert_eq!(mode(&key_file), 0o600);
    let (_, status, _) = secrets_cli(dir.path(), &["status"]);
    assert!(
        status.contains("0 with an earlier key, 0 in clear"),
        "{status}"
    );
    // The same secrets, now under the new key: deliveries still verify with the same secret.
    let s = Server::start_in(dir.path(), &test_config(""), Some(s.key.clone()));
    delivered_and_signed(&s.api(), &rx, &secret, 2).await;
    drop(s);

    // A lost key file is never silently replaced: the start is refused.
    std::fs::rename(&key_file, data.join("master.key.bak")).unwrap();
    let err = serve_refuses(dir.path(), &dir.path().join("hookwarden.toml"));
    assert!(
        err.contains("is missing") && err.contains("restore"),
        "{err}"
    );
    assert!(!key_file.exists(), "no new key was made");
    // A wrong configured key is refused too.
    let wrong = test_config(&format!(
        "[security]\nmaster_key = \"{}\"\n",
        hookwarden_server::crypto::new_master_key()
    ));
    std::fs::write(dir.path().join("wrong.toml"), wrong).unwrap();
    let err = serve_refuses(dir.path(), &dir.path().join("wrong.toml"));
    assert!(err.contains("master key"), "{err}");
}

/// A database written by a release that stored secrets in clear: the first start of this one
/// seals them (and deliveries go on, signed with the same secrets).
#[tokio::test]
async fn an_upgrade_seals_what_an_earlier_release_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rx = Receiver::start().await;
    let mut s = Server::start_in(dir.path(), &test_config(""), None);
    let key = s.key.clone();
    let secret = make_secrets(&s.api(), &rx).await;
    assert_eq!(s.terminate(), Some(0));
    // Turn the database into what the earlier release left: every secret in clear, no key.
    {
        let c = rusqlite::Connection::open(data.join("hookwarden.db")).unwrap();
        c.execute("UPDATE endpoint_secrets SET secret = ?1", [&secret])
            .unwrap();
        c.execute(
            "UPDATE endpoints SET headers = ?1, developer_payload = ?2",
            [
                &json!({"authorization": CREDENTIAL, "x-team": "blue"}).to_string(),
                DEV_PAYLOAD,
            ],
        )
        .unwrap();
        c.execute(
            "UPDATE sources SET secrets = ?1",
            [&json!([SOURCE_SECRET]).to_string()],
        )
        .unwrap();
        c.execute(
            "DELETE FROM meta WHERE key = 'security.master_key_check'",
            [],
        )
        .unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    std::fs::remove_file(data.join("master.key")).unwrap();
    assert!(
        files_contain(&data, CREDENTIAL),
        "the setup stored it in clear"
    );

    let s = Server::start_in(dir.path(), &test_config(""), Some(key));
    assert!(
        s.log()
            .contains("sealed secrets that an earlier release stored in clear")
    );
    delivered_and_signed(&s.api(), &rx, &secret, 1).await;
    let (ok, status, err) = secrets_cli(dir.path(), &["status"]);
    assert!(ok, "{err}");
    assert!(status.contains(" 0 in clear"), "{status}");
    drop(s);
    {
        let c = rusqlite::Connection::open(data.join("hookwarden.db")).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    for needle in [&secret[6..], CREDENTIAL, DEV_PAYLOAD, SOURCE_SECRET] {
        assert!(!files_contain(&data, needle), "{needle} still in clear");
    }
}

/// PostgreSQL is shared by several instances, which must share the key: without one, `serve`
/// refuses to start and says how to make one. With configured keys, a rotation is: the new key
/// as `master_key`, the old one in `previous_master_keys`, then `secrets rotate`.
#[tokio::test]
async fn postgres_needs_a_configured_key_and_rotates_with_configured_keys() {
    let Some(db) = Db::create("hw_secrets").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("[storage]\nurl = \"{}\"\nmax_connections = 4\n", db.url);
    let plain = test_config(&storage).replace("[storage]\nsqlite_synchronous = \"normal\"\n", "");
    std::fs::write(dir.path().join("hookwarden.toml"), &plain).unwrap();
    let err = serve_refuses(dir.path(), &dir.path().join("hookwarden.toml"));
    assert!(err.contains("hookwarden secrets new-key"), "{err}");

    let old = hookwarden_server::crypto::new_master_key();
    let new = hookwarden_server::crypto::new_master_key();
    let with = |sec: &str| format!("{plain}\n[security]\n{sec}\n");
    let rx = Receiver::start().await;
    let s = Server::start_in(dir.path(), &with(&format!("master_key = \"{old}\"")), None);
    let key = s.key.clone();
    let secret = make_secrets(&s.api(), &rx).await;
    drop(s);
    // Rolled to the new key, the old one still opened: everything works, then rotate.
    let rolled = with(&format!(
        "master_key = \"{new}\"\nprevious_master_keys = [\"{old}\"]"
    ));
    let s = Server::start_in(dir.path(), &rolled, Some(key.clone()));
    assert!(
        s.log().contains("secrets rotate"),
        "a warning says what is left to do"
    );
    delivered_and_signed(&s.api(), &rx, &secret, 1).await;
    let (ok, out, err) = secrets_cli(dir.path(), &["rotate"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("remove it from the configuration"), "{out}");
    drop(s);
    // The old key can go: the new one alone opens everything.
    let s = Server::start_in(
        dir.path(),
        &with(&format!("master_key = \"{new}\"")),
        Some(key.clone()),
    );
    delivered_and_signed(&s.api(), &rx, &secret, 2).await;
    drop(s);
    // And the old key alone is refused.
    std::fs::write(
        dir.path().join("hookwarden.toml"),
        with(&format!("master_key = \"{old}\"")),
    )
    .unwrap();
    serve_refuses(dir.path(), &dir.path().join("hookwarden.toml"));
}
