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
