//! The event-type catalogue's schemas: compiled once, kept in memory, checked on publish.
//!
//! Schemas are bounded when written (size, nesting depth) and compiled with no way to fetch
//! anything (every `$ref` outside the schema is refused: the retriever answers nothing, and the
//! crate is built without its HTTP and file resolvers) and with the `regex` engine for
//! `pattern`, which runs in linear time (no backtracking, so no catastrophic pattern).

use hookwarden_store::{EventTypeStore, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest schema, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of a schema (or an example).
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most validated types kept compiled (the catalogue may hold more; past this, publishing an
/// unlisted type is not validated and a warning is logged).
pub const MAX_VALIDATED_TYPES: usize = 10_000;
/// Compiled regular expressions stay under this size each.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// Refuses every external reference: schemas never fetch anything.
struct NoRetrieve;

impl jsonschema::Retrieve for NoRetrieve {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "{} is not fetched: schemas must be self-contained",
            uri.as_str()
        )
        .into())
    }
}

/// How deep `v` nests (a scalar is 0).
pub fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Compiles a schema within the bounds; the error says why not (for a 422).
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    let text_len = serde_json::to_string(schema)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if text_len > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the schema is larger than {MAX_SCHEMA_BYTES} bytes"
        ));
    }
    if depth(schema) > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
        ));
    }
    if !schema.is_object() && !schema.is_boolean() {
        return Err("a schema is a JSON object (or a boolean)".into());
    }
    jsonschema::options()
        .with_retriever(NoRetrieve)
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT))
        .build(schema)
        .map_err(|e| format!("the schema is not valid: {e}"))
}

/// The first reason `payload` does not match, in a sentence with its location.
pub fn first_error(v: &jsonschema::Validator, payload: &Value) -> Option<String> {
    v.validate(payload).err().map(|e| {
        let at = e.instance_path().to_string();
        if at.is_empty() {
            e.to_string()
        } else {
            format!("at {at}: {e}")
        }
    })
}

struct Loaded {
    at: Instant,
    validators: Arc<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The compiled validators of the catalogue's validated types, reloaded after `ttl` or a
/// change made here.
pub struct Catalogue {
    store: Arc<dyn EventTypeStore>,
    ttl: Duration,
    loaded: RwLock<Option<Loaded>>,
    loading: tokio::sync::Mutex<()>,
}

impl Catalogue {
    pub fn new(store: Arc<dyn EventTypeStore>, ttl: Duration) -> Catalogue {
        Catalogue {
            store,
            ttl,
            loaded: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// After a change to the catalogue (reloaded at the next check).
    pub fn changed(&self) {
        if let Ok(mut l) = self.loaded.write() {
            *l = None;
        }
    }

    fn current(&self) -> Option<Arc<HashMap<String, Arc<jsonschema::Validator>>>> {
        let l = self.loaded.read().ok()?;
        let l = l.as_ref()?;
        (l.at.elapsed() < self.ttl).then(|| l.validators.clone())
    }

    async fn validators(
        &self,
    ) -> Result<Arc<HashMap<String, Arc<jsonschema::Validator>>>, StoreError> {
        if let Some(v) = self.current() {
            return Ok(v);
        }
        let _guard = self.loading.lock().await;
        if let Some(v) = self.current() {
            return Ok(v);
        }
        let types = self
            .store
            .validated_event_types(MAX_VALIDATED_TYPES)
            .await?;
        let mut map = HashMap::with_capacity(types.len());
        for t in types {
            let Some(text) = t.schema.as_deref() else {
                continue;
            };
            match serde_json::from_str::<Value>(text)
                .map_err(|e| e.to_string())
                .and_then(|s| compile(&s))
            {
                Ok(v) => {
                    map.insert(t.name, Arc::new(v));
                }
                // Stored by an earlier version with other bounds: not enforced, said loudly.
                Err(e) => {
                    tracing::error!(event_type = %t.name, error = %e, "an event type's schema cannot be used")
                }
            }
        }
        let validators = Arc::new(map);
        if let Ok(mut l) = self.loaded.write() {
            *l = Some(Loaded {
                at: Instant::now(),
                validators: validators.clone(),
            });
        }
        Ok(validators)
    }

    /// `Ok(Err(reason))` when the catalogue validates `event_type` and `payload` (JSON text)
    /// does not match its schema.
    pub async fn check(
        &self,
        event_type: &str,
        payload: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let validators = self.validators().await?;
        let Some(v) = validators.get(event_type) else {
            return Ok(Ok(()));
        };
        let value: Value = match serde_json::from_str(payload) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("the payload is not JSON: {e}"))),
        };
        Ok(match first_error(v, &value) {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_are_bounded_and_never_fetch() {
        let v = compile(&json!({"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer", "minimum": 0}}}))
        .unwrap();
        assert!(first_error(&v, &json!({"amount": 3})).is_none());
        let e = first_error(&v, &json!({"amount": -1})).unwrap();
        assert!(e.contains("/amount"), "{e}");
        assert!(first_error(&v, &json!({})).unwrap().contains("amount"));
        // Remote and file references are refused when the schema is compiled.
        for r in [
            "https://example.com/s.json",
            "file:///etc/passwd",
            "http://127.0.0.1:1/x",
        ] {
            assert!(compile(&json!({"$ref": r})).is_err(), "{r}");
        }
        // Internal references work.
        let v = compile(&json!({"$defs": {"n": {"type": "number"}}, "$ref": "#/$defs/n"})).unwrap();
        assert!(first_error(&v, &json!("x")).is_some());
        // Size and depth.
        let mut deep = json!({"type": "object"});
        for _ in 0..40 {
            deep = json!({"properties": {"a": deep}});
        }
        assert!(compile(&deep).unwrap_err().contains("deeper"));
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(compile(&big).unwrap_err().contains("larger"));
        assert!(compile(&json!(3)).is_err());
        // A pattern that backtracks catastrophically elsewhere runs in linear time here.
        let v = compile(&json!({"type": "string", "pattern": "^(a+)+$"})).unwrap();
        let started = std::time::Instant::now();
        let input = format!("{}!", "a".repeat(100_000));
        assert!(first_error(&v, &json!(input)).is_some());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Look-arounds and back-references need backtracking: refused.
        assert!(compile(&json!({"pattern": "(a)\\1"})).is_err());
    }
}
