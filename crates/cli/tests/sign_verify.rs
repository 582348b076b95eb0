//! `hookwarden sign` and `hookwarden verify` round trips and refusals (exit codes are API).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::BIN;
use std::process::Command;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("HW_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn sign_then_verify_every_scheme() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        br#"{"type":"invoice.paid","data":{"amount":1}}"#,
    )
    .unwrap();
    for scheme in [
        "standard-webhooks",
        "github-sha256",
        "hub-sha1",
        "date-sha1",
    ] {
        let (code, headers, err) = run(
            &[
                "sign",
                "--scheme",
                scheme,
                "--secret-env",
                "HW_TEST_SECRET",
                "--id",
                "evt_1",
                "p.json",
            ],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
        std::fs::write(dir.path().join("h.txt"), &headers).unwrap();
        let (code, out, err) = run(
            &[
                "verify",
                "--scheme",
                scheme,
                "--secret",
                SECRET,
                "--headers-file",
                "h.txt",
                "p.json",
            ],
            dir.path(),
        );
        assert_eq!((code, out.trim()), (0, "valid"), "{scheme}: {err}");
        // Wrong secret: exit 1 with the reason.
        let (code, out, _) = run(
            &[
                "verify",
                "--scheme",
                scheme,
                "--secret",
                "whsec_d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==",
                "--headers-file",
                "h.txt",
                "p.json",
            ],
            dir.path(),
        );
        assert_eq!(code, 1, "{scheme}: {out}");
        assert!(
            out.starts_with("invalid: SIGNATURE_INVALID"),
            "{scheme}: {out}"
        );
    }
}

#[test]
fn verify_refuses_tampering_staleness_and_missing_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), b"{\"a\":1}").unwrap();
    std::fs::write(dir.path().join("t.json"), b"{\"a\":2}").unwrap();
    let (_, headers, _) = run(
        &["sign", "--secret", SECRET, "--id", "evt_1", "p.json"],
        dir.path(),
    );
    std::fs::write(dir.path().join("h.txt"), &headers).unwrap();
    let (code, out, _) = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--headers-file",
            "h.txt",
            "t.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "tampered body: {out}");
    // Ten minutes old: outside the default 5-minute window, inside a 15-minute one.
    let old = (now() - 600).to_string();
    let (_, headers, _) = run(
        &[
            "sign",
            "--secret",
            SECRET,
            "--id",
            "evt_1",
            "--timestamp",
            &old,
            "p.json",
        ],
        dir.path(),
    );
    std::fs::write(dir.path().join("old.txt"), &headers).unwrap();
    let (code, out, _) = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--headers-file",
            "old.txt",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(out.contains("TIMESTAMP_OUT_OF_TOLERANCE"), "{out}");
    let (code, _, _) = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--headers-file",
            "old.txt",
            "--tolerance",
            "900",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    let (code, out, _) = run(&["verify", "--secret", SECRET, "p.json"], dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("SIGNATURE_MISSING"), "{out}");
    // Rotation: any of several secrets.
    let (code, _, _) = run(
        &[
            "verify",
            "--secret",
            "whsec_b3RoZXIgc2VjcmV0IG90aGVyIHNlY3JldA==",
            "--secret",
            SECRET,
            "--headers-file",
            "h.txt",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), b"{}").unwrap();
    let (code, _, err) = run(&["sign", "p.json"], dir.path());
    assert_eq!(code, 2, "no secret: {err}");
    let (code, _, _) = run(
        &["sign", "--scheme", "md5", "--secret", SECRET, "p.json"],
        dir.path(),
    );
    assert_eq!(code, 2);
    let (code, _, _) = run(
        &["verify", "--secret", SECRET, "-H", "no-colon", "p.json"],
        dir.path(),
    );
    assert_eq!(code, 2);
    let (code, _, _) = run(&["verify", "--secret", SECRET, "missing.json"], dir.path());
    assert_eq!(code, 2);
}

/// `--format curl` works both pasted into a command line and substituted by a shell
/// (`curl $(hookwarden sign --format curl …) …`, as the README shows): unquoted words, so a
/// shell that does not re-read quotes still passes each header whole. A value a shell would
/// split is refused with the format that can carry it (`curl-config`, for `curl -K`).
#[test]
fn sign_for_curl_survives_shell_substitution() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), br#"{"a":1}"#).unwrap();
    let sign = format!(
        "{BIN} sign --secret-env HW_TEST_SECRET --id evt_curl --scheme standard-webhooks --scheme github-sha256 --format curl p.json"
    );
    // What a substitution hands to the command: one argument per line.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -- $({sign}) && printf '%s\\n' \"$@\""))
        .current_dir(dir.path())
        .env("HW_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(args.len(), 8, "{args:?}");
    let mut headers = Vec::new();
    for pair in args.chunks(2) {
        assert_eq!(pair[0], "-H");
        assert!(!pair[1].contains('\''), "{pair:?}");
        let (name, value) = pair[1].split_once(':').unwrap();
        headers.push(format!("{name}: {value}"));
    }
    // Those headers verify.
    std::fs::write(dir.path().join("h.txt"), headers.join("\n")).unwrap();
    let (code, out, err) = run(
        &[
            "verify",
            "--secret-env",
            "HW_TEST_SECRET",
            "--headers-file",
            "h.txt",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Pasted as printed, the line is the same words (no quotes to lose).
    let (code, line, _) = run(
        &[
            "sign",
            "--secret-env",
            "HW_TEST_SECRET",
            "--id",
            "evt_curl",
            "--timestamp",
            "1800000000",
            "--format",
            "curl",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(!line.contains(['\'', '"', '\\']), "{line}");
    // Two secrets sign with space-separated signatures: refused, pointing at curl-config…
    std::fs::write(
        dir.path().join("two.txt"),
        format!("{SECRET}\nwhsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"),
    )
    .unwrap();
    let (code, _, err) = run(
        &[
            "sign",
            "--secret-file",
            "two.txt",
            "--format",
            "curl",
            "p.json",
        ],
        dir.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("curl-config"), "{err}");
    // …which carries it for `curl -K`.
    let (code, cfg, err) = run(
        &[
            "sign",
            "--secret-file",
            "two.txt",
            "--format",
            "curl-config",
            "p.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let sig = cfg
        .lines()
        .find(|l| l.starts_with("header = \"webhook-signature: v1,"))
        .unwrap_or_else(|| panic!("{cfg}"));
    assert_eq!(sig.matches("v1,").count(), 2, "{sig}");
    assert!(sig.ends_with('"'));
}
