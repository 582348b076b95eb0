//! Fuzz properties of endpoint URL checking (`parse_endpoint_url`, `Guard::check_url`).
//!
//! Two halves, chosen by the first byte:
//!
//! - **Spellings.** An address (biased to special-purpose ones, or covered by a deny range taken
//!   from the input) is written in one of the spellings WHATWG parsers accept — one to four parts,
//!   each decimal, octal (`0177`) or hex (`0x7f`, `0X7F`), trailing dot, percent-encoded
//!   characters, full-width digits and ideographic full stops, IPv4-mapped / compatible / NAT64 /
//!   6to4 IPv6 in brackets with or without an IPv4 tail — and the URL is checked. It must name
//!   exactly that address (`Target::host`), and it is accepted exactly when the address policy
//!   permits that address.
//! - **Raw.** The input is the URL. No panic; an accepted URL re-parses to the same target; an
//!   accepted address host is permitted by the policy; an accepted *name* is not something a
//!   WHATWG parser reads as an IPv4 address (checked with an independent implementation of the
//!   WHATWG IPv4 parser below), and where that parser reads the host as an address the target is
//!   that address.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hookwarden_netguard::{
    AddressPolicy, Guard, IpNet, StaticResolver, Target, TargetHost, UrlPolicy, parse_endpoint_url,
};
use ipnet::Ipv4Net;

use super::input::Input;

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => raw(&mut input),
        _ => spelled(&mut input),
    }
}

fn guard(policy: AddressPolicy) -> Guard {
    Guard::new(policy, Arc::new(StaticResolver::new()))
}

fn raw(input: &mut Input<'_>) {
    let opts = UrlPolicy {
        allow_http: input.bool(),
        allowed_ports: None,
    };
    let url = String::from_utf8_lossy(input.rest()).into_owned();
    let g = guard(AddressPolicy::public_only());
    let Ok(target) = g.check_url(&url, &opts) else {
        return;
    };
    check_accepted(&url, &target, &opts, g.policy());
    // Independent reading of the host.
    if let Some(host) = oracle_host(&url) {
        match whatwg_ipv4(&host) {
            Some(Some(v4)) => assert_eq!(
                target.host,
                TargetHost::Ip(IpAddr::V4(v4)),
                "{url:?}: host {host:?} is {v4} for WHATWG"
            ),
            Some(None) => panic!("{url:?}: host {host:?} is an invalid IPv4 host, yet accepted"),
            None => {}
        }
    }
}

/// What holds for every accepted URL.
fn check_accepted(url: &str, target: &Target, opts: &UrlPolicy, policy: &AddressPolicy) {
    assert!(target.port != 0, "{url:?}: port 0");
    match &target.host {
        TargetHost::Ip(ip) => assert!(
            policy.check(*ip).is_ok(),
            "{url:?}: accepted denied address {ip}"
        ),
        TargetHost::Domain(d) => {
            assert!(!d.is_empty() && !d.ends_with('.'), "{url:?}: domain {d:?}");
            assert_eq!(*d, d.to_ascii_lowercase(), "{url:?}: domain not lowercase");
            assert!(d.parse::<IpAddr>().is_err(), "{url:?}: domain {d:?}");
            assert!(
                whatwg_ipv4(d).is_none(),
                "{url:?}: accepted name {d:?} that WHATWG reads as an IPv4 address"
            );
            assert!(
                d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
                "{url:?}: domain {d:?}"
            );
        }
    }
    // The normalised URL is accepted again, as the same target.
    let again = parse_endpoint_url(target.url.as_str(), opts)
        .unwrap_or_else(|e| panic!("{url:?}: normalised {} refused: {e}", target.url));
    assert_eq!(&again, target, "{url:?}: re-parse differs");
}

/// Special-purpose IPv4 ranges the spelling half draws addresses from.
const SPECIAL_V4: [&str; 12] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "198.18.0.0/15",
    "192.0.0.0/24",
    "0.0.0.0/0",
];

fn spelled(input: &mut Input<'_>) {
    let range: Ipv4Net = SPECIAL_V4[usize::from(input.u8()) % SPECIAL_V4.len()]
        .parse()
        .expect("static");
    let host_bits = input.u32();
    let mask = u32::MAX
        .checked_shr(u32::from(range.prefix_len()))
        .unwrap_or(0);
    let v4 = Ipv4Addr::from((u32::from(range.network()) & !mask) | (host_bits & mask));

    // A deny range around a (possibly public) address must win too.
    let deny_len = input.u8() % 33;
    let policy = if input.bool() {
        let deny = Ipv4Net::new(v4, deny_len).expect("≤ 32").trunc();
        AddressPolicy::new(vec![], vec![IpNet::V4(deny)])
    } else {
        AddressPolicy::public_only()
    };

    let form = input.u8();
    let (host, expect) = if form.is_multiple_of(4) {
        let (h, ip) = ipv6_spelling(v4, input);
        (h, IpAddr::V6(ip))
    } else {
        (ipv4_spelling(v4, input), IpAddr::V4(v4))
    };
    let port = input.u16();
    let url = match input.u8() % 5 {
        0 => format!("https://{host}/"),
        1 => format!("https://{host}:{port}/p?q=1"),
        2 => format!("HTTPS://{host}"),
        3 => format!("https:{host}/x"),
        _ => format!("https:///{host}:{port}"),
    };
    let opts = UrlPolicy::default();
    let g = guard(policy.clone());

    let parsed = parse_endpoint_url(&url, &opts);
    let Ok(target) = parsed else {
        // Only a bad port (0) may make a well-formed spelling fail to parse.
        let e = parsed.expect_err("checked");
        assert_eq!(e.code(), "URL_PORT_NOT_ALLOWED", "{url:?} refused: {e}");
        return;
    };
    assert_eq!(
        target.host,
        TargetHost::Ip(expect),
        "{url:?} should name {expect}"
    );
    let allowed = policy.check(expect).is_ok();
    match g.check_url(&url, &opts) {
        Ok(t) => {
            assert!(
                allowed,
                "{url:?} ({expect}) accepted but the policy denies it"
            );
            check_accepted(&url, &t, &opts, &policy);
        }
        Err(e) => {
            assert!(
                !allowed,
                "{url:?} ({expect}) refused ({e}) but the policy allows it"
            );
            assert_eq!(e.code(), "URL_ADDRESS_DENIED", "{url:?}");
        }
    }
}

/// One of the WHATWG spellings of `v4`.
fn ipv4_spelling(v4: Ipv4Addr, input: &mut Input<'_>) -> String {
    let n = usize::from(input.u8() % 4) + 1;
    let o = v4.octets();
    // The first n-1 parts are octets, the last part is the remaining bytes as one number.
    let mut parts: Vec<u32> = o[..n - 1].iter().map(|b| u32::from(*b)).collect();
    let last = o[n - 1..]
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    parts.push(last);
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match input.u8() % 5 {
            0 => out.push_str(&p.to_string()),
            1 => out.push_str(&format!("0{p:o}")),
            2 => out.push_str(&format!("0x{p:x}")),
            3 => out.push_str(&format!("0X{p:X}")),
            _ => out.push_str(&format!(
                "0x{:0width$x}",
                p,
                width = usize::from(input.u8() % 10)
            )),
        }
    }
    if input.bool() {
        out.push('.');
    }
    let decorate = input.u8();
    if decorate & 1 == 1 {
        // Percent-encode every digit and dot.
        out = out
            .chars()
            .map(|c| {
                if c.is_ascii_digit() || c == '.' {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
    } else if decorate & 2 == 2 {
        // Full-width digits and ideographic full stops (IDNA maps them to ASCII).
        out = out
            .chars()
            .map(|c| match c {
                '0'..='9' => char::from_u32(0xff10 + (c as u32 - '0' as u32)).unwrap_or(c),
                '.' => '\u{3002}',
                _ => c,
            })
            .collect();
    }
    out
}

/// A bracketed IPv6 spelling of one of the forms that embed `v4`, and the address it names.
fn ipv6_spelling(v4: Ipv4Addr, input: &mut Input<'_>) -> (String, Ipv6Addr) {
    let o = v4.octets();
    let hi = u16::from_be_bytes([o[0], o[1]]);
    let lo = u16::from_be_bytes([o[2], o[3]]);
    let (prefix, ip): (&str, Ipv6Addr) = match input.u8() % 4 {
        0 => ("::ffff:", v4.to_ipv6_mapped()),
        1 => ("::", Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo)),
        2 => ("64:ff9b::", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
        _ => {
            let ip = Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 0);
            return (format!("[2002:{hi:x}:{lo:X}::]"), ip);
        }
    };
    let text = match input.u8() % 4 {
        0 => format!("[{prefix}{v4}]"),
        1 => format!("[{prefix}{hi:x}:{lo:x}]"),
        2 => format!("[{}{hi:04X}:{lo:04X}]", prefix.to_ascii_uppercase()),
        _ => format!("[{}]", full_form(ip)),
    };
    (text, ip)
}

fn full_form(ip: Ipv6Addr) -> String {
    ip.segments()
        .iter()
        .map(|s| format!("{s:04x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host of a special-scheme URL as WHATWG finds it (ASCII only; `None` when not
/// recognisable): after `scheme:` and any slashes, up to `/`, `?`, `#` or the port's `:`,
/// percent-decoded, lowercased.
fn oracle_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once(':')?;
    let rest = rest.trim_start_matches('/');
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') || authority.contains('@') {
        return None;
    }
    let host = authority.split(':').next()?;
    let decoded = percent_decode(host)?;
    if !decoded.is_ascii() {
        return None;
    }
    Some(decoded.to_ascii_lowercase())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The WHATWG URL Standard's "ends in a number" check and IPv4 parser, written from the
/// standard: `None` when the host is not read as IPv4 (a domain), `Some(None)` when it is read
/// as IPv4 but invalid (the whole URL fails), `Some(Some(a))` for an address.
fn whatwg_ipv4(host: &str) -> Option<Option<Ipv4Addr>> {
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
    let limit = 256u128.pow(5 - numbers.len() as u32);
    if u128::from(*last) >= limit {
        return Some(None);
    }
    let mut v: u128 = u128::from(*last);
    for (i, n) in init.iter().enumerate() {
        v += u128::from(*n) << (8 * (3 - i));
    }
    Some(u32::try_from(v).ok().map(Ipv4Addr::from))
}

/// One IPv4 number: decimal, `0`-prefixed octal, or `0x`-prefixed hex (possibly empty).
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
    // Saturate: anything this large is out of range anyway.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}
