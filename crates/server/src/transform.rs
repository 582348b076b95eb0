//! Endpoint transformations (docs/transformations.md): a script in Rhai, a small sandboxed
//! language, that changes a request's payload and adds headers before the request is signed and
//! sent, or cancels it.
//!
//! The script defines `fn handler(webhook)` and returns the webhook. It sees `event_id`,
//! `event_type`, `timestamp`, `url` and `payload` (the body the receiver would get) and may
//! change `payload`, add `headers` (never a header Hookwarden sets) and set `cancel`.
//!
//! Bounded: the engine has no modules (nothing is imported or read), no `eval`, strict
//! variables, and limits on operations, call depth, expression depth, variables, functions and
//! the size of every string, array and map; a run also stops at a wall-clock deadline. A run
//! happens on a blocking thread, never on the server's event loop. `print` and `debug` lines
//! are kept (bounded) for the dry run, never written anywhere.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, Scope};

/// Bounds of a transformation.
pub mod limits {
    use std::time::Duration;

    /// The script's text.
    pub const MAX_SCRIPT_BYTES: usize = 64 * 1024;
    /// Operations per run (each step of the interpreter counts one).
    pub const MAX_OPERATIONS: u64 = 200_000;
    /// Wall-clock time per run.
    pub const DEADLINE: Duration = Duration::from_millis(250);
    pub const MAX_CALL_LEVELS: usize = 32;
    pub const MAX_EXPR_DEPTH: usize = 64;
    pub const MAX_FN_EXPR_DEPTH: usize = 32;
    pub const MAX_VARIABLES: usize = 64;
    pub const MAX_FUNCTIONS: usize = 64;
    /// Bytes of one string.
    pub const MAX_STRING_BYTES: usize = 1024 * 1024;
    /// Elements of one array, entries of one map (nested ones counted in; the strings a value
    /// holds count together against `MAX_STRING_BYTES`).
    pub const MAX_ARRAY: usize = 20_000;
    pub const MAX_MAP: usize = 20_000;
    /// The body a transformation returns, as JSON.
    pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
    /// Headers a transformation adds.
    pub const MAX_HEADERS: usize = 20;
    /// `print`/`debug` lines kept for the dry run, and bytes per line.
    pub const MAX_LOG_LINES: usize = 50;
    pub const MAX_LOG_LINE_BYTES: usize = 1024;
}

/// Runs at once in this process (each on a blocking thread): the CPU count, at least 2. With the
/// value limits this bounds the memory transformations can hold at any moment.
static SLOTS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    tokio::sync::Semaphore::new(n)
});

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn log_line(s: &str) {
    LOGS.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() < limits::MAX_LOG_LINES {
            l.push(hookwarden_netguard::truncate_str(s, limits::MAX_LOG_LINE_BYTES).to_owned());
        }
    });
}

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut e = Engine::new();
    e.set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
        .set_max_variables(limits::MAX_VARIABLES)
        .set_max_functions(limits::MAX_FUNCTIONS)
        .set_max_string_size(limits::MAX_STRING_BYTES)
        .set_max_array_size(limits::MAX_ARRAY)
        .set_max_map_size(limits::MAX_MAP)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(false);
    e.disable_symbol("eval");
    e.on_print(log_line);
    e.on_debug(|s, _, _| log_line(s));
    e.on_progress(|_ops| {
        let late = DEADLINE.with(|d| d.get().is_some_and(|d| Instant::now() >= d));
        late.then(|| Dynamic::from("deadline"))
    });
    e
});

/// Why a transformation was refused or failed (its message is shown to the endpoint's owner).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(pub String);

/// A compiled transformation.
#[derive(Debug)]
pub struct Transformation {
    ast: AST,
}

/// What a run gets: the request as it would be sent without the transformation.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// RFC 3339.
    pub timestamp: &'a str,
    pub url: &'a str,
    /// The JSON body.
    pub body: &'a [u8],
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transformed {
    /// The JSON body to sign and send.
    pub body: Vec<u8>,
    /// Headers to add (checked: valid, never one Hookwarden sets); they replace headers of the
    /// same name.
    pub headers: http::HeaderMap,
    /// The script cancelled the request: nothing is sent.
    pub cancelled: bool,
    /// `print` and `debug` lines.
    pub logs: Vec<String>,
}

impl Transformation {
    /// Compiles a script: within [`limits::MAX_SCRIPT_BYTES`], valid Rhai with every variable
    /// defined, and a `fn handler(webhook)` of one parameter.
    pub fn compile(script: &str) -> Result<Transformation, TransformError> {
        if script.len() > limits::MAX_SCRIPT_BYTES {
            return Err(TransformError(format!(
                "a transformation is at most {} bytes",
                limits::MAX_SCRIPT_BYTES
            )));
        }
        let ast = ENGINE
            .compile(script)
            .map_err(|e| TransformError(format!("does not compile: {e}")))?;
        let handler = ast
            .iter_functions()
            .any(|f| f.name == "handler" && f.params.len() == 1);
        if !handler {
            return Err(TransformError(
                "a transformation defines fn handler(webhook), which returns the webhook".into(),
            ));
        }
        Ok(Transformation { ast })
    }

    /// Runs the script on the calling thread (use [`Transformation::run_blocking`] from async
    /// code).
    pub fn run(&self, req: &Request<'_>) -> Result<Transformed, TransformError> {
        LOGS.with(|l| l.borrow_mut().clear());
        DEADLINE.with(|d| d.set(Some(Instant::now() + limits::DEADLINE)));
        let result = self.run_inner(req);
        DEADLINE.with(|d| d.set(None));
        let logs = LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()));
        result.map(|mut t| {
            t.logs = logs;
            t
        })
    }

    fn run_inner(&self, req: &Request<'_>) -> Result<Transformed, TransformError> {
        let payload: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| TransformError(format!("the body is not JSON: {e}")))?;
        let mut webhook = rhai::Map::new();
        webhook.insert("event_id".into(), req.event_id.into());
        webhook.insert("event_type".into(), req.event_type.into());
        webhook.insert("timestamp".into(), req.timestamp.into());
        webhook.insert("url".into(), req.url.into());
        webhook.insert(
            "payload".into(),
            rhai::serde::to_dynamic(&payload).map_err(|e| {
                TransformError(format!("the body cannot be given to the script: {e}"))
            })?,
        );
        webhook.insert("headers".into(), rhai::Map::new().into());
        webhook.insert("cancel".into(), false.into());
        let mut scope = Scope::new();
        let out: Dynamic = ENGINE
            .call_fn_with_options(
                CallFnOptions::new().eval_ast(true).rewind_scope(true),
                &mut scope,
                &self.ast,
                "handler",
                (Dynamic::from_map(webhook),),
            )
            .map_err(|e| match *e {
                rhai::EvalAltResult::ErrorTerminated(..) => {
                    TransformError(format!("stopped after {} ms", limits::DEADLINE.as_millis()))
                }
                rhai::EvalAltResult::ErrorTooManyOperations(..) => TransformError(format!(
                    "stopped after {} operations",
                    limits::MAX_OPERATIONS
                )),
                other => TransformError(format!("failed: {other}")),
            })?;
        let Some(mut map) = out.try_cast::<rhai::Map>() else {
            return Err(TransformError(
                "handler must return the webhook (an object map)".into(),
            ));
        };
        let cancelled = match map.remove("cancel") {
            None => false,
            Some(c) => c
                .as_bool()
                .map_err(|_| TransformError("webhook.cancel must be true or false".into()))?,
        };
        let headers = match map.remove("headers") {
            None => http::HeaderMap::new(),
            Some(h) => headers_of(h)?,
        };
        let body = if cancelled {
            Vec::new()
        } else {
            let payload = map
                .remove("payload")
                .ok_or_else(|| TransformError("webhook.payload is missing".into()))?;
            let value: serde_json::Value = rhai::serde::from_dynamic(&payload)
                .map_err(|e| TransformError(format!("webhook.payload cannot be JSON: {e}")))?;
            let body = serde_json::to_vec(&value)
                .map_err(|e| TransformError(format!("webhook.payload cannot be JSON: {e}")))?;
            if body.len() > limits::MAX_BODY_BYTES {
                return Err(TransformError(format!(
                    "the transformed body is over {} bytes",
                    limits::MAX_BODY_BYTES
                )));
            }
            body
        };
        Ok(Transformed {
            body,
            headers,
            cancelled,
            logs: Vec::new(),
        })
    }

    /// Runs the script on a blocking thread, at most [`SLOTS`] at once.
    pub async fn run_blocking(
        self: &Arc<Self>,
        event_id: String,
        event_type: String,
        timestamp: String,
        url: String,
        body: Vec<u8>,
    ) -> Result<Transformed, TransformError> {
        let Ok(_slot) = SLOTS.acquire().await else {
            return Err(TransformError("the transformation stopped".into()));
        };
        let t = self.clone();
        tokio::task::spawn_blocking(move || {
            t.run(&Request {
                event_id: &event_id,
                event_type: &event_type,
                timestamp: &timestamp,
                url: &url,
                body: &body,
            })
        })
        .await
        .unwrap_or_else(|_| Err(TransformError("the transformation stopped".into())))
    }
}

/// The headers a script added: valid names and values, none Hookwarden sets, within bounds.
fn headers_of(h: Dynamic) -> Result<http::HeaderMap, TransformError> {
    let Some(map) = h.try_cast::<rhai::Map>() else {
        return Err(TransformError(
            "webhook.headers must be an object map".into(),
        ));
    };
    if map.len() > limits::MAX_HEADERS {
        return Err(TransformError(format!(
            "a transformation adds at most {} headers",
            limits::MAX_HEADERS
        )));
    }
    let mut out = http::HeaderMap::with_capacity(map.len());
    for (k, v) in map {
        let name = k.to_ascii_lowercase();
        let header = match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if name.len() <= 64 => h,
            _ => return Err(TransformError(format!("{k:?} is not a valid header name"))),
        };
        if crate::api::endpoints::is_reserved_header(&name) {
            return Err(TransformError(format!(
                "header {k:?} is set by Hookwarden and cannot be changed"
            )));
        }
        let v = if v.is_string() {
            v.into_string().unwrap_or_default()
        } else {
            v.to_string()
        };
        let value = match http::HeaderValue::from_str(&v) {
            Ok(value) if v.len() <= 1024 && !v.bytes().any(|b| b < 0x20 && b != b'\t') => value,
            _ => return Err(TransformError(format!("invalid value for header {k:?}"))),
        };
        out.insert(header, value);
    }
    Ok(out)
}

/// The script's time limit, for messages.
pub fn deadline() -> Duration {
    limits::DEADLINE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str, body: &str) -> Result<Transformed, TransformError> {
        Transformation::compile(script)?.run(&Request {
            event_id: "evt_1",
            event_type: "invoice.paid",
            timestamp: "2026-12-08T10:00:00Z",
            url: "https://example.com/hook",
            body: body.as_bytes(),
        })
    }

    #[test]
    fn changes_the_payload_and_adds_headers() {
        let t = run(
            r#"
            fn cents() { 100 }
            fn handler(webhook) {
                webhook.payload.data.amount_eur = webhook.payload.data.amount / cents();
                webhook.payload.remove("timestamp");
                webhook.headers["X-Kind"] = webhook.event_type;
                print(`sending ${webhook.event_id}`);
                webhook
            }"#,
            r#"{"id":"evt_1","type":"invoice.paid","timestamp":"t","data":{"amount":1250}}"#,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["data"]["amount_eur"], 12);
        assert!(v.get("timestamp").is_none());
        assert_eq!(
            t.headers.get("x-kind").and_then(|v| v.to_str().ok()),
            Some("invoice.paid")
        );
        assert_eq!(t.logs, ["sending evt_1"]);
        assert!(!t.cancelled);
    }

    #[test]
    fn cancels() {
        let t = run(
            "fn handler(webhook) { if webhook.payload.data.test { webhook.cancel = true; } webhook }",
            r#"{"data":{"test":true}}"#,
        )
        .unwrap();
        assert!(t.cancelled && t.body.is_empty());
    }

    #[test]
    fn refused_on_write() {
        for (script, want) in [
            ("fn handler(webhook) { webhook", "does not compile"),
            ("fn other(webhook) { webhook }", "fn handler"),
            ("fn handler() { 1 }", "fn handler"),
            (
                "fn handler(webhook) { undefined_variable }",
                "does not compile",
            ),
            ("fn handler(w) { eval(\"1\") }", "does not compile"),
            ("import \"x\" as y; fn handler(w) { w }", "does not compile"),
        ] {
            let e = Transformation::compile(script).unwrap_err();
            assert!(e.0.contains(want), "{script}: {e}");
        }
        let huge = format!(
            "fn handler(w) {{ w }} // {}",
            "x".repeat(limits::MAX_SCRIPT_BYTES)
        );
        assert!(
            Transformation::compile(&huge)
                .unwrap_err()
                .0
                .contains("at most")
        );
    }

    #[test]
    fn bounded_in_time_and_memory() {
        let body = r#"{"data":{}}"#;
        for (script, want) in [
            ("fn handler(w) { loop { } w }", "stopped"),
            (
                "fn handler(w) { let s = \"x\"; loop { s += s; } w }",
                "stopped|failed",
            ),
            (
                "fn handler(w) { let a = []; loop { a.push(a.len()); } w }",
                "stopped|failed",
            ),
            (
                "fn f(n) { f(n + 1) } fn handler(w) { f(0) }",
                "stopped|failed",
            ),
            ("fn handler(w) { 42 }", "must return"),
            (
                "fn handler(w) { w.headers[\"webhook-signature\"] = \"v1,x\"; w }",
                "set by Hookwarden",
            ),
            (
                "fn handler(w) { w.headers[\"x-bad\"] = \"a\\nb\"; w }",
                "invalid value",
            ),
            ("fn handler(w) { w.cancel = 3; w }", "true or false"),
            (
                "fn handler(w) { w.payload = \"x\".pad(3000000, \"y\"); w }",
                "failed",
            ),
        ] {
            let started = Instant::now();
            let e = run(script, body).unwrap_err();
            assert!(want.split('|').any(|w| e.0.contains(w)), "{script}: {e}");
            assert!(started.elapsed() < Duration::from_secs(5), "{script}");
        }
    }
}
