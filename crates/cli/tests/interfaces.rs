//! The interfaces operators script against must not break by accident: the OpenAPI document,
//! every command's `--help` (commands, options, arguments, environment variables, defaults) and
//! the configuration keys of `serve` and `egress-proxy` with their defaults. Each is compared with
//! a snapshot committed under `interface/`: anything the snapshot has that the build lacks (a
//! removal, a rename, a changed type or default) fails; additions are printed and pass.
//!
//! After a deliberate change, regenerate the snapshots and commit them with the change:
//!
//! ```sh
//! HOOKWARDEN_UPDATE_INTERFACES=1 cargo test -p hookwarden --test interfaces
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../interface")
        .join(name)
}

/// Compares the interface items of a snapshot with those of the build. `items` turns a
/// snapshot's text into its items, the same way for the committed file and the current build.
fn check(name: &str, current: &str, items: impl Fn(&str) -> BTreeSet<String>) {
    let path = snapshot_path(name);
    if std::env::var_os("HOOKWARDEN_UPDATE_INTERFACES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, current).unwrap();
        eprintln!("{}: updated", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with HOOKWARDEN_UPDATE_INTERFACES=1",
            path.display()
        )
    });
    let (was, now) = (items(&committed), items(current));
    assert!(!was.is_empty(), "{name}: no interface items found");
    let added: Vec<&String> = now.difference(&was).collect();
    let removed: Vec<&String> = was.difference(&now).collect();
    if !added.is_empty() {
        eprintln!(
            "{name}: {} addition(s) (commit the snapshot with them: HOOKWARDEN_UPDATE_INTERFACES=1):",
            added.len()
        );
        for a in &added {
            eprintln!("  + {a}");
        }
    }
    assert!(
        removed.is_empty(),
        "{name}: the build no longer has what operators may script against (removed or \
         renamed; a changed type or default counts too):\n{}\n{}\nIf this is deliberate, \
         document it as a breaking change and regenerate: HOOKWARDEN_UPDATE_INTERFACES=1 \
         cargo test -p hookwarden --test interfaces",
        removed
            .iter()
            .map(|r| format!("  - {r}"))
            .collect::<Vec<_>>()
            .join("\n"),
        added
            .iter()
            .map(|a| format!("  + {a}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAPI

/// Words for people, not for programs: changing them breaks no client.
const PROSE: &[&str] = &["description", "summary", "title", "example", "examples"];

/// One line per leaf: `paths./api/v1/endpoints.post.requestBody...type = "object"`. Arrays of
/// objects with a `name` (parameters) are keyed by it; other arrays are sets of their elements,
/// so a reordering is not a change.
fn flatten(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if PROSE.contains(&k.as_str()) || (at == "info" && k == "version") {
                    continue;
                }
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                flatten(x, &key, out);
            }
        }
        Value::Array(a) if a.is_empty() => {
            out.insert(format!("{at} = []"));
        }
        Value::Array(a) => {
            for x in a {
                match x.get("name").and_then(Value::as_str) {
                    Some(n) => flatten(x, &format!("{at}[{n}]"), out),
                    None if x.is_object() || x.is_array() => flatten(x, &format!("{at}[]"), out),
                    None => {
                        out.insert(format!("{at}[] = {x}"));
                    }
                }
            }
        }
        leaf => {
            out.insert(format!("{at} = {leaf}"));
        }
    }
}

fn openapi_items(text: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(text).expect("openapi snapshot is JSON");
    let mut out = BTreeSet::new();
    flatten(&v, "", &mut out);
    out
}

#[tokio::test]
async fn openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &test_config(""), None);
    let (status, _, body) = server
        .api()
        .raw("GET", "/api/v1/openapi.json", &[], vec![])
        .await;
    assert!(status.is_success());
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    check("openapi.json", &text, openapi_items);
}

// ---------------------------------------------------------------------------------------------
// Command line

/// `hookwarden <path> --help`.
fn help(path: &[String]) -> String {
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .env_remove("HOOKWARDEN_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists (without clap's own `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside && line.starts_with("  ") {
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
            {
                out.push(name.to_owned());
            }
        } else if inside && !line.starts_with(' ') {
            inside = false;
        }
    }
    out
}

const SECTION: &str = "=== hookwarden";

/// Every command's help, depth first, each after a `=== hookwarden <path>` line.
fn all_help() -> String {
    let mut out = String::new();
    let mut stack: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = stack.pop() {
        let text = help(&path);
        let mut name = String::from(SECTION);
        for p in &path {
            name.push(' ');
            name.push_str(p);
        }
        out.push_str(&format!("{name} ===\n{text}\n"));
        for sub in subcommands(&text).into_iter().rev() {
            let mut p = path.clone();
            p.push(sub);
            stack.push(p);
        }
    }
    out
}

/// `hookwarden serve --listen <LISTEN>`, `hookwarden serve env HOOKWARDEN_CONFIG`,
/// `hookwarden sign --format default sign`, `hookwarden keys command create`, ...
fn help_items(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cmd = String::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(SECTION) {
            cmd = format!("hookwarden{}", rest.trim_end_matches(" ==="));
            section = "";
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            section = match line {
                "Commands:" => "command",
                "Arguments:" => "argument",
                "Options:" => "option",
                _ => "",
            };
            continue;
        }
        let t = line.trim_start();
        // Only entry lines (two-space indent); wrapped description lines are deeper.
        if section.is_empty() || !line.starts_with("  ") || line.starts_with("         ") {
            continue;
        }
        let Some(first) = t.split("  ").next() else {
            continue;
        };
        match section {
            "command" => {
                out.insert(format!("{cmd} command {first}"));
            }
            _ => {
                // `-l, --listen <LISTEN>` or `<FILE>` or `--quiet`.
                let head = first.trim();
                let flag = head
                    .split([',', ' '])
                    .find(|s| s.starts_with("--"))
                    .or_else(|| head.split([',', ' ']).find(|s| !s.is_empty()))
                    .unwrap_or(head)
                    .to_owned();
                out.insert(format!("{cmd} {section} {head}"));
                for (tag, what) in [
                    ("[env: ", "env"),
                    ("[default: ", "default"),
                    ("[possible values: ", "values"),
                ] {
                    if let Some(i) = t.find(tag) {
                        let v = &t[i + tag.len()..];
                        let v = v.split(']').next().unwrap_or(v).trim_end_matches('=');
                        if what == "values" {
                            for p in v.split(", ") {
                                out.insert(format!("{cmd} {flag} value {p}"));
                            }
                        } else {
                            out.insert(format!("{cmd} {flag} {what} {v}"));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn command_line() {
    let text = all_help();
    assert!(text.contains("=== hookwarden serve ==="), "{text}");
    check("cli-help.txt", &text, help_items);
}

// ---------------------------------------------------------------------------------------------
// Configuration keys

/// `server.listen = "127.0.0.1:8080"`; arrays of tables as `egress.proxies[].url`.
fn config_lines(v: &Value, at: &str, values: bool, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) if !m.is_empty() || at.is_empty() => {
            for (k, x) in m {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                config_lines(x, &key, values, out);
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            for x in a {
                config_lines(x, &format!("{at}[]"), false, out);
            }
        }
        leaf if values => {
            out.insert(format!("{at} = {leaf}"));
        }
        _ => {
            out.insert(format!("{at} (optional)"));
        }
    }
}

/// The defaults (`key = value`), then every optional key and every key of an array-of-tables
/// entry that `example` (a file that sets them all) has beyond them (`key (optional)`).
fn config_snapshot(defaults: Value, example: Value) -> String {
    let mut d = BTreeSet::new();
    config_lines(&defaults, "", true, &mut d);
    let keys: BTreeSet<String> = d
        .iter()
        .map(|l| l.split(" = ").next().unwrap().to_owned())
        .collect();
    let mut e = BTreeSet::new();
    config_lines(&example, "", false, &mut e);
    let mut out = String::new();
    for l in &d {
        out.push_str(l);
        out.push('\n');
    }
    for l in e {
        let k = l.trim_end_matches(" (optional)");
        if !keys.contains(k) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every optional key and array-of-tables entry of `serve`'s configuration, set. If a key here is
/// renamed or removed, loading this fails: update it with the snapshot (a breaking change).
const SERVE_EXAMPLE: &str = r#"
[server]
public_url = "https://hooks.example.com"
[server.tls]
cert_file = "/etc/hookwarden/cert.pem"
key_file = "/etc/hookwarden/key.pem"
reload_interval_secs = 60
handshake_timeout_secs = 10

[storage]
url = "postgres://hookwarden@db.example/hookwarden"

[egress]
proxy_health_interval_secs = 30
[[egress.proxies]]
url = "http://proxy.example:3128"
username = "sender"
password = "example"
[[egress.proxies]]
url = "https://proxy2.example:4750"
username = "sender"
password_env = "PROXY_PASSWORD"

[security]
master_key_file = "/etc/hookwarden/master.key"

[metrics]
listen = "127.0.0.1:9090"

[inbound]
require_https = true
"#;

#[test]
fn serve_configuration_keys() {
    let defaults = serde_json::to_value(hookwarden_server::config::Config::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("example.toml");
    std::fs::write(&file, SERVE_EXAMPLE).unwrap();
    let example = hookwarden_server::config::Config::load(Some(&file))
        .unwrap_or_else(|e| panic!("the example of every key no longer loads: {e}"));
    let example = serde_json::to_value(example).unwrap();
    check(
        "config-serve.txt",
        &config_snapshot(defaults, example),
        lines,
    );
}

/// The same for `hookwarden egress-proxy --config`.
const PROXY_EXAMPLE: &str = r#"
metrics_listen = "127.0.0.1:4751"
[tls]
listen = "0.0.0.0:4752"
cert_file = "/etc/hookwarden/proxy-cert.pem"
key_file = "/etc/hookwarden/proxy-key.pem"
client_ca_file = "/etc/hookwarden/clients-ca.pem"
require_client_certificate = true

[[users]]
name = "sender"
password_hash = "sha256$00$00"

[[policy.clients]]
name = "sender"
action = "enforce"
allowed_ports = [443]
allow = ["*.example.com"]
deny = ["internal.example.com"]
"#;

#[test]
fn egress_proxy_configuration_keys() {
    use hookwarden_egress::proxy::ProxyConfig;
    let defaults = serde_json::to_value(ProxyConfig::default()).unwrap();
    let example = ProxyConfig::parse(PROXY_EXAMPLE)
        .unwrap_or_else(|e| panic!("the example of every key no longer parses: {e}"));
    let example = serde_json::to_value(example).unwrap();
    check(
        "config-egress-proxy.txt",
        &config_snapshot(defaults, example),
        lines,
    );
}
