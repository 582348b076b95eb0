//! The receiver security probe against reference receivers over real HTTP on 127.0.0.1: one that
//! verifies correctly with the `standardwebhooks` PyPI package and keeps a replay cache, and one
//! for each usual mistake (tests/interop/probe_receivers.py). Each report must be exactly right,
//! case by case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;
mod egress_common;

use common::inproc::InProcess;
use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A reference receiver (a Python process), killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(mode: &str, secret: &str, tls: Option<(&Path, &Path, &Path)>) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/probe_receivers.py");
        let mut cmd = Command::new(interop_python());
        cmd.arg(script).arg(mode).env("PROBE_SECRET", secret);
        if let Some((cert, key, ca)) = tls {
            cmd.arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg("--client-ca")
                .arg(ca);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("receiver {mode} said {line:?}"))
            .parse()
            .unwrap();
        Receiver { child, port }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/hook", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn new_secret() -> String {
    hookwarden_server::crypto::new_signing_secret()
}

const PROBE_CONFIG: &str = "[probe]\nmin_interval_secs = 0\n";

/// `case[/scheme]` → verdict, for every case of a report.
fn verdicts(report: &Value) -> BTreeMap<String, String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let key = match c["scheme"].as_str() {
                Some(s) => format!("{}/{s}", c["case"].as_str().unwrap()),
                None => c["case"].as_str().unwrap().to_string(),
            };
            (key, c["verdict"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The standard-webhooks cases of an endpoint without a client certificate or a retired
/// secret, each with `pass` unless named in `failing`.
fn expected(failing: &[&str]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for c in ["valid", "no_signature", "replay"] {
        m.insert(c.to_string(), "pass".to_string());
    }
    for c in [
        "wrong_secret",
        "garbage_signature",
        "other_body",
        "empty_signature_list",
        "empty_signature",
        "truncated_signature",
        "half_garbage_signature",
        "stale_timestamp",
        "future_timestamp",
    ] {
        m.insert(format!("{c}/standard-webhooks"), "pass".to_string());
    }
    for f in failing {
        let key = m
            .keys()
            .find(|k| k.as_str() == *f || k.starts_with(&format!("{f}/")))
            .unwrap_or_else(|| panic!("no case {f}"))
            .clone();
        m.insert(key, "fail".to_string());
    }
    m
}

async fn probe(api: &Api, id: &str) -> Value {
    let (st, v) = api
        .post(&format!("/api/v1/endpoints/{id}/probe"), json!(null))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// Every reference receiver, each graded exactly, case by case.
#[tokio::test]
async fn reports_are_exact_for_every_reference_receiver() {
    let s = InProcess::start(&test_config(PROBE_CONFIG)).await;
    let api = s.api();
    let names = expected(&[]);
    let all_fail: Vec<&str> = names
        .keys()
        .filter(|k| *k != "valid")
        .map(|k| k.split('/').next().unwrap())
        .collect();
    let table: Vec<(&str, Vec<&str>, &str)> = vec![
        ("correct", vec![], "A"),
        ("accept_all", all_fail.clone(), "inconclusive"),
        ("async_200", all_fail.clone(), "inconclusive"),
        (
            "ignore_timestamp",
            vec!["stale_timestamp", "future_timestamp"],
            "C",
        ),
        ("no_replay_cache", vec!["replay"], "B"),
        (
            "prefix_compare",
            vec!["truncated_signature", "half_garbage_signature"],
            "F",
        ),
        (
            "length_blind",
            vec!["empty_signature", "truncated_signature"],
            "F",
        ),
    ];
    let mut receivers = Vec::new();
    for (mode, _, _) in &table {
        let secret = new_secret();
        let r = Receiver::start(mode, &secret, None);
        let (id, _) = api
            .endpoint(json!({"url": r.url("http"), "secret": secret}))
            .await;
        receivers.push((r, id));
    }
    for ((mode, failing, grade), (_r, id)) in table.iter().zip(&receivers) {
        let report = probe(&api, id).await;
        assert_eq!(verdicts(&report), expected(failing), "{mode}: {report:#}");
        assert_eq!(report["grade"], *grade, "{mode}: {report:#}");
        assert_eq!(report["endpoint_id"], id.as_str());
        assert_eq!(report["trigger"], "manual");
        // Never more than one request per case.
        assert_eq!(
            report["requests_sent"],
            report["cases"].as_array().unwrap().len()
        );
        let na: Vec<&str> = report["not_applicable"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["case"].as_str().unwrap())
            .collect();
        assert_eq!(na, ["retired_secret", "no_client_certificate"], "{mode}");
        for c in report["cases"].as_array().unwrap() {
            let failed = c["verdict"] == "fail";
            assert_eq!(c["advice"].is_string(), failed, "{mode}: {c}");
            let status = c["observed"]["status"].as_u64().unwrap();
            assert_eq!(
                (200..300).contains(&status),
                c["case"] == "valid" || failed,
                "{mode}: {c}"
            );
        }
        if *grade == "inconclusive" {
            assert!(
                report["summary"]
                    .as_str()
                    .unwrap()
                    .contains("accepts every request"),
                "{report}"
            );
        }
    }
    // Reports are kept, newest first; the metric counts them.
    let (_, id) = &receivers[0];
    let again = probe(&api, id).await;
    let (st, list) = api.get(&format!("/api/v1/endpoints/{id}/probes")).await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], again["id"].as_str().unwrap());
    assert_eq!(list["data"][0]["grade"], "A");
    let auth = format!("Bearer {}", s.key);
    let (st, _, body) = api
        .raw(
            "GET",
            "/metrics",
            &[("authorization", auth.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("hookwarden_probes_total{grade=\"A\"}"),
        "{text}"
    );
    assert!(text.contains("hookwarden_probe_cases_total{"), "{text}");
    s.shutdown().await;
}

/// `test_config` with keys added to its `[egress]` and `[storage]` sections, and `extra`.
fn config_with(egress: &str, storage: &str, extra: &str) -> String {
    test_config(extra)
        .replace("allow_http = true", &format!("allow_http = true\n{egress}"))
        .replace(
            "sqlite_synchronous = \"normal\"",
            &format!("sqlite_synchronous = \"normal\"\n{storage}"),
        )
}

/// A receiver behind mutual TLS: the request without Hookwarden's client certificate is refused
/// by its TLS listener, which is a pass.
#[tokio::test]
async fn mutual_tls_receivers_are_probed_without_the_certificate_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = egress_common::TestCa::new("probe test CA");
    let (cert, key) = ca.server(&["127.0.0.1"]);
    let (client_cert, client_key) = ca.client("hookwarden-sender");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca_path, cert_path, key_path) = (
        write("ca.pem", &ca.pem),
        write("server.pem", &cert),
        write("server.key", &key),
    );
    let s = InProcess::start(&config_with(
        &format!("extra_ca_files = [{:?}]", ca_path.to_str().unwrap()),
        "",
        PROBE_CONFIG,
    ))
    .await;
    let api = s.api();
    let (st, c) = api
        .post(
            "/api/v1/client-certificates",
            json!({"name": "sender", "certificate_pem": client_cert, "private_key_pem": client_key}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let secret = new_secret();
    let r = Receiver::start("mtls", &secret, Some((&cert_path, &key_path, &ca_path)));
    let (id, _) = api
        .endpoint(
            json!({"url": r.url("https"), "secret": secret, "client_certificate_id": c["id"]}),
        )
        .await;
    let report = probe(&api, &id).await;
    let mut want = expected(&[]);
    want.insert("no_client_certificate".into(), "pass".into());
    assert_eq!(verdicts(&report), want, "{report:#}");
    assert_eq!(report["grade"], "A", "{report:#}");
    let no_cert = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "no_client_certificate")
        .unwrap();
    // Refused in the handshake: no HTTP answer at all.
    assert!(no_cert["observed"]["status"].is_null(), "{no_cert}");
    assert!(
        no_cert["observed"]["error"].as_str().unwrap().len() > 3,
        "{no_cert}"
    );

    // The same receiver probed without the certificate attached: the valid request cannot get
    // through, so nothing else is sent and the report says why.
    let (st, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{id}"),
            Some(json!({"client_certificate_id": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let report = probe(&api, &id).await;
    assert_eq!(report["grade"], "inconclusive", "{report:#}");
    assert_eq!(report["requests_sent"], 1, "{report:#}");
    // The handshake failed: that says nothing about how the receiver checks signatures.
    assert_eq!(report["cases"][0]["verdict"], "inconclusive", "{report:#}");
    assert!(
        report["cases"][0]["observed"]["error"]
            .as_str()
            .unwrap()
            .starts_with("TLS_")
    );
    assert!(
        report["cases"].as_array().unwrap()[1..]
            .iter()
            .all(|c| c["verdict"] == "inconclusive" && c["observed"]["error"] == "NOT_SENT")
    );
    s.shutdown().await;
}

/// After a rotation whose grace has ended, the retired secret is probed: a receiver that dropped
/// it passes, one that kept it fails (grade B). Deleting the endpoint removes its reports.
#[tokio::test]
async fn retired_secrets_are_probed_after_a_rotation() {
    let s = InProcess::start(&test_config(PROBE_CONFIG)).await;
    let api = s.api();
    let (old, new) = (new_secret(), new_secret());
    let r_old = Receiver::start("correct", &old, None);
    let (id, _) = api
        .endpoint(json!({"url": r_old.url("http"), "secret": old}))
        .await;
    assert_eq!(probe(&api, &id).await["grade"], "A");
    let (st, v) = api
        .post(
            &format!("/api/v1/endpoints/{id}/secret/rotate"),
            json!({"grace_period_seconds": 0, "secret": new}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let patch_url = |url: String| {
        let api = api.clone();
        let id = id.clone();
        async move {
            let (st, v) = api
                .call(
                    "PATCH",
                    &format!("/api/v1/endpoints/{id}"),
                    Some(json!({"url": url})),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    };
    // A receiver that has only the new secret.
    let r_new = Receiver::start("correct", &new, None);
    patch_url(r_new.url("http")).await;
    let report = probe(&api, &id).await;
    let mut want = expected(&[]);
    want.insert("retired_secret/standard-webhooks".into(), "pass".into());
    assert_eq!(verdicts(&report), want, "{report:#}");
    assert_eq!(report["grade"], "A");
    // One that still accepts the old one too.
    let r_both = Receiver::start("correct", &format!("{new} {old}"), None);
    patch_url(r_both.url("http")).await;
    let report = probe(&api, &id).await;
    want.insert("retired_secret/standard-webhooks".into(), "fail".into());
    assert_eq!(verdicts(&report), want, "{report:#}");
    assert_eq!(report["grade"], "B", "{report:#}");
    let failed = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verdict"] == "fail")
        .unwrap();
    assert!(
        failed["advice"].as_str().unwrap().contains("retired"),
        "{failed}"
    );
    // The reports go with the endpoint.
    let (st, _) = api
        .call("DELETE", &format!("/api/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = api.get(&format!("/api/v1/endpoints/{id}/probes")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = api
        .post(&format!("/api/v1/endpoints/{id}/probe"), json!(null))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    s.shutdown().await;
}

/// One probe per endpoint per interval (429 with Retry-After), one at a time (409), 404 for an
/// unknown endpoint; a grade that drops is an operational event and a usage alert.
#[tokio::test]
async fn probes_are_rate_limited_and_a_dropped_grade_is_an_event() {
    let s = InProcess::start(&test_config("")).await;
    let api = s.api();
    let secret = new_secret();
    let good = Receiver::start("correct", &secret, None);
    let flawed = Receiver::start("prefix_compare", &secret, None);
    let (id, _) = api
        .endpoint(json!({"url": good.url("http"), "secret": secret}))
        .await;
    assert_eq!(probe(&api, &id).await["grade"], "A");
    let auth = format!("Bearer {}", s.key);
    let (st, headers, body) = api
        .raw(
            "POST",
            &format!("/api/v1/endpoints/{id}/probe"),
            &[("authorization", auth.as_str())],
            Vec::new(),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "PROBE_RATE_LIMITED");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Nothing was sent for the refused probe: still one report.
    let (_, list) = api.get(&format!("/api/v1/endpoints/{id}/probes")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    for path in [
        "/api/v1/endpoints/ep_nope/probe",
        "/api/v1/endpoints/ep_nope/probes",
    ] {
        let (st, v) = if path.ends_with("probe") {
            api.post(path, json!(null)).await
        } else {
            api.get(path).await
        };
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }

    // The receiver is replaced by a flawed one: the grade drops from A to F.
    let (st, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/endpoints/{id}"),
            Some(json!({"url": flawed.url("http")})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.advance_ms(61_000);
    let report = probe(&api, &id).await;
    assert_eq!(report["grade"], "F", "{report:#}");
    let mut event = Value::Null;
    for _ in 0..50 {
        let (_, v) = api
            .get("/api/v1/events?event_type=endpoint.probe_grade_dropped")
            .await;
        if let Some(e) = v["data"].as_array().and_then(|d| d.first()) {
            event = e.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let p = &event["payload"];
    assert_eq!(p["endpoint_id"], id.as_str(), "{event}");
    assert_eq!(
        (p["previous_grade"].as_str(), p["grade"].as_str()),
        (Some("A"), Some("F"))
    );
    assert_eq!(p["probe_id"], report["id"]);
    assert_eq!(
        p["failed_cases"],
        json!(["truncated_signature", "half_garbage_signature"])
    );

    // A receiver that drops verification altogether: graded inconclusive (it may verify
    // later) but, compared with the last comparable grade, a drop all the same (from A here;
    // from F it would not be one).
    let open = Receiver::start("accept_all", &secret, None);
    for url in [good.url("http"), open.url("http")] {
        let (st, _) = api
            .call(
                "PATCH",
                &format!("/api/v1/endpoints/{id}"),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        s.advance_ms(61_000);
        probe(&api, &id).await;
    }
    let (_, list) = api
        .get(&format!("/api/v1/endpoints/{id}/probes?limit=1"))
        .await;
    let report = list["data"][0].clone();
    assert_eq!(
        (
            report["grade"].as_str(),
            report["accepts_everything"].as_bool()
        ),
        (Some("inconclusive"), Some(true))
    );
    let mut drops = Vec::new();
    for _ in 0..50 {
        let (_, v) = api
            .get("/api/v1/events?event_type=endpoint.probe_grade_dropped")
            .await;
        drops = v["data"].as_array().cloned().unwrap_or_default();
        if drops.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert_eq!(drops[0]["payload"]["previous_grade"], "A");
    assert_eq!(drops[0]["payload"]["accepts_everything"], true);

    // A disabled endpoint is not probed (deliveries do not reach it either).
    let (st, _) = api
        .post(&format!("/api/v1/endpoints/{id}/disable"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.advance_ms(61_000);
    let (st, v) = api
        .post(&format!("/api/v1/endpoints/{id}/probe"), json!(null))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("ENDPOINT_DISABLED")),
        "{v}"
    );

    // Two probes at once: the second is refused while the first runs.
    let slow = common::Receiver::start().await;
    slow.set_default(Reply {
        delay: std::time::Duration::from_millis(300),
        ..Reply::status(401)
    });
    let (slow_id, _) = api.endpoint(json!({"url": slow.url("/hook")})).await;
    let path = format!("/api/v1/endpoints/{slow_id}/probe");
    let first = {
        let api = api.clone();
        let path = path.clone();
        tokio::spawn(async move { api.post(&path, json!(null)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (st, v) = api.post(&path, json!(null)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("PROBE_IN_PROGRESS")),
        "{v}"
    );
    let (st, v) = first.await.unwrap();
    assert_eq!(st, StatusCode::CREATED);
    // A receiver that refuses even the valid request: one request, then nothing.
    assert_eq!(v["grade"], "inconclusive");
    assert_eq!(v["requests_sent"], 1);
    s.shutdown().await;
}

/// `hookwarden probe --endpoint` (through the API) and `--url` (from the shell, through the
/// guarded client of the configuration given), with their exit codes.
#[tokio::test]
async fn the_cli_probes_registered_and_unregistered_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let s = InProcess::start(&test_config(PROBE_CONFIG)).await;
    let api = s.api();
    let secret = new_secret();
    let good = Receiver::start("correct", &secret, None);
    let flawed = Receiver::start("length_blind", &secret, None);
    let (id, _) = api
        .endpoint(json!({"url": good.url("http"), "secret": secret}))
        .await;
    let run = |args: Vec<String>| {
        let key = s.key.clone();
        let secret = secret.clone();
        async move {
            let out = tokio::process::Command::new(BIN)
                .args(&args)
                .env("HOOKWARDEN_API_KEY", key)
                .env("PROBE_TEST_SECRET", secret)
                .env_remove("HOOKWARDEN_CONFIG")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8(out.stdout).unwrap(),
                String::from_utf8(out.stderr).unwrap(),
            )
        }
    };
    let base = format!("http://{}", s.addr);
    let (code, out, err) = run(vec![
        "probe".into(),
        "--endpoint".into(),
        id.clone(),
        "--api-url".into(),
        base.clone(),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("grade A") && out.contains("PASS  valid"),
        "{out}"
    );
    let (code, out, _) = run(vec![
        "probe".into(),
        "--endpoint".into(),
        id.clone(),
        "--api-url".into(),
        base.clone(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["grade"].as_str(), v["endpoint_id"].as_str()),
        (Some("A"), Some(id.as_str()))
    );
    // Two stored reports now.
    let (_, list) = api.get(&format!("/api/v1/endpoints/{id}/probes")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // A wrong key: refused, said so, exit 2.
    let out = tokio::process::Command::new(BIN)
        .args(["probe", "--endpoint", &id, "--api-url", &base])
        .env("HOOKWARDEN_API_KEY", "hwk_wrong")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    // The admin key is never sent in clear to another host.
    let (code, _, err) = run(vec![
        "probe".into(),
        "--endpoint".into(),
        id.clone(),
        "--api-url".into(),
        "http://192.0.2.1:8080".into(),
    ])
    .await;
    assert_eq!(code, Some(2));
    assert!(err.contains("in clear"), "{err}");

    // From the shell, with a configuration that allows loopback receivers.
    let cfg = dir.path().join("hookwarden.toml");
    std::fs::write(&cfg, test_config(PROBE_CONFIG)).unwrap();
    let local = |url: String| {
        vec![
            "probe".into(),
            "--url".into(),
            url,
            "--secret-env".into(),
            "PROBE_TEST_SECRET".into(),
            "--config".into(),
            cfg.to_str().unwrap().to_string(),
        ]
    };
    let (code, out, err) = run(local(good.url("http"))).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(local(flawed.url("http"))).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("grade F")
            && out.contains("FAIL  truncated_signature [standard-webhooks]")
            && out.contains("fix: "),
        "{out}"
    );
    // Without that configuration loopback is refused, as for a registered endpoint.
    let (code, out, err) = run(vec![
        "probe".into(),
        "--url".into(),
        good.url("http"),
        "--secret-env".into(),
        "PROBE_TEST_SECRET".into(),
    ])
    .await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("URL_"), "{err}");
    s.shutdown().await;
}

/// With `probe.automatic`, creating an endpoint, changing its URL and rotating its secret each
/// probe it; with `probe.schedule_hours`, endpoints not probed for that long are.
#[tokio::test]
async fn automatic_and_scheduled_probes() {
    let s = InProcess::start(&config_with(
        "",
        "retention_interval_secs = 1",
        "[probe]\nmin_interval_secs = 0\nautomatic = true\nschedule_hours = 1\n",
    ))
    .await;
    let api = s.api();
    let secret = new_secret();
    let r = Receiver::start("correct", &secret, None);
    let (id, _) = api
        .endpoint(json!({"url": r.url("http"), "secret": secret}))
        .await;
    let triggers = || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let (_, v) = api.get(&format!("/api/v1/endpoints/{id}/probes")).await;
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["trigger"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let wait_for = |n: usize| async move {
        for _ in 0..100 {
            let t = triggers().await;
            if t.len() >= n {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("fewer than {n} probes: {:?}", triggers().await);
    };
    let first = wait_for(1).await;
    // Created, then (the upkeep runs every second) possibly scheduled right after: the first
    // is the creation's, and no scheduled one comes while the newest is under an hour old.
    assert_eq!(first.last().unwrap(), "endpoint_created", "{first:?}");
    let (st, _) = api
        .post(
            &format!("/api/v1/endpoints/{id}/secret/rotate"),
            json!({"secret": new_secret(), "grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let t = wait_for(2).await;
    assert_eq!(t[0], "secret_rotated", "{t:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        triggers().await.len(),
        2,
        "no scheduled probe within the hour"
    );
    // An hour later the schedule probes it again.
    s.advance_ms(3_601_000);
    let t = wait_for(3).await;
    assert_eq!(t[0], "scheduled", "{t:?}");
    s.shutdown().await;
}

/// A receiver that does not answer in time: the probe ends within its own limits (the valid
/// request times out, so nothing else is sent) and says why.
#[tokio::test]
async fn a_silent_receiver_cannot_hold_a_probe() {
    let s = InProcess::start(&test_config(
        "[probe]\nmin_interval_secs = 0\nrequest_timeout_secs = 1\ndeadline_secs = 2\n",
    ))
    .await;
    let api = s.api();
    let slow = common::Receiver::start().await;
    slow.set_default(Reply {
        delay: std::time::Duration::from_secs(4),
        ..Reply::status(200)
    });
    let (id, _) = api.endpoint(json!({"url": slow.url("/hook")})).await;
    let started = std::time::Instant::now();
    let report = probe(&api, &id).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report["grade"], "inconclusive", "{report:#}");
    assert_eq!(report["requests_sent"], 1);
    let valid = &report["cases"][0];
    assert_eq!(
        (
            valid["verdict"].as_str(),
            valid["observed"]["error"].as_str()
        ),
        (Some("inconclusive"), Some("REQUEST_TIMEOUT")),
        "{valid}"
    );
    s.shutdown().await;
}
