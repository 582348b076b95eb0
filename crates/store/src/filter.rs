//! Payload filters: which events an endpoint receives beyond its event types (docs/filters.md).
//!
//! A filter is a JSON document matched against the event as the receiver sees it: `type` (the
//! event type) and `data` (the payload). It is compiled once ([`PayloadFilter::compile`],
//! bounded in size, depth, conditions, list lengths and regular expressions) and evaluated
//! without allocating per condition. Evaluation visits each value of the event at most once per
//! condition (no implicit fan-out through arrays; `$elemMatch` walks one array), and regular
//! expressions use the `regex` engine (linear time), so its cost is bounded by the filter's size
//! times the payload's.
//!
//! Both backends apply filters inside the transaction that writes an event's deliveries (the
//! filter read is the one committed with the subscription); a stored filter that no longer
//! compiles matches nothing: a filter may be how a customer is kept to its own events, so it
//! fails closed.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bounds of a filter, checked when it is compiled.
pub mod limits {
    /// The filter's JSON text.
    pub const MAX_BYTES: usize = 16 * 1024;
    /// Nesting of `$and`, `$or`, `$nor`, `$not` and `$elemMatch`.
    pub const MAX_DEPTH: usize = 16;
    /// Conditions in all (each operator on a path counts one).
    pub const MAX_CONDITIONS: usize = 128;
    /// Segments of one path.
    pub const MAX_PATH_SEGMENTS: usize = 32;
    /// Values of one `$in` or `$nin` list.
    pub const MAX_LIST: usize = 256;
    /// `$regex` patterns in one filter.
    pub const MAX_REGEXES: usize = 16;
    /// Bytes of one `$regex` pattern.
    pub const MAX_PATTERN_BYTES: usize = 1024;
    /// The compiled size of one pattern (the `regex` crate's own bound).
    pub const REGEX_SIZE: usize = 256 * 1024;
}

/// Why a filter was refused, with where in it (a JSON path such as `$.$or[1].data.amount`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct FilterError {
    pub at: String,
    pub message: String,
}

/// A compiled payload filter.
#[derive(Debug)]
pub struct PayloadFilter {
    root: Node,
}

#[derive(Debug)]
enum Node {
    /// Every part holds (an object's keys; `$and`).
    All(Vec<Node>),
    Any(Vec<Node>),
    /// None holds (`$nor`; `$not` is a `$nor` of one).
    None(Vec<Node>),
    Field {
        path: Vec<String>,
        conds: Vec<Cond>,
    },
}

#[derive(Debug)]
enum Cond {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(JsonType),
    Regex(regex::Regex),
    Prefix(String),
    Suffix(String),
    Contains(Value),
    Size(u64),
    /// Some element of the array matches.
    ElemMatch(Box<Elem>),
    /// The conditions do not all hold (a missing value satisfies it).
    Not(Vec<Cond>),
}

#[derive(Debug)]
enum Elem {
    /// Conditions on the element itself (`{"$gte": 80}`).
    Conds(Vec<Cond>),
    /// A filter with the element as its root (`{"sku": "a-1"}`).
    Filter(Node),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Number,
    Integer,
    String,
    Array,
    Object,
}

const FIELD_OPS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$regex",
    "$prefix",
    "$suffix",
    "$contains",
    "$size",
    "$elemMatch",
    "$not",
];

struct Compiler {
    conditions: usize,
    regexes: usize,
}

impl PayloadFilter {
    /// Compiles a filter's JSON text (as stored).
    pub fn compile_text(text: &str) -> Result<PayloadFilter, FilterError> {
        if text.len() > limits::MAX_BYTES {
            return Err(err(
                "$",
                format!("a filter is at most {} bytes", limits::MAX_BYTES),
            ));
        }
        let v: Value =
            serde_json::from_str(text).map_err(|e| err("$", format!("not JSON: {e}")))?;
        PayloadFilter::compile(&v)
    }

    /// Compiles a filter document. Its top-level paths start at `type` or `data`.
    pub fn compile(v: &Value) -> Result<PayloadFilter, FilterError> {
        let size = serde_json::to_string(v)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > limits::MAX_BYTES {
            return Err(err(
                "$",
                format!("a filter is at most {} bytes", limits::MAX_BYTES),
            ));
        }
        let Value::Object(m) = v else {
            return Err(err("$", "a filter is a JSON object"));
        };
        if m.is_empty() {
            return Err(err("$", "a filter needs at least one condition"));
        }
        let mut c = Compiler {
            conditions: 0,
            regexes: 0,
        };
        let root = c.node(m, "$", 0, true)?;
        Ok(PayloadFilter { root })
    }

    /// Whether an event of this type and payload passes.
    pub fn matches(&self, event_type: &str, data: &Value) -> bool {
        let root = Root::Event {
            event_type: Value::String(event_type.to_owned()),
            data,
        };
        eval_node(&self.root, &root)
    }
}

fn err(at: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        at: at.to_owned(),
        message: message.into(),
    }
}

impl Compiler {
    fn count(&mut self, at: &str) -> Result<(), FilterError> {
        self.conditions += 1;
        if self.conditions > limits::MAX_CONDITIONS {
            return Err(err(
                at,
                format!("a filter has at most {} conditions", limits::MAX_CONDITIONS),
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        m: &Map<String, Value>,
        at: &str,
        depth: usize,
        top: bool,
    ) -> Result<Node, FilterError> {
        if depth > limits::MAX_DEPTH {
            return Err(err(
                at,
                format!("filters nest at most {} deep", limits::MAX_DEPTH),
            ));
        }
        let mut parts = Vec::with_capacity(m.len());
        for (k, v) in m {
            let here = format!("{at}.{k}");
            match k.as_str() {
                "$and" | "$or" | "$nor" => {
                    let Value::Array(items) = v else {
                        return Err(err(&here, format!("{k} takes a list of filters")));
                    };
                    if items.is_empty() {
                        return Err(err(&here, format!("{k} needs at least one filter")));
                    }
                    let mut nodes = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let at_i = format!("{here}[{i}]");
                        let Value::Object(im) = item else {
                            return Err(err(&at_i, "a filter is a JSON object"));
                        };
                        if im.is_empty() {
                            return Err(err(&at_i, "a filter needs at least one condition"));
                        }
                        nodes.push(self.node(im, &at_i, depth + 1, top)?);
                    }
                    parts.push(match k.as_str() {
                        "$and" => Node::All(nodes),
                        "$or" => Node::Any(nodes),
                        _ => Node::None(nodes),
                    });
                }
                "$not" => {
                    let Value::Object(im) = v else {
                        return Err(err(&here, "$not takes a filter"));
                    };
                    if im.is_empty() {
                        return Err(err(&here, "a filter needs at least one condition"));
                    }
                    parts.push(Node::None(vec![self.node(im, &here, depth + 1, top)?]));
                }
                op if op.starts_with('$') => {
                    return Err(err(
                        &here,
                        format!(
                            "unknown operator {op} here (a filter's keys are paths, $and, $or, $nor or $not)"
                        ),
                    ));
                }
                path => {
                    let segs = parse_path(path).map_err(|m| err(&here, m))?;
                    if top && !matches!(segs.first().map(String::as_str), Some("type" | "data")) {
                        return Err(err(
                            &here,
                            "paths start at `data` (the payload) or `type` (the event type)",
                        ));
                    }
                    let conds = self.conds(v, &here, depth)?;
                    parts.push(Node::Field { path: segs, conds });
                }
            }
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap_or(Node::All(Vec::new()))
        } else {
            Node::All(parts)
        })
    }

    /// The conditions on one value: an object of operators, or a literal (equality).
    fn conds(&mut self, v: &Value, at: &str, depth: usize) -> Result<Vec<Cond>, FilterError> {
        match v {
            Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')) => {
                let mut out = Vec::with_capacity(m.len());
                for (op, arg) in m {
                    let here = format!("{at}.{op}");
                    self.count(&here)?;
                    out.push(self.cond(op, arg, &here, depth)?);
                }
                Ok(out)
            }
            Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => Err(err(
                at,
                "an object mixes operators and plain keys (use {\"$eq\": {…}} to compare with an object)",
            )),
            literal => {
                self.count(at)?;
                Ok(vec![Cond::Eq(literal.clone())])
            }
        }
    }

    fn cond(&mut self, op: &str, arg: &Value, at: &str, depth: usize) -> Result<Cond, FilterError> {
        let list = |arg: &Value| -> Result<Vec<Value>, FilterError> {
            match arg {
                Value::Array(items) if items.len() <= limits::MAX_LIST => Ok(items.clone()),
                Value::Array(_) => Err(err(at, format!("at most {} values", limits::MAX_LIST))),
                _ => Err(err(at, format!("{op} takes a list"))),
            }
        };
        let string = |arg: &Value| -> Result<String, FilterError> {
            match arg {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err(at, format!("{op} takes a string"))),
            }
        };
        let ordered = |arg: &Value| -> Result<Value, FilterError> {
            match arg {
                Value::Number(_) | Value::String(_) => Ok(arg.clone()),
                _ => Err(err(at, format!("{op} compares with a number or a string"))),
            }
        };
        Ok(match op {
            "$eq" => Cond::Eq(arg.clone()),
            "$ne" => Cond::Ne(arg.clone()),
            "$gt" => Cond::Gt(ordered(arg)?),
            "$gte" => Cond::Gte(ordered(arg)?),
            "$lt" => Cond::Lt(ordered(arg)?),
            "$lte" => Cond::Lte(ordered(arg)?),
            "$in" => Cond::In(list(arg)?),
            "$nin" => Cond::Nin(list(arg)?),
            "$exists" => match arg {
                Value::Bool(b) => Cond::Exists(*b),
                _ => return Err(err(at, "$exists takes true or false")),
            },
            "$type" => Cond::Type(match string(arg)?.as_str() {
                "null" => JsonType::Null,
                "boolean" => JsonType::Boolean,
                "number" => JsonType::Number,
                "integer" => JsonType::Integer,
                "string" => JsonType::String,
                "array" => JsonType::Array,
                "object" => JsonType::Object,
                other => {
                    return Err(err(
                        at,
                        format!(
                            "unknown type {other:?} (null, boolean, number, integer, string, array, object)"
                        ),
                    ));
                }
            }),
            "$regex" => {
                let pattern = string(arg)?;
                if pattern.len() > limits::MAX_PATTERN_BYTES {
                    return Err(err(
                        at,
                        format!("a pattern is at most {} bytes", limits::MAX_PATTERN_BYTES),
                    ));
                }
                self.regexes += 1;
                if self.regexes > limits::MAX_REGEXES {
                    return Err(err(
                        at,
                        format!("a filter has at most {} patterns", limits::MAX_REGEXES),
                    ));
                }
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(limits::REGEX_SIZE)
                    .dfa_size_limit(limits::REGEX_SIZE)
                    .nest_limit(32)
                    .build()
                    .map_err(|e| err(at, format!("not a valid pattern: {e}")))?;
                Cond::Regex(re)
            }
            "$prefix" => Cond::Prefix(string(arg)?),
            "$suffix" => Cond::Suffix(string(arg)?),
            "$contains" => Cond::Contains(arg.clone()),
            "$size" => match arg.as_u64() {
                Some(n) => Cond::Size(n),
                None => return Err(err(at, "$size takes a whole number")),
            },
            "$not" => {
                if depth + 1 > limits::MAX_DEPTH {
                    return Err(err(
                        at,
                        format!("filters nest at most {} deep", limits::MAX_DEPTH),
                    ));
                }
                match arg {
                    Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')) => {
                        Cond::Not(self.conds(arg, at, depth + 1)?)
                    }
                    _ => return Err(err(at, "$not takes an object of operators")),
                }
            }
            "$elemMatch" => {
                if depth + 1 > limits::MAX_DEPTH {
                    return Err(err(
                        at,
                        format!("filters nest at most {} deep", limits::MAX_DEPTH),
                    ));
                }
                let Value::Object(m) = arg else {
                    return Err(err(at, "$elemMatch takes an object"));
                };
                if m.is_empty() {
                    return Err(err(at, "$elemMatch needs at least one condition"));
                }
                if m.keys().all(|k| FIELD_OPS.contains(&k.as_str())) {
                    Cond::ElemMatch(Box::new(Elem::Conds(self.conds(arg, at, depth + 1)?)))
                } else {
                    Cond::ElemMatch(Box::new(Elem::Filter(self.node(
                        m,
                        at,
                        depth + 1,
                        false,
                    )?)))
                }
            }
            other => {
                return Err(err(
                    at,
                    format!("unknown operator {other} (one of {})", FIELD_OPS.join(", ")),
                ));
            }
        })
    }
}

/// `data.items.0.sku` → `["data", "items", "0", "sku"]`; `\.` is a dot inside a key, `\\` a
/// backslash.
fn parse_path(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(c @ ('.' | '\\')) => cur.push(c),
                _ => return Err("`\\` escapes only `.` and `\\` in a path".into()),
            },
            '.' => {
                if cur.is_empty() {
                    return Err("a path has an empty segment".into());
                }
                segs.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err("a path has an empty segment".into());
    }
    segs.push(cur);
    if segs.len() > limits::MAX_PATH_SEGMENTS {
        return Err(format!(
            "a path has at most {} segments",
            limits::MAX_PATH_SEGMENTS
        ));
    }
    Ok(segs)
}

enum Root<'a> {
    Event { event_type: Value, data: &'a Value },
    Value(&'a Value),
}

fn step<'a>(v: &'a Value, seg: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => {
            // Only plain decimal indexes ("01" or "+1" are not indexes).
            if seg.len() > 1 && seg.starts_with('0') {
                return None;
            }
            if !seg.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            seg.parse::<usize>().ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

fn resolve<'a>(root: &'a Root<'a>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = match root {
        Root::Event { event_type, data } => match first.as_str() {
            "type" => event_type,
            "data" => *data,
            _ => return None,
        },
        Root::Value(v) => step(v, first)?,
    };
    for seg in rest {
        v = step(v, seg)?;
    }
    Some(v)
}

fn eval_node(node: &Node, root: &Root<'_>) -> bool {
    match node {
        Node::All(parts) => parts.iter().all(|n| eval_node(n, root)),
        Node::Any(parts) => parts.iter().any(|n| eval_node(n, root)),
        Node::None(parts) => !parts.iter().any(|n| eval_node(n, root)),
        Node::Field { path, conds } => {
            let v = resolve(root, path);
            conds.iter().all(|c| eval_cond(c, v))
        }
    }
}

fn eval_cond(c: &Cond, v: Option<&Value>) -> bool {
    match c {
        Cond::Exists(want) => v.is_some() == *want,
        Cond::Ne(x) => v.is_none_or(|v| !json_eq(v, x)),
        Cond::Nin(xs) => v.is_none_or(|v| !xs.iter().any(|x| json_eq(v, x))),
        Cond::Not(cs) => !cs.iter().all(|c| eval_cond(c, v)),
        _ => match v {
            None => false,
            Some(v) => eval_present(c, v),
        },
    }
}

fn eval_present(c: &Cond, v: &Value) -> bool {
    use std::cmp::Ordering::*;
    match c {
        Cond::Eq(x) => json_eq(v, x),
        Cond::Gt(x) => order(v, x) == Some(Greater),
        Cond::Gte(x) => matches!(order(v, x), Some(Greater | Equal)),
        Cond::Lt(x) => order(v, x) == Some(Less),
        Cond::Lte(x) => matches!(order(v, x), Some(Less | Equal)),
        Cond::In(xs) => xs.iter().any(|x| json_eq(v, x)),
        Cond::Type(t) => match t {
            JsonType::Null => v.is_null(),
            JsonType::Boolean => v.is_boolean(),
            JsonType::Number => v.is_number(),
            JsonType::Integer => match v {
                Value::Number(n) => {
                    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                _ => false,
            },
            JsonType::String => v.is_string(),
            JsonType::Array => v.is_array(),
            JsonType::Object => v.is_object(),
        },
        Cond::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        Cond::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        Cond::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
        Cond::Contains(x) => match (v, x) {
            (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
            (Value::Array(items), x) => items.iter().any(|i| json_eq(i, x)),
            _ => false,
        },
        Cond::Size(n) => match v {
            Value::Array(items) => items.len() as u64 == *n,
            _ => false,
        },
        Cond::ElemMatch(e) => match v {
            Value::Array(items) => items.iter().any(|item| match &**e {
                Elem::Conds(cs) => cs.iter().all(|c| eval_cond(c, Some(item))),
                Elem::Filter(n) => eval_node(n, &Root::Value(item)),
            }),
            _ => false,
        },
        Cond::Exists(_) | Cond::Ne(_) | Cond::Nin(_) | Cond::Not(_) => eval_cond(c, Some(v)),
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => order(a, b) == Some(std::cmp::Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// Numbers by value, strings by their bytes (RFC 3339 times in one offset order as times);
/// anything else (or a mix) is not ordered.
fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => Some(i.cmp(&j)),
                _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

/// Compiled filters by their text, shared by a store's writes (at most [`FilterCache::CAP`]
/// kept; past it, the cache starts again).
#[derive(Debug, Default)]
pub(crate) struct FilterCache {
    compiled: Mutex<HashMap<String, Option<Arc<PayloadFilter>>>>,
}

impl FilterCache {
    const CAP: usize = 1024;

    fn get(&self, text: &str) -> Option<Arc<PayloadFilter>> {
        let mut map = match self.compiled.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(f) = map.get(text) {
            return f.clone();
        }
        let f = match PayloadFilter::compile_text(text) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!(error = %e, "a stored payload filter does not compile; it matches nothing");
                None
            }
        };
        if map.len() >= Self::CAP {
            map.clear();
        }
        map.insert(text.to_owned(), f.clone());
        f
    }

    /// Whether an event passes a stored filter. The payload is parsed at most once per event
    /// (`parsed` holds it between calls); a payload that does not parse, or a filter that does
    /// not compile, matches nothing.
    pub(crate) fn admits(
        &self,
        filter: &str,
        event_type: &str,
        payload: &str,
        parsed: &mut Option<Option<Value>>,
    ) -> bool {
        let Some(f) = self.get(filter) else {
            return false;
        };
        let data = parsed.get_or_insert_with(|| serde_json::from_str(payload).ok());
        match data {
            Some(data) => f.matches(event_type, data),
            None => false,
        }
    }
}

/// The compiled filters of this process (both backends, every store).
static FILTERS: std::sync::LazyLock<FilterCache> = std::sync::LazyLock::new(FilterCache::default);

/// A delivery target as a write reads it: endpoint id, enabled, its filter.
pub(crate) type Target = (String, bool, Option<String>);

/// The targets whose filter admits the event (those without a filter all do), as (id, enabled).
/// Each one kept out is counted in `hookwarden_events_filtered_total{endpoint_id}`.
pub(crate) fn admitted(
    targets: Vec<Target>,
    event_type: &str,
    payload: &str,
) -> Vec<(String, bool)> {
    let mut parsed = None;
    targets
        .into_iter()
        .filter_map(|(id, enabled, filter)| match filter {
            Some(f) if !FILTERS.admits(&f, event_type, payload, &mut parsed) => {
                metrics::counter!("hookwarden_events_filtered_total", "endpoint_id" => id)
                    .increment(1);
                None
            }
            _ => Some((id, enabled)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: Value, data: Value) -> bool {
        PayloadFilter::compile(&filter)
            .unwrap()
            .matches("invoice.paid", &data)
    }

    fn refused(filter: Value) -> FilterError {
        PayloadFilter::compile(&filter).unwrap_err()
    }

    #[test]
    fn literals_compare_by_json_value() {
        let d = json!({"amount": 100, "currency": "EUR", "tags": ["a", "b"], "n": null});
        assert!(m(json!({"data.amount": 100}), d.clone()));
        assert!(m(json!({"data.amount": 100.0}), d.clone()));
        assert!(!m(json!({"data.amount": "100"}), d.clone()));
        assert!(m(json!({"data.tags": ["a", "b"]}), d.clone()));
        assert!(!m(json!({"data.tags": ["b", "a"]}), d.clone()));
        assert!(m(json!({"data.n": null}), d.clone()));
        assert!(!m(json!({"data.missing": null}), d.clone()));
        assert!(m(
            json!({"type": "invoice.paid", "data.currency": "EUR"}),
            d.clone()
        ));
        assert!(!m(json!({"type": "invoice.created"}), d));
    }

    #[test]
    fn operators() {
        let d = json!({"amount": 150, "email": "Ann@Example.com", "items": [
            {"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 9}], "scores": [10, 85],
            "at": "2026-12-08T10:00:00Z", "big": 18446744073709551615u64});
        assert!(m(
            json!({"data.amount": {"$gte": 100, "$lt": 200}}),
            d.clone()
        ));
        assert!(!m(json!({"data.amount": {"$gt": 150}}), d.clone()));
        assert!(m(json!({"data.amount": {"$in": [1, 150]}}), d.clone()));
        assert!(m(json!({"data.amount": {"$nin": [1, 2]}}), d.clone()));
        assert!(m(json!({"data.nope": {"$nin": [1, 2]}}), d.clone()));
        assert!(m(json!({"data.nope": {"$ne": 1}}), d.clone()));
        assert!(m(json!({"data.nope": {"$exists": false}}), d.clone()));
        assert!(!m(json!({"data.amount": {"$exists": false}}), d.clone()));
        assert!(m(
            json!({"data.email": {"$regex": "(?i)@example\\.com$"}}),
            d.clone()
        ));
        assert!(m(
            json!({"data.email": {"$prefix": "Ann", "$suffix": ".com"}}),
            d.clone()
        ));
        assert!(m(json!({"data.email": {"$contains": "@"}}), d.clone()));
        assert!(m(json!({"data.scores": {"$contains": 85}}), d.clone()));
        assert!(m(json!({"data.items": {"$size": 2}}), d.clone()));
        assert!(m(json!({"data.items.1.sku": "b-2"}), d.clone()));
        assert!(
            !m(json!({"data.items.sku": "b-2"}), d.clone()),
            "no fan-out"
        );
        assert!(!m(json!({"data.items.01.sku": "b-2"}), d.clone()));
        assert!(m(
            json!({"data.items": {"$elemMatch": {"sku": "b-2", "qty": {"$gt": 5}}}}),
            d.clone()
        ));
        assert!(!m(
            json!({"data.items": {"$elemMatch": {"sku": "a-1", "qty": {"$gt": 5}}}}),
            d.clone()
        ));
        assert!(m(
            json!({"data.scores": {"$elemMatch": {"$gte": 80, "$lt": 90}}}),
            d.clone()
        ));
        assert!(m(
            json!({"data.at": {"$gte": "2026-12-01T00:00:00Z"}}),
            d.clone()
        ));
        assert!(m(json!({"data.amount": {"$type": "integer"}}), d.clone()));
        assert!(m(json!({"data.big": {"$gt": 1}}), d.clone()));
        assert!(m(
            json!({"data.amount": {"$not": {"$gt": 1000}}}),
            d.clone()
        ));
        assert!(m(json!({"data.nope": {"$not": {"$gt": 1000}}}), d.clone()));
        assert!(
            !m(json!({"data.amount": {"$gt": "100"}}), d.clone()),
            "no mixed order"
        );
    }

    #[test]
    fn combinators() {
        let d = json!({"amount": 5, "country": "FR"});
        assert!(m(
            json!({"$or": [{"data.amount": {"$gt": 10}}, {"data.country": "FR"}]}),
            d.clone()
        ));
        assert!(!m(
            json!({"$and": [{"data.amount": {"$gt": 10}}, {"data.country": "FR"}]}),
            d.clone()
        ));
        assert!(m(
            json!({"$nor": [{"data.amount": {"$gt": 10}}, {"data.country": "DE"}]}),
            d.clone()
        ));
        assert!(!m(json!({"$not": {"data.country": "FR"}}), d.clone()));
        assert!(m(json!({"data.a\\.b": 1}), json!({"a.b": 1})));
    }

    #[test]
    fn bad_filters_are_refused_with_where() {
        assert_eq!(refused(json!([])).at, "$");
        assert_eq!(refused(json!({})).at, "$");
        assert!(
            refused(json!({"amount": 1}))
                .message
                .contains("start at `data`")
        );
        assert_eq!(refused(json!({"data.x": {"$wat": 1}})).at, "$.data.x.$wat");
        assert!(
            refused(json!({"data.x": {"$gt": true}}))
                .message
                .contains("number or a string")
        );
        assert!(
            refused(json!({"data.x": {"$eq": 1, "y": 2}}))
                .message
                .contains("mixes")
        );
        assert!(refused(json!({"$or": []})).message.contains("at least one"));
        assert!(refused(json!({"$or": [1]})).message.contains("JSON object"));
        assert!(
            refused(json!({"data.x": {"$regex": "("}}))
                .message
                .contains("pattern")
        );
        assert!(
            refused(json!({"data..x": 1}))
                .message
                .contains("empty segment")
        );
        assert!(
            refused(json!({"data.x": {"$in": vec![1; 300]}}))
                .message
                .contains("at most")
        );
        let many: Map<String, Value> = (0..200).map(|i| (format!("data.f{i}"), json!(i))).collect();
        assert!(refused(Value::Object(many)).message.contains("conditions"));
        let mut deep = json!({"data.x": 1});
        for _ in 0..20 {
            deep = json!({"$not": deep});
        }
        assert!(refused(deep).message.contains("nest"));
        let regexes: Map<String, Value> = (0..20)
            .map(|i| (format!("data.f{i}"), json!({"$regex": "a"})))
            .collect();
        assert!(refused(Value::Object(regexes)).message.contains("patterns"));
        assert!(
            refused(json!({"data.x": {"$regex": "a{1000}{1000}"}}))
                .message
                .contains("pattern")
        );
        let big = "x".repeat(limits::MAX_BYTES);
        assert!(refused(json!({"data.x": big})).message.contains("bytes"));
        assert!(PayloadFilter::compile_text("{").is_err());
    }

    #[test]
    fn a_filter_that_does_not_compile_matches_nothing() {
        let cache = FilterCache::default();
        let mut parsed = None;
        assert!(!cache.admits("{\"data.x\":{\"$wat\":1}}", "t", "{\"x\":1}", &mut parsed));
        let mut parsed = None;
        assert!(cache.admits("{\"data.x\":1}", "t", "{\"x\":1}", &mut parsed));
        let mut parsed = None;
        assert!(!cache.admits("{\"data.x\":1}", "t", "not json", &mut parsed));
    }

    #[test]
    fn deep_payloads_and_wide_arrays_stay_cheap() {
        // 100,000 elements, a filter on each: one pass each.
        let items: Vec<Value> = (0..100_000).map(|i| json!({"id": i})).collect();
        let d = json!({ "items": items });
        let f =
            PayloadFilter::compile(&json!({"data.items": {"$elemMatch": {"id": 99_999}}})).unwrap();
        assert!(f.matches("t", &d));
        let f = PayloadFilter::compile(&json!({"data.items": {"$contains": {"id": -1}}})).unwrap();
        assert!(!f.matches("t", &d));
    }
}
