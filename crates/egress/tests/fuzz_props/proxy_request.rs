//! Fuzz properties of the egress proxy's request reading: the request target (`target_of`,
//! `normalize_host`), the host policy (`Policy::decide`) and `Proxy-Authorization` parsing.
//!
//! - `normalize_host` never panics, is idempotent, returns lowercase ASCII made of letters,
//!   digits, `-`, `_` and dots only, and accepts no numeric spelling of an address other than
//!   canonical dotted-quad IPv4: any host that a WHATWG URL parser (or `inet_aton`) reads as an
//!   IPv4 address — checked with an independent implementation below — is refused unless it is
//!   already the canonical `a.b.c.d`.
//! - A target accepted by `target_of` has a normalised host and a non-zero port, and the same
//!   `host:port` re-parses to the same target, as `CONNECT` and as an absolute `http://` URL.
//! - Policy decisions are deterministic; a port outside the rule's list is always refused; a
//!   host on `global_deny` is always refused, whatever the client's action; `open` refuses only
//!   denied hosts; `enforce` refuses what no allow list names.
//! - `Proxy-Authorization`: arbitrary values never panic; `Basic base64(user:password)` parses
//!   back to exactly `(user, password)` for any user without `:`, whatever the scheme's case;
//!   values over 1024 bytes are refused.
#![allow(dead_code)]

use base64::Engine as _;
use hookwarden_egress::fuzzing::{
    HostRefusal, Policy, normalize_host, parse_proxy_authorization, target_of,
};
use hookwarden_egress::proxy::{Action, ClientRuleConfig, PolicyConfig};
use http::{HeaderValue, Method, Uri};

use super::input::Input;

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => host(&mut input),
        1 => request(&mut input),
        2 => policy(&mut input),
        _ => auth(&mut input),
    }
}

fn host(input: &mut Input<'_>) {
    let raw = String::from_utf8_lossy(input.rest()).into_owned();
    check_host(&raw);
}

fn check_host(raw: &str) -> Option<String> {
    let h = normalize_host(raw)?;
    assert_eq!(
        normalize_host(&h).as_deref(),
        Some(h.as_str()),
        "{raw:?}: not idempotent"
    );
    assert!(
        !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
        "{raw:?} → {h:?}"
    );
    assert!(
        !h.ends_with('.') && !h.starts_with('.') && !h.contains(".."),
        "{h:?}"
    );
    let bare = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    assert_eq!(
        h, bare,
        "{raw:?}: normalising changed more than case and one trailing dot"
    );
    if let Some(v4) = whatwg_ipv4(&h) {
        match v4 {
            Some(a) => assert_eq!(h, a.to_string(), "{raw:?} is a numeric spelling of {a}"),
            None => panic!("{raw:?}: an invalid IPv4 spelling was accepted as a host"),
        }
    }
    Some(h)
}

fn request(input: &mut Input<'_>) {
    let method = if input.bool() {
        Method::CONNECT
    } else {
        Method::GET
    };
    let raw = input.rest();
    let Ok(uri) = Uri::try_from(raw) else {
        return;
    };
    let Ok((host, port)) = target_of(&method, &uri) else {
        return;
    };
    assert!(port != 0, "{uri}: port 0");
    let authority = uri.authority().expect("accepted targets have one");
    assert!(
        !authority.as_str().contains('@'),
        "{uri}: userinfo accepted"
    );
    let written = authority.host();
    match written.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // An IPv6 target: only its one standard spelling, which is the target host.
        Some(inner) => {
            let v6: std::net::Ipv6Addr = host
                .parse()
                .unwrap_or_else(|_| panic!("{uri}: bracketed target {host:?} is no IPv6 address"));
            assert_eq!(v6.to_string(), host, "{uri}: not the standard form");
            assert_eq!(inner, host, "{uri}: another spelling was accepted");
        }
        None => {
            assert_eq!(check_host(&host).as_deref(), Some(host.as_str()), "{uri}");
            // The authority's host, as written, normalises to the target host.
            assert_eq!(normalize_host(written).as_deref(), Some(host.as_str()));
        }
    }
    let authority_text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    for (m, text) in [
        (Method::CONNECT, authority_text.clone()),
        (Method::GET, format!("http://{authority_text}/")),
    ] {
        let again: Uri = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(
            target_of(&m, &again),
            Ok((host.clone(), port)),
            "{uri} re-read as {text:?}"
        );
    }
    if method == Method::CONNECT {
        assert!(
            authority.port_u16().is_some(),
            "{uri}: CONNECT without a port"
        );
    }
}

/// Small alphabet so patterns and hosts meet.
fn name(input: &mut Input<'_>) -> String {
    const LABELS: [&str; 8] = ["a", "b", "example", "com", "internal", "x1", "test", "evil"];
    let n = usize::from(input.u8() % 4) + 1;
    (0..n)
        .map(|_| LABELS[usize::from(input.u8()) % LABELS.len()])
        .collect::<Vec<_>>()
        .join(".")
}

fn pattern(input: &mut Input<'_>) -> String {
    match input.u8() % 6 {
        0 => "*".into(),
        1 | 2 => format!("*.{}", name(input)),
        3 => format!("{}.", name(input).to_ascii_uppercase()),
        _ => name(input),
    }
}

fn patterns(input: &mut Input<'_>) -> Vec<String> {
    (0..input.u8() % 4).map(|_| pattern(input)).collect()
}

fn action(b: u8) -> Action {
    [Action::Enforce, Action::Report, Action::Open][usize::from(b % 3)]
}

fn policy(input: &mut Input<'_>) {
    let mut cfg = PolicyConfig {
        action: action(input.u8()),
        allowed_ports: vec![443, 80],
        allow: patterns(input),
        deny: patterns(input),
        global_allow: patterns(input),
        global_deny: patterns(input),
        clients: Vec::new(),
    };
    if input.bool() {
        cfg.allowed_ports = vec![input.u16() % 4 + 442];
    }
    let clients = ["alice", "bob"];
    for c in clients {
        if input.bool() {
            cfg.clients.push(ClientRuleConfig {
                name: c.into(),
                action: input.bool().then(|| action(input.u8())),
                allowed_ports: input.bool().then(|| vec![443]),
                allow: patterns(input),
                deny: patterns(input),
            });
        }
    }
    let Ok(policy) = Policy::from_config(&cfg) else {
        return;
    };
    let host = name(input);
    let port = [443, 80, 8443, 22][usize::from(input.u8() % 4)];
    let client = [None, Some("alice"), Some("bob"), Some("mallory")][usize::from(input.u8() % 4)];
    let d = policy.decide(client, &host, port);
    assert_eq!(d, policy.decide(client, &host, port), "not deterministic");

    let rule = client
        .and_then(|c| cfg.clients.iter().find(|r| r.name == c))
        .map(|r| {
            (
                r.action.unwrap_or(cfg.action),
                r.allowed_ports.clone().unwrap_or(cfg.allowed_ports.clone()),
                r.allow.clone(),
                r.deny.clone(),
            )
        })
        .unwrap_or((
            cfg.action,
            cfg.allowed_ports.clone(),
            cfg.allow.clone(),
            cfg.deny.clone(),
        ));
    let (act, ports, allow, deny) = rule;
    if !ports.contains(&port) {
        assert!(
            d.refused,
            "{host}:{port}: port outside the rule's list allowed"
        );
        assert_eq!(d.refusal, Some(HostRefusal::Port));
        return;
    }
    if cfg.global_deny.iter().any(|p| glob(p, &host)) {
        assert!(
            d.refused,
            "{host} is on global_deny {:?} but {:?} let it through ({act:?})",
            cfg.global_deny, client
        );
        assert_eq!(d.refusal, Some(HostRefusal::Denied));
        return;
    }
    let denied = deny.iter().any(|p| glob(p, &host));
    let allowed = cfg
        .global_allow
        .iter()
        .chain(&allow)
        .any(|p| glob(p, &host));
    let want_refusal = if denied {
        Some(HostRefusal::Denied)
    } else if allowed || act == Action::Open {
        None
    } else {
        Some(HostRefusal::NotAllowed)
    };
    assert_eq!(d.refusal, want_refusal, "{host} for {client:?}");
    assert_eq!(d.refused, want_refusal.is_some() && act != Action::Report);
}

/// The documented glob: `*`, `*.suffix` (strictly below), or an exact name; case and one
/// trailing dot ignored.
fn glob(pattern: &str, host: &str) -> bool {
    let p = pattern.trim();
    let p = p.strip_suffix('.').unwrap_or(p).to_ascii_lowercase();
    if p == "*" {
        return true;
    }
    match p.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => host == p,
    }
}

fn auth(input: &mut Input<'_>) {
    if input.bool() {
        let raw = input.rest();
        if let Ok(v) = HeaderValue::from_bytes(raw)
            && let Some((user, _)) = parse_proxy_authorization(&v)
        {
            assert!(raw.len() <= 1024);
            assert!(!user.contains(':'), "{user:?}");
        }
        return;
    }
    let user = input.str(64).replace(':', "");
    let password = input.str(200);
    let scheme = ["Basic", "basic", "BASIC", "bAsIc"][usize::from(input.u8() % 4)];
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let text = format!("{scheme} {token}");
    let v = HeaderValue::from_str(&text).expect("base64 is a header value");
    let parsed = parse_proxy_authorization(&v);
    if text.len() > 1024 {
        assert_eq!(parsed, None, "over-long credentials accepted");
    } else {
        assert_eq!(parsed, Some((user, password)), "{text:?}");
    }
}

/// The WHATWG URL Standard's IPv4 host parser, as in netguard's URL fuzz target: `None` when the
/// host is a name, `Some(None)` for an invalid IPv4 spelling, `Some(Some(a))` for an address.
fn whatwg_ipv4(host: &str) -> Option<Option<std::net::Ipv4Addr>> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.last() == Some(&"") {
        if parts.len() == 1 {
            return None;
        }
        parts.pop();
    }
    let last = *parts.last()?;
    let ends_in_number = (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || ipv4_number(last).is_some();
    if !ends_in_number {
        return None;
    }
    if parts.len() > 4 {
        return Some(None);
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for p in &parts {
        match ipv4_number(p) {
            Some(n) => numbers.push(n),
            None => return Some(None),
        }
    }
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return Some(None);
    }
    if u128::from(*last) >= 256u128.pow(5 - numbers.len() as u32) {
        return Some(None);
    }
    let mut v: u128 = u128::from(*last);
    for (i, n) in init.iter().enumerate() {
        v += u128::from(*n) << (8 * (3 - i));
    }
    Some(u32::try_from(v).ok().map(std::net::Ipv4Addr::from))
}

fn ipv4_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}
