//! Shared helpers for the interop tests: locate the interpreters installed by
//! `.ci/setup-interop` and run the scripts in `tests/interop/`. A missing interpreter or
//! package is a test FAILURE ("run .ci/setup-interop first"), never a skip.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub(crate) const SETUP_HINT: &str = "run .ci/setup-interop first";

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// `$HOOKWARDEN_INTEROP_PYTHON`, else `<workspace>/.interop/venv/bin/python`.
pub(crate) fn python() -> PathBuf {
    let p = std::env::var_os("HOOKWARDEN_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".interop/venv/bin/python"));
    assert!(
        p.exists(),
        "interop Python interpreter not found at {}: {SETUP_HINT}",
        p.display()
    );
    p
}

/// `<workspace>/.interop/node_modules`, which must exist.
pub(crate) fn node_modules_dir() -> PathBuf {
    let dir = workspace_root().join(".interop/node_modules");
    assert!(
        dir.join("@octokit/webhooks-methods/package.json").exists(),
        "npm package @octokit/webhooks-methods not found in {}: {SETUP_HINT}",
        dir.display()
    );
    dir
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Run `cmd` with `input` as JSON on stdin; parse stdout as JSON.
pub(crate) fn run_json(mut cmd: Command, what: &str, input: &Value) -> Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}: {SETUP_HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("ModuleNotFoundError")
            || stderr.contains("ImportError")
            || stderr.contains("ERR_MODULE_NOT_FOUND")
            || stderr.contains("Cannot find package")
        {
            panic!("{what}: third-party package missing ({SETUP_HINT}):\n{stderr}");
        }
        panic!("{what} failed ({}):\n{stderr}", out.status);
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: bad JSON output ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Run a Python script from `tests/interop/` in the interop venv.
pub(crate) fn run_python(script_name: &str, input: &Value) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.arg(script(script_name));
    match run_json(cmd, script_name, input) {
        Value::Array(v) => v,
        other => panic!("{script_name}: expected a JSON list, got {other}"),
    }
}

/// Run an ES module from `tests/interop/` with node, resolving bare imports from
/// `<workspace>/.interop/node_modules` (the module source is evaluated with the
/// `.interop` directory as working directory).
pub(crate) fn run_node(script_name: &str, input: &Value) -> Vec<Value> {
    let modules = node_modules_dir();
    let node = std::env::var_os("HOOKWARDEN_INTEROP_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"));
    let source = std::fs::read_to_string(script(script_name)).expect("read node script");
    let mut cmd = Command::new(node);
    cmd.current_dir(modules.parent().expect("parent"))
        .arg("--input-type=module")
        .arg("--eval")
        .arg(source);
    match run_json(cmd, script_name, input) {
        Value::Array(v) => v,
        other => panic!("{script_name}: expected a JSON list, got {other}"),
    }
}
