//! What a new user reads when the first start goes wrong, from the real binary: each message
//! says what is wrong once, names configuration keys as they are written in the file (and the
//! environment variable when one was used), and carries no Rust debug values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;

#[test]
fn a_busy_port_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (ok, err) = serve_exit(dir.path(), &["--listen", &addr], &[]);
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("already in use").count(), 1, "{err}");
}

#[test]
fn configuration_errors_name_the_key_and_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hookwarden.toml");
    std::fs::write(&cfg, "[server]\nmax_connections = \"lots\"\n").unwrap();
    let (ok, err) = serve_exit(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("server.max_connections must be a whole number")
            && err.contains(cfg.to_str().unwrap()),
        "{err}"
    );
    assert!(!err.contains("default.") && !err.contains("``"), "{err}");

    // The same mistake made in the environment names the variable.
    let (ok, err) = serve_exit(
        dir.path(),
        &["--listen", "127.0.0.1:0"],
        &[("HOOKWARDEN_SERVER__MAX_CONNECTIONS", "lots")],
    );
    assert!(!ok);
    assert!(
        err.contains("server.max_connections")
            && err.contains("environment variable HOOKWARDEN_SERVER__MAX_CONNECTIONS"),
        "{err}"
    );
}

#[test]
fn a_bad_listen_address_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = serve_exit(dir.path(), &["--listen", "127.0.0.1:99999"], &[]);
    assert!(!ok);
    let lower = err.to_lowercase();
    assert!(lower.contains("99999"), "{err}");
    assert!(
        lower.matches("invalid port value").count() <= 1
            && lower.matches("invalid socket address").count() <= 1,
        "{err}"
    );
}
