//! Fuzz properties of the outbound schemes (`sign`, `verify`).
//!
//! - `sign` never panics, whatever the secrets, message id, timestamp and body; every value it
//!   returns is a valid HTTP header value.
//! - `verify(sign(x))` holds, with `now` anywhere inside the tolerance (both edges), and fails
//!   with `TIMESTAMP_OUT_OF_TOLERANCE` just outside it; huge `now` and tolerance values never
//!   overflow.
//! - Any single-byte change to the body (for schemes that sign it), to the signature, to the
//!   message id or to the timestamp/date makes verification fail. (A change of letter case is
//!   skipped: hex digits and scheme names are case-insensitive by design.)
//! - With arbitrary headers (the scheme's own names with fuzzed values), `verify` never panics
//!   and never accepts when the secret cannot have produced them... which the fuzzer cannot
//!   forge, so only "never panics" and "an accepted timestamp is within tolerance" are checked.
#![allow(dead_code)]

use base64::Engine as _;
use hookwarden_signatures::{Outbound, Scheme, VerifyError, sign, verify};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::input::Input;

/// Header names the outbound schemes read, for fuzzed headers.
const NAMES: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-hookwarden-auth-date",
    "x-hookwarden-auth-signature",
];

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let scheme = Scheme::ALL[usize::from(input.u8()) % Scheme::ALL.len()];
    let mode = input.u8();
    if mode.is_multiple_of(4) {
        arbitrary_headers(scheme, &mut input);
        return;
    }
    let nsecrets = usize::from(input.u8() % 3) + 1;
    let mut secrets = Vec::new();
    for _ in 0..nsecrets {
        let raw = input.bytes(48);
        secrets.push(if input.bool() {
            // A well-formed Standard Webhooks secret.
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        } else {
            String::from_utf8_lossy(raw).into_owned()
        });
    }
    let msg_id = input.str(40);
    let timestamp = match input.u8() % 4 {
        0 => input.i64(),
        1 => i64::from(input.u32()),
        2 => 1_700_000_000 + i64::from(input.u16()),
        _ => [
            0,
            -1,
            999_999_999_999_999,
            1_000_000_000_000_000,
            253_402_300_799,
            253_402_300_800,
            i64::MAX,
            i64::MIN,
        ][usize::from(input.u8() % 8)],
    };
    let tolerance = match input.u8() % 3 {
        0 => i64::from(input.u16()),
        1 => input.i64(),
        _ => 300,
    };
    let mutate_at = usize::from(input.u16());
    let mutate_xor = input.u8() | 1;
    let body = input.rest();
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let msg = Outbound {
        msg_id: &msg_id,
        timestamp,
        body,
    };

    let Ok(headers) = sign(scheme, &secret_refs, &msg) else {
        return;
    };
    let mut map = HeaderMap::new();
    for (name, value) in &headers {
        let v = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("{scheme}: {name}: {value:?} is not a header value: {e}"));
        map.append(HeaderName::from_static(name), v);
    }

    // verify(sign(x)), at both edges of the tolerance and just outside.
    let tol = tolerance.max(0);
    verify(scheme, &secret_refs, &map, body, timestamp, tolerance)
        .unwrap_or_else(|e| panic!("{scheme}: own signature refused: {e}"));
    let timed = matches!(scheme, Scheme::StandardWebhooks | Scheme::DateSha1);
    for (now, inside) in [
        (timestamp.checked_add(tol), true),
        (timestamp.checked_sub(tol), true),
        (
            timestamp.checked_add(tol).and_then(|n| n.checked_add(1)),
            false,
        ),
        (
            timestamp.checked_sub(tol).and_then(|n| n.checked_sub(1)),
            false,
        ),
    ] {
        let Some(now) = now else { continue };
        let r = verify(scheme, &secret_refs, &map, body, now, tolerance);
        if inside || !timed {
            r.unwrap_or_else(|e| panic!("{scheme}: refused at now={now} tol={tolerance}: {e}"));
        } else {
            assert!(
                matches!(r, Err(VerifyError::TimestampOutOfTolerance { .. })),
                "{scheme}: now={now} ts={timestamp} tol={tolerance}: {r:?}"
            );
        }
    }
    for now in [i64::MIN, i64::MAX, 0] {
        for tol in [i64::MIN, i64::MAX, -1] {
            let _ = verify(scheme, &secret_refs, &map, body, now, tol);
        }
    }

    // Single-byte changes, signed with one secret so no other signature can match.
    let one = &secret_refs[..1];
    let Ok(single) = sign(scheme, one, &msg) else {
        return;
    };
    let mut base = HeaderMap::new();
    for (name, value) in &single {
        base.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("checked above"),
        );
    }
    verify(scheme, one, &base, body, timestamp, 0).expect("own signature, one secret");
    if scheme.signs_body() && !body.is_empty() {
        let mut changed = body.to_vec();
        let i = mutate_at % changed.len();
        changed[i] ^= mutate_xor;
        assert!(
            verify(scheme, one, &base, &changed, timestamp, 0).is_err(),
            "{scheme}: body byte {i} changed, still verifies"
        );
    }
    for (name, value) in &single {
        let Some(changed) = mutate(value, mutate_at, mutate_xor) else {
            continue;
        };
        let Ok(hv) = HeaderValue::from_bytes(&changed) else {
            continue;
        };
        let mut h = base.clone();
        h.insert(HeaderName::from_static(name), hv);
        let r = verify(scheme, one, &h, body, timestamp, 0);
        assert!(
            r.is_err(),
            "{scheme}: {name} {value:?} changed to {:?}, still verifies",
            String::from_utf8_lossy(&changed)
        );
    }
}

/// `value` with one byte changed, unless the change is only one of letter case (equivalent by
/// design for hex digits and scheme names).
fn mutate(value: &str, at: usize, xor: u8) -> Option<Vec<u8>> {
    let mut b = value.as_bytes().to_vec();
    if b.is_empty() {
        return None;
    }
    let i = at % b.len();
    let old = b[i];
    b[i] ^= xor;
    if old.eq_ignore_ascii_case(&b[i]) {
        return None;
    }
    Some(b)
}

fn arbitrary_headers(scheme: Scheme, input: &mut Input<'_>) {
    let secret = input.str(32);
    let now = input.i64();
    let tolerance = input.i64();
    let mut map = HeaderMap::new();
    let n = input.u8() % 8;
    for _ in 0..n {
        let name = NAMES[usize::from(input.u8()) % NAMES.len()];
        let value = input.bytes(120);
        if let Ok(v) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    let body = input.rest();
    let secrets: &[&str] = if secret.is_empty() { &[] } else { &[&secret] };
    let r = verify(scheme, secrets, &map, body, now, tolerance);
    if let Err(e) = r {
        assert!(!e.code().is_empty());
    }
}
