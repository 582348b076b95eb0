//! Fuzz properties of the forwarded client-address walk (`ClientIpConfig::client_ip`).
//!
//! The input picks trusted proxy ranges, the configured headers, the socket peer, and up to 24
//! header lines built from addresses (with ports, brackets, mapped forms), garbage and raw bytes.
//! Whatever the result `r` is:
//!
//! - it never panics;
//! - with an untrusted peer, `r` is the peer;
//! - otherwise `r` is the peer or an address that appears in one of the configured headers, and
//!   for a list header it is never to the LEFT of an untrusted hop: in the examined window (the
//!   right-most 16 lines, the right-most 64 entries) every entry to the right of `r` is an
//!   address of a trusted proxy. Garbage, blank entries and non-ASCII lines to the right of `r`
//!   would have stopped the walk, so they count as untrusted here;
//! - a single-value header answers only when it occurs exactly once.
//!
//! Entries are read here by an independent parser of the documented forms (`ip`, `ipv4:port`,
//! `[ipv6]`, `[ipv6]:port`; `Forwarded: for=…` with optional quotes).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use hookwarden_netguard::{ClientIpConfig, ForwardedHeader, IpNet, MAX_FORWARDED_ENTRIES};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::{Ipv4Net, Ipv6Net};

use super::input::Input;

/// The line bound: only the right-most this many lines of one header are examined.
const MAX_LINES: usize = 16;

const RANGES: [&str; 7] = [
    "10.0.0.0/8",
    "192.168.0.0/16",
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "203.0.113.0/24",
    "0.0.0.0/0",
    "::/0",
];

const ADDRS: [&str; 10] = [
    "10.0.0.1",
    "10.9.9.9",
    "192.168.1.1",
    "::ffff:10.0.0.2",
    "2001:db8::5",
    "203.0.113.7",
    "198.51.100.1",
    "1.1.1.1",
    "2606:4700::1",
    "::1",
];

/// Every configurable header, in a fixed order.
fn all_headers() -> Vec<ForwardedHeader> {
    [
        "x-forwarded-for",
        "x-real-ip",
        "cf-connecting-ip",
        "x-original-forwarded-for",
        "forwarded",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let all = all_headers();
    let trusted: Vec<IpNet> = (0..input.u8() % 4)
        .map(|_| {
            RANGES[usize::from(input.u8()) % RANGES.len()]
                .parse()
                .expect("static")
        })
        .collect();
    let headers: Vec<ForwardedHeader> = (0..input.u8() % 3 + 1)
        .map(|_| all[usize::from(input.u8()) % all.len()])
        .collect();
    let peer = address(&mut input);
    let mut map = HeaderMap::new();
    // Often every line on the first configured header, so the 16-line bound is crossed.
    let one_header = input.bool();
    for _ in 0..input.u8() % 25 {
        let pick = input.u8();
        let name = match pick % 8 {
            _ if one_header => headers[0].header_name(),
            n if usize::from(n) < all.len() => all[usize::from(n)].header_name(),
            _ => "x-other",
        };
        let value = line(&mut input, name == "forwarded");
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    let config = ClientIpConfig {
        trusted_proxies: trusted.clone(),
        headers: headers.clone(),
    };
    let r = config.client_ip(peer, &map);
    let is_trusted = |ip: IpAddr| {
        let ip = norm(ip);
        trusted.iter().any(|n| norm_net(*n).contains(&ip))
    };
    if !is_trusted(peer) {
        assert_eq!(r, norm(peer), "untrusted peer {peer}: answer {r}");
        return;
    }
    if r == norm(peer) {
        return;
    }
    let mut reasons = Vec::new();
    for h in &headers {
        match explains(*h, &map, r, &is_trusted) {
            Ok(()) => return,
            Err(why) => reasons.push(format!("{h}: {why}")),
        }
    }
    panic!(
        "client_ip = {r} (peer {peer}, trusted {trusted:?}, headers {headers:?}) is not justified:\n{}\n{map:?}",
        reasons.join("\n")
    );
}

/// Whether header `h` justifies the answer `r`.
fn explains(
    h: ForwardedHeader,
    map: &HeaderMap,
    r: IpAddr,
    is_trusted: &dyn Fn(IpAddr) -> bool,
) -> Result<(), String> {
    let name = h.header_name();
    let lines: Vec<&HeaderValue> = map.get_all(name).iter().collect();
    if !h.is_list() {
        if lines.len() != 1 {
            return Err(format!(
                "{} instances of a single-value header",
                lines.len()
            ));
        }
        let v = lines[0].to_str().map_err(|_| "not ASCII".to_owned())?;
        return match entry(v) {
            Some(ip) if ip == r => Ok(()),
            other => Err(format!("holds {other:?}")),
        };
    }
    // The examined window: the right-most lines, entries right to left.
    let window = &lines[lines.len().saturating_sub(MAX_LINES)..];
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for v in window {
        let Ok(text) = v.to_str() else {
            entries.push(None);
            continue;
        };
        if text.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        if name == "forwarded" {
            entries.extend(forwarded_entries(text));
        } else {
            entries.extend(text.split(',').map(entry));
        }
    }
    let Some(pos) = entries.iter().rposition(|e| *e == Some(r)) else {
        return Err("the answer does not appear in the window".into());
    };
    let right = &entries[pos + 1..];
    if right.len() >= MAX_FORWARDED_ENTRIES {
        return Err(format!("{} entries right of the answer", right.len()));
    }
    for e in right {
        match e {
            Some(ip) if is_trusted(*ip) => {}
            Some(ip) => return Err(format!("untrusted hop {ip} right of the answer")),
            None => return Err("garbage right of the answer".into()),
        }
    }
    Ok(())
}

/// `Forwarded` elements' `for=` values, left to right (RFC 7239: elements split at commas
/// outside quoted strings, empty elements skipped, quoted values unescaped). An element without
/// a usable `for=`, and a line that is not well formed (an unclosed quote), count as garbage.
fn forwarded_entries(text: &str) -> Vec<Option<IpAddr>> {
    let Some(elements) = split_outside_quotes(text, ',') else {
        return vec![None];
    };
    let mut out = Vec::new();
    for element in elements {
        if element.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        let mut found = None;
        for pair in split_outside_quotes(&element, ';').unwrap_or_default() {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim_matches([' ', '\t']).eq_ignore_ascii_case("for") {
                let v = v.trim_matches([' ', '\t']);
                let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(inner) => unescape(inner),
                    None => v.to_owned(),
                };
                found = entry(&v);
            }
        }
        out.push(found);
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
        } else if c == '"' {
            quoted = true;
        } else if c == sep {
            parts.push(String::new());
            continue;
        }
        parts.last_mut()?.push(c);
    }
    (!quoted).then_some(parts)
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One entry in a documented form, normalised (mapped IPv6 → IPv4).
fn entry(s: &str) -> Option<IpAddr> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() {
            let port = after.strip_prefix(':')?;
            if port.is_empty() || port.len() > 5 || port.parse::<u16>().is_err() {
                return None;
            }
        }
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| norm(IpAddr::V6(ip)));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(norm(ip));
    }
    s.parse::<SocketAddrV4>()
        .ok()
        .map(|sa| IpAddr::V4(*sa.ip()))
}

fn norm(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..6] == [0, 0, 0, 0, 0, 0xffff] {
                let o = v6.octets();
                IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            } else {
                ip
            }
        }
        IpAddr::V4(_) => ip,
    }
}

fn norm_net(net: IpNet) -> IpNet {
    let mapped = Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).expect("static");
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 && mapped.contains(&n.network()) => {
            let o = n.network().octets();
            IpNet::V4(
                Ipv4Net::new(
                    Ipv4Addr::new(o[12], o[13], o[14], o[15]),
                    n.prefix_len() - 96,
                )
                .expect("≤ 32"),
            )
        }
        other => other,
    }
}

fn address(input: &mut Input<'_>) -> IpAddr {
    match input.u8() % 4 {
        0 => IpAddr::V4(Ipv4Addr::from(input.u32())),
        _ => ADDRS[usize::from(input.u8()) % ADDRS.len()]
            .parse()
            .expect("static"),
    }
}

/// One header line: entries in the documented forms, garbage, raw bytes.
fn line(input: &mut Input<'_>, forwarded: bool) -> Vec<u8> {
    if input.u8().is_multiple_of(8) {
        return input.bytes(80).to_vec();
    }
    let mut out = String::new();
    for i in 0..input.u8() % 5 {
        if i > 0 {
            out.push_str([",", ", ", " , ", ",\t"][usize::from(input.u8() % 4)]);
        }
        let ip = address(input);
        let text = match (input.u8() % 8, ip) {
            (0, _) => [
                "unknown",
                "_hidden",
                "127.1",
                "",
                "garbage",
                "[1.2.3.4]",
                "0x7f.0.0.1",
            ][usize::from(input.u8() % 7)]
            .to_owned(),
            (1, IpAddr::V4(v4)) => format!("{v4}:{}", input.u16()),
            (1, IpAddr::V6(v6)) => format!("[{v6}]:{}", input.u16()),
            (2, IpAddr::V6(v6)) => format!("[{v6}]"),
            (3, IpAddr::V4(v4)) => format!("::ffff:{v4}"),
            _ => ip.to_string(),
        };
        if forwarded {
            let quoted = text.contains(':') || input.bool();
            let v = if quoted { format!("\"{text}\"") } else { text };
            match input.u8() % 4 {
                0 => out.push_str(&format!("for={v}")),
                1 => out.push_str(&format!("proto=https;For={v};by=10.0.0.1")),
                2 => out.push_str(&format!("by={v}")),
                _ => out.push_str(&format!("for={v};host=example.com")),
            }
        } else {
            out.push_str(&text);
        }
    }
    out.into_bytes()
}
