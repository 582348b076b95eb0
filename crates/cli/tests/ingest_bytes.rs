//! The ingest route `POST /in/{token}` fed arbitrary bytes over raw TCP, against the real binary
//! on SQLite and on PostgreSQL: NUL bytes and invalid UTF-8 in bodies and in JSON message ids,
//! empty, limit-sized and oversized bodies (by `Content-Length` and chunked), malformed chunking,
//! odd, missing and non-UTF-8 content types and user agents, many headers, header values and
//! request lines the HTTP parser refuses, correct, wrong and missing signatures, unknown,
//! malformed and revoked tokens, and a concurrent burst of all of it.
//!
//! For every request: exactly one HTTP answer, never a 5xx; every request that reached the route
//! (its answer is Hookwarden's JSON) has exactly one audit entry, found by the client's port,
//! with the answer's status and code, and — for sources that log payloads — the exact bytes of
//! the body; a request the HTTP parser refused (a bare 400/431 from the parser) has none. The
//! server's log holds no panic and no failed audit write.
//!
//! The admin API refuses NUL in every string field with a 4xx and a stable code, on both
//! backends alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod common;

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use hyper::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GH_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
/// `inbound.max_body_bytes` of these tests (and the audit log's payload bound, 64 KiB).
const LIMIT: usize = 65_536;

fn config(db_url: Option<&str>) -> String {
    let storage = match db_url {
        Some(u) => format!(
            "[storage]\nurl = \"{u}\"\nmax_connections = 8\n{}",
            common::pg::security_section()
        ),
        None => "[storage]\nsqlite_synchronous = \"normal\"\n".into(),
    };
    format!(
        r#"
[server]
request_timeout_secs = 3

[egress]
allow_ranges = ["127.0.0.0/8"]
allow_http = true

[inbound]
max_body_bytes = {LIMIT}
audit_refusals_per_second = 10000

{storage}
"#
    )
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

fn github_sig(body: &[u8]) -> Vec<u8> {
    format!("sha256={}", hmac_hex(GH_SECRET.as_bytes(), &[body])).into_bytes()
}

fn stripe_sig(body: &[u8]) -> Vec<u8> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mac = hmac_hex(STRIPE_SECRET.as_bytes(), &[ts.as_bytes(), b".", body]);
    format!("t={ts},v1={mac}").into_bytes()
}

/// How the body goes on the wire.
#[derive(Clone)]
enum Wire {
    /// `Content-Length` and the bytes.
    Sized(Vec<u8>),
    /// `Transfer-Encoding: chunked`, in chunks of this size.
    Chunked(Vec<u8>, usize),
    /// Only headers declaring this `Content-Length`; the answer is read before any body.
    Declared(usize),
    /// Hand-written bytes after the headers (the framing headers included in `headers`).
    Raw(Vec<u8>),
}

/// Which source a request is meant for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    GithubLogged,
    StripeLogged,
    GithubPlain,
    Revoked,
    Allowlisted,
    /// A well-formed token no source has.
    Unknown,
    /// Anything after `/in/` (not a token).
    Path(&'static str),
}

#[derive(Clone)]
struct Case {
    name: String,
    target: Target,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    wire: Wire,
    /// The status this request must get, when the case decides it.
    want: Option<u16>,
    /// The request line is replaced by this (for parser-level garbage).
    request_line: Option<Vec<u8>>,
}

impl Case {
    fn new(name: &str, target: Target, wire: Wire) -> Case {
        Case {
            name: name.into(),
            target,
            headers: Vec::new(),
            wire,
            want: None,
            request_line: None,
        }
    }
    fn header(mut self, k: &[u8], v: &[u8]) -> Case {
        self.headers.push((k.to_vec(), v.to_vec()));
        self
    }
    fn want(mut self, status: u16) -> Case {
        self.want = Some(status);
        self
    }
    fn body(&self) -> &[u8] {
        match &self.wire {
            Wire::Sized(b) | Wire::Chunked(b, _) => b,
            Wire::Declared(_) | Wire::Raw(_) => &[],
        }
    }
}

struct Paths {
    github_logged: String,
    stripe_logged: String,
    github_plain: String,
    revoked: String,
    allowlisted: String,
    ids: HashMap<String, Option<String>>,
}

impl Paths {
    fn path(&self, t: Target) -> String {
        match t {
            Target::GithubLogged => self.github_logged.clone(),
            Target::StripeLogged => self.stripe_logged.clone(),
            Target::GithubPlain => self.github_plain.clone(),
            Target::Revoked => self.revoked.clone(),
            Target::Allowlisted => self.allowlisted.clone(),
            Target::Unknown => "/in/wh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            Target::Path(p) => format!("/in/{p}"),
        }
    }
    /// The source id the audit entry must carry (None: unknown token).
    fn source(&self, t: Target) -> Option<String> {
        let p = match t {
            Target::Unknown | Target::Path(_) => return None,
            other => self.path(other),
        };
        self.ids.get(&p).cloned().flatten()
    }
    fn logs_payloads(t: Target) -> bool {
        matches!(t, Target::GithubLogged | Target::StripeLogged)
    }
}

async fn source(api: &Api, body: Value) -> (String, String) {
    let (s, v) = api.post("/api/v1/sources", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let url = v["url"].as_str().unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        url[url.find("/in/").unwrap()..].to_string(),
    )
}

async fn sources(api: &Api) -> Paths {
    let gh = json!({"type": "github", "secret": GH_SECRET});
    let (a, github_logged) = source(
        api,
        json!({"name": "gh logged", "verification": gh, "log_payloads": true,
               "replay_window_seconds": 0}),
    )
    .await;
    let (b, stripe_logged) = source(
        api,
        json!({"name": "stripe logged", "verification": {"type": "stripe", "secret": STRIPE_SECRET},
               "log_payloads": true, "replay_window_seconds": 0}),
    )
    .await;
    let (c, github_plain) = source(
        api,
        json!({"name": "gh plain", "verification": gh, "replay_window_seconds": 0}),
    )
    .await;
    let (d, revoked) = source(api, json!({"name": "revoked", "verification": gh})).await;
    let (st, v) = api
        .post(&format!("/api/v1/sources/{d}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (e, allowlisted) = source(
        api,
        json!({"name": "elsewhere", "verification": gh, "allowed_cidrs": ["192.0.2.0/24"]}),
    )
    .await;
    let ids = [
        (github_logged.clone(), Some(a)),
        (stripe_logged.clone(), Some(b)),
        (github_plain.clone(), Some(c)),
        (revoked.clone(), Some(d)),
        (allowlisted.clone(), Some(e)),
    ]
    .into_iter()
    .collect();
    Paths {
        github_logged,
        stripe_logged,
        github_plain,
        revoked,
        allowlisted,
        ids,
    }
}

/// Bodies worth sending: NUL bytes, invalid UTF-8, empty, JSON with escaped NUL, control
/// characters, long and limit-sized.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut limit_sized = b"{\"pad\":\"".to_vec();
    limit_sized.resize(LIMIT - 2, b'x');
    limit_sized.extend_from_slice(b"\"}");
    let mut mixed: Vec<u8> = (0..=255u8).collect();
    mixed.extend_from_slice(b"\0\0\xff\xfe{\"a\":1}");
    vec![
        ("empty", Vec::new()),
        ("nul", b"\0".to_vec()),
        ("nul inside", b"a\0b".to_vec()),
        (
            "json with escaped nul",
            br#"{"a":"\u0000","b":"x\u0000y"}"#.to_vec(),
        ),
        ("json with raw nul", b"{\"a\":\"\0\"}".to_vec()),
        ("invalid utf-8", b"\xff\xfe\xfd".to_vec()),
        ("lone continuation", b"abc\x80def".to_vec()),
        ("truncated multibyte", b"caf\xc3".to_vec()),
        ("overlong", b"\xc0\xaf".to_vec()),
        ("surrogate", b"\xed\xa0\x80".to_vec()),
        ("control characters", b"\x01\x02\x1b[31m\x7f".to_vec()),
        ("every byte", mixed),
        ("form", b"a=1&b=%00&c=\xff".to_vec()),
        ("limit sized", limit_sized),
    ]
}

fn cases() -> Vec<Case> {
    use Target::*;
    let mut out = Vec::new();
    let content_types: [Option<&[u8]>; 6] = [
        None,
        Some(b"application/json"),
        Some(b"text/plain; charset=utf-8"),
        Some(b"application/x-www-form-urlencoded"),
        Some(b";;;=\"\""),
        Some(b"application/json; charset=\xff\xfe"),
    ];
    for (i, (name, body)) in bodies().into_iter().enumerate() {
        let ct = content_types[i % content_types.len()];
        let with_ct = |c: Case| match ct {
            Some(v) => c.header(b"content-type", v),
            None => c,
        };
        // Correctly signed: accepted, whatever the bytes.
        out.push(with_ct(
            Case::new(
                &format!("signed {name}"),
                GithubLogged,
                Wire::Sized(body.clone()),
            )
            .header(b"x-hub-signature-256", &github_sig(&body))
            .want(202),
        ));
        out.push(with_ct(
            Case::new(
                &format!("signed chunked {name}"),
                GithubPlain,
                Wire::Chunked(body.clone(), 777),
            )
            .header(b"x-hub-signature-256", &github_sig(&body))
            .want(202),
        ));
        // Wrong, missing and malformed signatures: refused, audited with the payload.
        out.push(with_ct(
            Case::new(
                &format!("wrong signature {name}"),
                GithubLogged,
                Wire::Sized(body.clone()),
            )
            .header(b"x-hub-signature-256", &github_sig(b"something else"))
            .want(401),
        ));
        out.push(with_ct(
            Case::new(
                &format!("no signature {name}"),
                StripeLogged,
                Wire::Sized(body.clone()),
            )
            .want(401),
        ));
        out.push(
            Case::new(
                &format!("garbage signature {name}"),
                GithubLogged,
                Wire::Sized(body.clone()),
            )
            .header(b"x-hub-signature-256", b"sha256=\xff\xfe\x80zz")
            .want(401),
        );
        // Tokens that open nothing.
        out.push(
            Case::new(
                &format!("unknown token {name}"),
                Unknown,
                Wire::Sized(body.clone()),
            )
            .want(404),
        );
        out.push(
            Case::new(
                &format!("revoked {name}"),
                Revoked,
                Wire::Sized(body.clone()),
            )
            .header(b"x-hub-signature-256", &github_sig(&body))
            .want(410),
        );
    }
    // Provider message ids taken from the JSON body (Stripe's `id`), signed: NUL, control
    // characters and long ids are recorded, never a failed write.
    for (name, body) in [
        (
            "stripe id with nul",
            br#"{"id":"evt_\u0000x","object":"event"}"#.to_vec(),
        ),
        (
            "stripe id of nul only",
            br#"{"id":"\u0000","object":"event"}"#.to_vec(),
        ),
        (
            "stripe id with controls",
            br#"{"id":"evt_\u0001\u001b\u007f\ud83d\ude00","object":"event"}"#.to_vec(),
        ),
        (
            "stripe id at the bound",
            format!(r#"{{"id":"{}\u0000"}}"#, "i".repeat(250)).into_bytes(),
        ),
    ] {
        out.push(
            Case::new(name, StripeLogged, Wire::Sized(body.clone()))
                .header(b"stripe-signature", &stripe_sig(&body))
                .header(b"content-type", b"application/json")
                .want(202),
        );
        out.push(
            Case::new(
                &format!("{name}, wrong signature"),
                StripeLogged,
                Wire::Sized(body.clone()),
            )
            .header(b"stripe-signature", b"t=1,v1=00")
            .want(401),
        );
    }
    // Over the limit: declared, sent, and streamed in chunks.
    out.push(Case::new("declared 1 GiB", GithubLogged, Wire::Declared(1 << 30)).want(413));
    out.push(
        Case::new(
            "one byte over the limit",
            GithubLogged,
            Wire::Declared(LIMIT + 1),
        )
        .want(413),
    );
    let big = vec![0u8; LIMIT + 4096];
    out.push(
        Case::new(
            "chunked over the limit",
            GithubLogged,
            Wire::Chunked(big, 8192),
        )
        .header(b"x-hub-signature-256", b"sha256=00")
        .want(413),
    );
    out.push(
        Case::new(
            "declared over the limit, unknown token",
            Unknown,
            Wire::Declared(LIMIT * 4),
        )
        .want(404),
    );
    // Refused before the body is read.
    out.push(
        Case::new(
            "not on the allowlist",
            Allowlisted,
            Wire::Sized(b"\0\xff".to_vec()),
        )
        .want(403),
    );
    // Malformed framing the route sees: a broken chunk, a body that never completes.
    out.push(
        Case::new(
            "broken chunk size",
            GithubLogged,
            Wire::Raw(b"zz\r\nabc\r\n0\r\n\r\n".to_vec()),
        )
        .header(b"transfer-encoding", b"chunked"),
    );
    out.push(
        Case::new(
            "short body",
            GithubLogged,
            Wire::Raw(b"{\"partial\":".to_vec()),
        )
        .header(b"content-length", b"100")
        .want(408),
    );
    // Tokens: malformed, percent-encoded NUL, very long.
    for (name, p) in [
        ("malformed token", "abc"),
        (
            "percent-encoded nul",
            "wh_%00%00%00%00%00%00%00%00%00%00%00",
        ),
        ("percent-encoded utf-8", "%C3%A9%FF%FE"),
        ("token with dots", "wh_...................................."),
    ] {
        out.push(Case::new(name, Path(p), Wire::Sized(b"x".to_vec())).want(404));
    }
    let long: &'static str = Box::leak(format!("wh_{}", "A".repeat(4000)).into_boxed_str());
    out.push(Case::new("very long token", Path(long), Wire::Sized(Vec::new())).want(404));
    // Header values the parser accepts though they are not UTF-8, and many headers.
    let body = br#"{"ok":true}"#.to_vec();
    out.push(
        Case::new(
            "non-utf-8 user agent",
            GithubLogged,
            Wire::Sized(body.clone()),
        )
        .header(b"user-agent", b"agent \xff\xfe\x80 \xc3\xa9")
        .header(b"x-hub-signature-256", &github_sig(&body))
        .want(202),
    );
    out.push(
        Case::new("long user agent", GithubLogged, Wire::Sized(body.clone()))
            .header(b"user-agent", "\u{e9}".repeat(3000).as_bytes())
            .header(b"x-hub-signature-256", &github_sig(&body))
            .want(202),
    );
    let mut many = Case::new("90 headers", GithubLogged, Wire::Sized(body.clone()))
        .header(b"x-hub-signature-256", &github_sig(&body))
        .want(202);
    for i in 0..90 {
        many = many.header(format!("x-h{i}").as_bytes(), b"\x80\xff v");
    }
    out.push(many);
    out.push(
        Case::new("two signatures", GithubLogged, Wire::Sized(body.clone()))
            .header(b"x-hub-signature-256", &github_sig(&body))
            .header(b"x-hub-signature-256", &github_sig(&body))
            .want(401),
    );
    out.push(
        Case::new(
            "duplicate content types",
            GithubPlain,
            Wire::Sized(body.clone()),
        )
        .header(b"content-type", b"application/json")
        .header(b"content-type", b"text/\xff")
        .header(b"x-hub-signature-256", &github_sig(&body)),
    );
    // What the HTTP parser refuses (answered by it, before any route): NUL and bare CR in
    // header values, a header line without a colon, a name with a space, too many headers,
    // headers over the parser's buffer, a request target with raw non-ASCII bytes.
    for (name, k, v) in [
        ("nul in a header value", &b"x-test"[..], &b"a\0b"[..]),
        ("bare cr in a header value", b"x-test", b"a\rb"),
        ("nul in the user agent", b"user-agent", b"\0"),
        ("space in a header name", b"x test", b"v"),
        ("header without a colon", b"x-no-colon-here", b""),
    ] {
        let mut c = Case::new(name, GithubLogged, Wire::Sized(b"{}".to_vec()));
        if v.is_empty() {
            c.headers.push((k.to_vec(), Vec::new()));
            c.name = format!("{name} (raw)");
        } else {
            c = c.header(k, v);
        }
        out.push(c);
    }
    let mut too_many = Case::new("200 headers", GithubLogged, Wire::Sized(b"{}".to_vec()));
    for i in 0..200 {
        too_many = too_many.header(format!("x-h{i}").as_bytes(), b"v");
    }
    out.push(too_many);
    out.push(
        Case::new("100 KiB header", GithubLogged, Wire::Sized(b"{}".to_vec()))
            .header(b"x-big", &vec![b'a'; 100 * 1024]),
    );
    let mut raw_target = Case::new("raw bytes in the target", Unknown, Wire::Sized(Vec::new()));
    raw_target.request_line = Some(b"POST /in/wh_\xff\xfe\x00 HTTP/1.1".to_vec());
    out.push(raw_target);
    out
}

/// The request's bytes up to the end of the headers (and, unless `Declared`, its body).
fn request_bytes(c: &Case, path: &str) -> (Vec<u8>, Vec<u8>) {
    let mut head = c
        .request_line
        .clone()
        .unwrap_or_else(|| format!("POST {path} HTTP/1.1").into_bytes());
    head.extend_from_slice(b"\r\nhost: hookwarden.test\r\nconnection: close\r\n");
    for (k, v) in &c.headers {
        head.extend_from_slice(k);
        if !v.is_empty() || !c.name.ends_with("(raw)") {
            head.extend_from_slice(b": ");
        }
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    let body = match &c.wire {
        Wire::Sized(b) => {
            head.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
            b.clone()
        }
        Wire::Chunked(b, size) => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            let mut out = Vec::new();
            for chunk in b.chunks(*size) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        Wire::Declared(n) => {
            head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
            Vec::new()
        }
        Wire::Raw(b) => b.clone(),
    };
    head.extend_from_slice(b"\r\n");
    (head, body)
}

/// One parsed answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Parses exactly one HTTP/1.1 response from `raw`, failing when there is less or more.
fn one_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete response head: {text:?}"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header {l:?}"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let rest = &raw[end + 4..];
    let (body, used) = if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk")?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[at..at + line_end])
                    .map_err(|e| e.to_string())?
                    .trim(),
                16,
            )
            .map_err(|e| e.to_string())?;
            at += line_end + 2;
            if size == 0 {
                at += 2;
                break;
            }
            body.extend_from_slice(rest.get(at..at + size).ok_or("truncated chunk")?);
            at += size + 2;
        }
        (body, at)
    } else {
        let n = length.unwrap_or(rest.len());
        (
            rest.get(..n).ok_or("truncated body")?.to_vec(),
            n.min(rest.len()),
        )
    };
    if rest.len() > used {
        return Err(format!(
            "more than one answer: {:?}",
            String::from_utf8_lossy(&rest[used..])
        ));
    }
    Ok(Answer { status, body })
}

/// Sends one case on its own connection; returns the client's address and the raw answer.
async fn send(addr: SocketAddr, c: &Case, path: &str) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap().to_string();
    let (head, body) = request_bytes(c, path);
    // Writes may fail once the server answered and closed (e.g. a refusal before the body).
    let _ = s.write_all(&head).await;
    if !body.is_empty() {
        let _ = s.write_all(&body).await;
    }
    let mut raw = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw)).await;
    assert!(r.is_ok(), "{}: no answer within 15 s", c.name);
    (local, raw)
}

struct Sent {
    case: Case,
    peer: String,
    answer: Answer,
    /// The answer is Hookwarden's own JSON (the request reached the route).
    routed: bool,
}

fn check_answer(case: &Case, peer: String, raw: &[u8]) -> Sent {
    let answer = one_answer(raw).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    assert!(
        answer.status < 500,
        "{}: got {} {}",
        case.name,
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if let Some(w) = case.want {
        assert_eq!(
            answer.status,
            w,
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let v: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let routed = v.as_ref().is_some_and(|v| v.get("success").is_some());
    if !routed {
        // Only the HTTP parser answers without the JSON envelope, and only with 400 or 431.
        assert!(
            matches!(answer.status, 400 | 431),
            "{}: a non-JSON answer {}",
            case.name,
            answer.status
        );
        assert!(
            case.want.is_none(),
            "{}: meant to reach the route",
            case.name
        );
    }
    Sent {
        case: case.clone(),
        peer,
        answer,
        routed,
    }
}

/// Every audit entry (all sources and unknown tokens), by client address.
async fn audit_by_peer(api: &Api) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    let mut before: Option<String> = None;
    for _ in 0..1000 {
        let q = match &before {
            Some(b) => format!("/api/v1/inbound/audit?limit=250&before={b}"),
            None => "/api/v1/inbound/audit?limit=250".into(),
        };
        let (st, v) = api.get(&q).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for e in v["data"].as_array().unwrap() {
            out.entry(e["peer_addr"].as_str().unwrap().to_string())
                .or_default()
                .push(e.clone());
        }
        match v["next_before"].as_str() {
            Some(b) if v["has_more"] == true => before = Some(b.to_string()),
            _ => break,
        }
    }
    out
}

fn requests_in(entries: &HashMap<String, Vec<Value>>) -> i64 {
    entries
        .values()
        .flatten()
        .map(|e| e["count"].as_i64().unwrap())
        .sum()
}

/// The logged payload of an entry, as bytes (`payload` text or `payload_base64`).
fn logged_payload(e: &Value) -> Option<Vec<u8>> {
    if let Some(t) = e.get("payload").and_then(Value::as_str) {
        return Some(t.as_bytes().to_vec());
    }
    e.get("payload_base64").and_then(Value::as_str).map(|b| {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .expect("payload_base64 is base64")
    })
}

async fn run(db_url: Option<&str>) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &config(db_url), None);
    let api = s.api();
    let paths = sources(&api).await;
    let all = cases();

    // One by one, then a concurrent burst of the same cases.
    let mut sent: Vec<Sent> = Vec::new();
    for c in &all {
        let path = paths.path(c.target);
        let (peer, raw) = send(s.addr, c, &path).await;
        sent.push(check_answer(c, peer, &raw));
    }
    let burst: Vec<Case> = all
        .iter()
        .filter(|c| !matches!(c.wire, Wire::Raw(_)) || c.want != Some(408))
        .cloned()
        .collect();
    let mut tasks = Vec::new();
    for part in burst.chunks(burst.len().div_ceil(8)) {
        let part: Vec<(Case, String)> = part
            .iter()
            .map(|c| (c.clone(), paths.path(c.target)))
            .collect();
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for (c, path) in part {
                let (peer, raw) = send(addr, &c, &path).await;
                out.push((c, peer, raw));
            }
            out
        }));
    }
    for t in tasks {
        for (c, peer, raw) in t.await.unwrap() {
            sent.push(check_answer(&c, peer, &raw));
        }
    }
    let routed: Vec<&Sent> = sent.iter().filter(|x| x.routed).collect();
    assert!(
        routed.len() > 200,
        "most requests reach the route: {}",
        routed.len()
    );
    assert!(
        sent.len() > routed.len(),
        "some requests are parser refusals"
    );
    let mut refused: Vec<&str> = sent
        .iter()
        .filter(|x| !x.routed)
        .map(|x| x.case.name.as_str())
        .collect();
    refused.sort_unstable();
    refused.dedup();
    eprintln!(
        "{} requests: {} reached the route, {} were refused by the HTTP parser ({refused:?})",
        sent.len(),
        routed.len(),
        sent.len() - routed.len()
    );

    // The audit log accounts for every routed request exactly once (aggregates are written
    // when their second ends: wait for them).
    let want = routed.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let e = audit_by_peer(&api).await;
        let n = requests_in(&e);
        if n >= want || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        requests_in(&entries),
        want,
        "audited requests versus requests that reached the route"
    );
    for x in &sent {
        let got = entries.get(&x.peer).map(Vec::as_slice).unwrap_or(&[]);
        if !x.routed {
            assert!(
                got.is_empty(),
                "{}: a parser refusal has no audit entry: {got:?}",
                x.case.name
            );
            continue;
        }
        assert_eq!(
            got.len(),
            1,
            "{}: exactly one audit entry for {}",
            x.case.name,
            x.peer
        );
        let e = &got[0];
        assert_eq!(e["count"], 1, "{}: {e}", x.case.name);
        assert_eq!(e["status"], x.answer.status, "{}: {e}", x.case.name);
        let v: Value = serde_json::from_slice(&x.answer.body).unwrap();
        let code = if x.answer.status == 202 {
            "ACCEPTED"
        } else {
            v["error"]["code"].as_str().unwrap_or("")
        };
        assert_eq!(e["outcome"], code, "{}: {e}", x.case.name);
        assert_eq!(
            e["source_id"].as_str().map(str::to_owned),
            paths.source(x.case.target),
            "{}: {e}",
            x.case.name
        );
        if x.answer.status == 202 {
            assert_eq!(e["event_id"], v["id"], "{}", x.case.name);
        }
        // The logged payload is the body, byte for byte, whenever the body was read.
        let logged = logged_payload(e);
        if Paths::logs_payloads(x.case.target) && matches!(x.answer.status, 202 | 401) {
            assert_eq!(
                logged.as_deref(),
                Some(x.case.body()),
                "{}: logged payload {e}",
                x.case.name
            );
        } else if let Some(p) = &logged {
            assert_eq!(p.as_slice(), x.case.body(), "{}: {e}", x.case.name);
        }
        if let Some(p) = e.get("payload").and_then(Value::as_str) {
            assert!(
                !p.contains('\0'),
                "{}: text payloads hold no NUL",
                x.case.name
            );
        }
    }
    // Message ids from JSON bodies are recorded (NUL replaced), not lost.
    let stripe_ids: Vec<&Value> = entries
        .values()
        .flatten()
        .filter(|e| {
            e["outcome"] == "ACCEPTED"
                && e["source_id"].as_str() == paths.source(Target::StripeLogged).as_deref()
        })
        .collect();
    assert!(!stripe_ids.is_empty());
    for e in &stripe_ids {
        let id = e["message_id"].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(!id.contains('\0'), "{e}");
    }

    let log = s.log();
    for bad in [
        "panicked",
        "could not write an inbound audit entry",
        "could not store an inbound event",
    ] {
        assert!(!log.contains(bad), "server log has {bad:?}:\n{log}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_are_answered_once_and_audited_once_sqlite() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bytes_are_answered_once_and_audited_once_postgres() {
    let Some(db) = Db::create("hw_ingest_bytes").await else {
        return;
    };
    run(Some(&db.url)).await;
}

/// Every string field of the admin API with a NUL (`\u0000`) in it: a 4xx with a stable code,
/// never a 5xx, and nothing stored; the same answers on both backends.
async fn admin_nul(db_url: Option<&str>) -> Vec<(String, u16, String)> {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &config(db_url), None);
    let api = s.api();
    let receiver = Receiver::start().await;
    let url = receiver.url("/hook");
    let (ep, _) = api.endpoint(json!({"url": url})).await;
    let generate_req = json!({"generate": {"common_name": "hw"}});
    let (st, cert) = api.post("/api/v1/client-certificates", generate_req).await;
    assert_eq!(st, StatusCode::CREATED, "{cert}");
    let pem = cert["certificate_pem"].as_str().unwrap().to_string();
    let gh = json!({"type": "github", "secret": GH_SECRET});
    let (src, _) = source(&api, json!({"name": "s", "verification": gh})).await;
    let n = "a\u{0}b";
    let mut probes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": format!("{url}?q={n}")}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": format!("http://127.0.0.1:1/{n}")}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "description": n}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "event_types": [n]}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "headers": {"x-a": n}}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "headers": {n: "v"}}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "developer_payload": n}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "signature_schemes": [n]}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "secret": format!("whsec_{n}")}),
        ),
        (
            "POST",
            "/api/v1/endpoints".into(),
            json!({"url": url, "client_certificate_id": n}),
        ),
        (
            "PATCH",
            format!("/api/v1/endpoints/{ep}"),
            json!({"description": n}),
        ),
        (
            "PATCH",
            format!("/api/v1/endpoints/{ep}"),
            json!({"url": format!("{url}#{n}")}),
        ),
        (
            "PATCH",
            format!("/api/v1/endpoints/{ep}"),
            json!({"headers": {"x-b": n}}),
        ),
        (
            "POST",
            "/api/v1/events".into(),
            json!({"type": n, "payload": {}}),
        ),
        (
            "POST",
            "/api/v1/events".into(),
            json!({"type": "t", "payload": {}, "idempotency_key": n}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": n, "verification": gh}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification": gh, "event_type": n}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification": gh, "forward_to": [n]}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification": gh, "allowed_cidrs": [n]}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification": {"type": "github", "secret": n}}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification": {"type": n}}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification":
            {"type": "api_key", "header": n, "secret": "k"}}),
        ),
        (
            "POST",
            "/api/v1/sources".into(),
            json!({"name": "x", "verification":
            {"type": "hmac", "header": "x-sig", "secret": "k", "template": n}}),
        ),
        (
            "PATCH",
            format!("/api/v1/sources/{src}"),
            json!({"name": n}),
        ),
        (
            "POST",
            "/api/v1/client-certificates".into(),
            json!({"name": n, "generate": {"common_name": "a"}}),
        ),
        (
            "POST",
            "/api/v1/client-certificates".into(),
            json!({"generate": {"common_name": n}}),
        ),
        (
            "POST",
            "/api/v1/client-certificates".into(),
            json!({"generate": {"common_name": "a", "organization": n}}),
        ),
        (
            "POST",
            "/api/v1/client-certificates".into(),
            json!({"generate": {"common_name": "a", "key_type": n}}),
        ),
        (
            "POST",
            "/api/v1/client-certificates".into(),
            json!({"certificate_pem": format!("{n}\n{pem}"),
            "private_key_pem": "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"}),
        ),
    ];
    // An uploaded chain with NUL after its blocks.
    probes.push((
        "POST",
        "/api/v1/client-certificates".into(),
        json!({"certificate_pem": format!("{pem}\u{0}"), "private_key_pem": "x"}),
    ));
    let mut out = Vec::new();
    for (method, path, body) in probes {
        let (st, v) = api.call(method, &path, Some(body.clone())).await;
        assert!(st.is_client_error(), "{method} {path} {body}: {st} {v}");
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{method} {path} {body}: {v}"
        );
        out.push((format!("{method} {path} {body}"), st.as_u16(), code));
    }
    // Nothing was stored by any of them.
    let (_, eps) = api.get("/api/v1/endpoints").await;
    assert_eq!(eps["data"].as_array().unwrap().len(), 1, "{eps}");
    let (_, srcs) = api.get("/api/v1/sources").await;
    assert_eq!(srcs["data"].as_array().unwrap().len(), 1, "{srcs}");
    let (_, evs) = api.get("/api/v1/events").await;
    assert_eq!(evs["data"].as_array().unwrap().len(), 0, "{evs}");
    // An event's payload is JSON, which escapes NUL: accepted and returned as it was.
    let (st, v) = api
        .post(
            "/api/v1/events",
            json!({"type": "t", "payload": {"a": n, "\u{0}": [n]}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, e) = api
        .get(&format!("/api/v1/events/{}", v["id"].as_str().unwrap()))
        .await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["payload"], json!({"a": n, "\u{0}": [n]}));
    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("store error"), "{log}");
    // Normalise the ids that differ between runs.
    out.into_iter()
        .map(|(k, st, code)| {
            (
                k.replace(&ep, "ep")
                    .replace(&src, "src")
                    .replace(&url, "url"),
                st,
                code,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_nul_alike_on_both_backends() {
    let lite = admin_nul(None).await;
    let Some(db) = Db::create("hw_admin_nul").await else {
        return;
    };
    let pg = admin_nul(Some(&db.url)).await;
    assert_eq!(lite.len(), pg.len());
    for (a, b) in lite.iter().zip(&pg) {
        assert_eq!((a.1, &a.2), (b.1, &b.2), "{} differs between backends", a.0);
    }
}
