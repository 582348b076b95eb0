//! Fuzz properties of payload filters (`hookwarden_store::filter`), whose text endpoint owners
//! (tenants, with the customer portal) write and whose payloads publishers send.
//!
//! - `compile_text` never panics on any text; an accepted text is at most `MAX_BYTES`.
//! - A filter built from the input (paths, operators, literals, nesting) compiles or is refused
//!   with a located message; a refused one is refused the same way from its text.
//! - Evaluation never panics on any payload (built from the input, or the input's bytes parsed
//!   as JSON) and is deterministic.
//! - Logic holds: `{"$not": F}` matches exactly when `F` does not; `{"$or": [F, G]}` is
//!   `F || G`, `{"$and": [F, G]}` is `F && G`, `{"$nor": [F, G]}` is `!(F || G)`; a filter
//!   compiled from its own text behaves the same.
#![allow(dead_code)]

use hookwarden_store::filter::{PayloadFilter, limits};
use serde_json::{Map, Value, json};

use super::input::Input;

const KEYS: [&str; 6] = ["a", "b", "amount", "items", "0", "x.y"];
const OPS: [&str; 17] = [
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

fn scalar(i: &mut Input<'_>) -> Value {
    match i.u8() % 7 {
        0 => Value::Null,
        1 => Value::Bool(i.bool()),
        2 => json!(i.i64() % 1000),
        3 => json!(f64::from(i.u16()) / 7.0),
        4 => json!(i.u64()),
        5 => Value::String(i.str(12)),
        _ => Value::String(KEYS[usize::from(i.u8()) % KEYS.len()].to_owned()),
    }
}

fn value(i: &mut Input<'_>, depth: u8) -> Value {
    if depth == 0 || i.is_empty() {
        return scalar(i);
    }
    match i.u8() % 4 {
        0 => Value::Array((0..i.u8() % 5).map(|_| value(i, depth - 1)).collect()),
        1 => Value::Object(
            (0..i.u8() % 5)
                .map(|_| (key(i), value(i, depth - 1)))
                .collect::<Map<_, _>>(),
        ),
        _ => scalar(i),
    }
}

fn key(i: &mut Input<'_>) -> String {
    if i.u8().is_multiple_of(4) {
        i.str(6)
    } else {
        KEYS[usize::from(i.u8()) % KEYS.len()].to_owned()
    }
}

fn path(i: &mut Input<'_>, top: bool) -> String {
    let mut p = if top {
        if i.u8().is_multiple_of(8) {
            "type".to_owned()
        } else {
            "data".to_owned()
        }
    } else {
        key(i)
    };
    for _ in 0..i.u8() % 3 {
        p.push('.');
        p.push_str(&key(i).replace('.', "\\."));
    }
    p
}

fn operand(i: &mut Input<'_>, op: &str, depth: u8) -> Value {
    match op {
        "$in" | "$nin" => Value::Array((0..i.u8() % 4).map(|_| scalar(i)).collect()),
        "$exists" => Value::Bool(i.bool()),
        "$type" => json!(
            [
                "null", "boolean", "number", "integer", "string", "array", "object", "x"
            ][usize::from(i.u8()) % 8]
        ),
        "$regex" => Value::String(i.str(10)),
        "$size" => json!(i.u8() % 4),
        "$elemMatch" if depth > 0 => {
            if i.bool() {
                conds(i, depth - 1)
            } else {
                filter(i, depth - 1, false)
            }
        }
        "$not" if depth > 0 => conds(i, depth - 1),
        _ => value(i, 1),
    }
}

fn conds(i: &mut Input<'_>, depth: u8) -> Value {
    let mut m = Map::new();
    for _ in 0..1 + i.u8() % 3 {
        let op = OPS[usize::from(i.u8()) % OPS.len()];
        let v = operand(i, op, depth);
        m.insert(op.to_owned(), v);
    }
    Value::Object(m)
}

fn filter(i: &mut Input<'_>, depth: u8, top: bool) -> Value {
    let mut m = Map::new();
    for _ in 0..1 + i.u8() % 3 {
        match i.u8() % 6 {
            0 if depth > 0 => {
                let op = ["$and", "$or", "$nor"][usize::from(i.u8()) % 3];
                let items = (0..1 + i.u8() % 3)
                    .map(|_| filter(i, depth - 1, top))
                    .collect();
                m.insert(op.to_owned(), Value::Array(items));
            }
            1 if depth > 0 => {
                m.insert("$not".to_owned(), filter(i, depth - 1, top));
            }
            2 => {
                m.insert(path(i, top), value(i, 1));
            }
            _ => {
                m.insert(path(i, top), conds(i, depth));
            }
        }
    }
    Value::Object(m)
}

fn matches(f: &PayloadFilter, ty: &str, data: &Value) -> bool {
    let a = f.matches(ty, data);
    assert_eq!(a, f.matches(ty, data), "evaluation is deterministic");
    a
}

pub(crate) fn check(data: &[u8]) {
    let mut i = Input::new(data);
    let mode = i.u8();
    if mode.is_multiple_of(4) {
        // Arbitrary text.
        let text = String::from_utf8_lossy(i.rest()).into_owned();
        if let Ok(f) = PayloadFilter::compile_text(&text) {
            assert!(text.len() <= limits::MAX_BYTES);
            let payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            matches(&f, "t", &payload);
        }
        return;
    }
    let ty = if i.bool() {
        "invoice.paid".to_owned()
    } else {
        i.str(10)
    };
    let f1 = filter(&mut i, 3, true);
    let f2 = filter(&mut i, 2, true);
    let payloads = [value(&mut i, 4), value(&mut i, 3)];
    let c1 = PayloadFilter::compile(&f1);
    let c2 = PayloadFilter::compile(&f2);
    // The text form compiles the same way.
    let t1 = PayloadFilter::compile_text(&f1.to_string());
    assert_eq!(c1.is_ok(), t1.is_ok(), "{f1}");
    if let Err(e) = &c1 {
        assert!(e.at.starts_with('$') && !e.message.is_empty(), "{e:?}");
        return;
    }
    let (Ok(c1), Ok(t1)) = (c1, t1) else { return };
    for p in &payloads {
        let m1 = matches(&c1, &ty, p);
        assert_eq!(m1, matches(&t1, &ty, p), "text and value forms agree: {f1}");
        if let Ok(not) = PayloadFilter::compile(&json!({"$not": f1})) {
            assert_eq!(matches(&not, &ty, p), !m1, "$not of {f1} on {p}");
        }
        if let Ok(c2) = &c2 {
            let m2 = matches(c2, &ty, p);
            for (op, want) in [("$and", m1 && m2), ("$or", m1 || m2), ("$nor", !(m1 || m2))] {
                let mut m = Map::new();
                m.insert(op.to_owned(), json!([f1, f2]));
                if let Ok(both) = PayloadFilter::compile(&Value::Object(m)) {
                    assert_eq!(matches(&both, &ty, p), want, "{op} of {f1} and {f2} on {p}");
                }
            }
        }
    }
}
