//! The client address of an inbound request, behind trusted reverse proxies.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::cidr::CidrList;
use crate::classify::normalize;

/// At most this many list entries (counted from the right) are examined per header.
pub const MAX_FORWARDED_ENTRIES: usize = 64;
/// A single-value header (or one entry) longer than this is ignored as garbage.
const MAX_ENTRY_LEN: usize = 64;
/// At most this many header instances (lines), counted from the right, are examined per header
/// name. The bound drops the left side: lines a client wrote before the proxies appended theirs.
pub const MAX_HEADER_INSTANCES: usize = 16;

/// A request header that a trusted proxy uses to pass the client address on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`: a comma-separated list, each proxy appending the address it saw.
    XForwardedFor,
    /// `X-Real-IP` (nginx): one address.
    XRealIp,
    /// `CF-Connecting-IP` (Cloudflare): one address.
    CfConnectingIp,
    /// `X-Original-Forwarded-For` (some ingress controllers): a list, like `X-Forwarded-For`.
    XOriginalForwardedFor,
    /// `Forwarded` (RFC 7239): a list of elements, each proxy appending one whose `for=`
    /// parameter is the address it saw.
    Forwarded,
}

impl ForwardedHeader {
    /// The header name, lowercase.
    pub const fn header_name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::XRealIp => "x-real-ip",
            ForwardedHeader::CfConnectingIp => "cf-connecting-ip",
            ForwardedHeader::XOriginalForwardedFor => "x-original-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }

    /// Whether the header carries a list of addresses rather than one.
    pub const fn is_list(self) -> bool {
        matches!(
            self,
            ForwardedHeader::XForwardedFor
                | ForwardedHeader::XOriginalForwardedFor
                | ForwardedHeader::Forwarded
        )
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header_name())
    }
}

/// The header name is not one of the supported forwarded headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported forwarded header {0:?} (use x-forwarded-for, forwarded, x-real-ip, cf-connecting-ip or x-original-forwarded-for)"
)]
pub struct UnknownForwardedHeader(pub String);

/// Case-insensitive header names; `-` and `_` are interchangeable (`x_forwarded_for` works in
/// environment variables).
impl FromStr for ForwardedHeader {
    type Err = UnknownForwardedHeader;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match norm.as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "x-real-ip" => ForwardedHeader::XRealIp,
            "cf-connecting-ip" => ForwardedHeader::CfConnectingIp,
            "x-original-forwarded-for" => ForwardedHeader::XOriginalForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            _ => return Err(UnknownForwardedHeader(s.chars().take(64).collect())),
        })
    }
}

impl serde::Serialize for ForwardedHeader {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.header_name())
    }
}

impl<'de> serde::Deserialize<'de> for ForwardedHeader {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which socket peers are trusted reverse proxies, and which headers they set.
///
/// [`ClientIpConfig::client_ip`] returns:
/// - the socket peer, when it is not a trusted proxy (its headers are ignored: anyone can send
///   them);
/// - otherwise, for the first configured header that gives an answer:
///   - list headers (`X-Forwarded-For`, `X-Original-Forwarded-For`, `Forwarded`; every instance
///     of the header, in order, comma lists joined): walking from the right, the first address
///     that is **not** a trusted proxy. If every address is a trusted proxy, the left-most one. An
///     entry that is not an address stops the walk, and the last good address seen is the answer
///     (the peer itself when the right-most entry is already garbage: then the next header is
///     tried). Only the right-most [`MAX_HEADER_INSTANCES`] lines and [`MAX_FORWARDED_ENTRIES`]
///     entries are examined: what a bound leaves out is always on the left, the side a client
///     writes, and the walk then answers with the last trusted proxy it reached, never with an
///     address it did not examine.
///   - single-value headers (`X-Real-IP`, `CF-Connecting-IP`): the address, when the header occurs
///     exactly once and holds exactly one valid address.
/// - the peer, when no header gives an answer.
///
/// Entries are accepted as `1.2.3.4`, `1.2.3.4:port`, `2001:db8::1`, `[2001:db8::1]` and
/// `[2001:db8::1]:port`, with surrounding spaces. Nothing else: no obfuscated forms (`127.1`,
/// `0x7f.0.0.1`, `2130706433`), no zone ids, no quotes, no `unknown`. IPv4-mapped IPv6 is returned
/// as IPv4. In `Forwarded`, an element's `for=` value is read the same way once unquoted (RFC
/// 7239: `for=192.0.2.60`, `for="[2001:db8::1]:4711"`); an element without `for=`, with
/// `for=unknown` or an obfuscated `for=_hidden`, or a line that does not parse as RFC 7239
/// elements, is garbage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClientIpConfig {
    /// Socket peers (and forwarded addresses) that are trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// Headers to read, in order of preference.
    pub headers: Vec<ForwardedHeader>,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            headers: vec![ForwardedHeader::XForwardedFor],
        }
    }
}

impl ClientIpConfig {
    /// The client address of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = normalize(peer);
        let trusted = CidrListRef(&self.trusted_proxies);
        if !trusted.contains(peer) {
            return peer;
        }
        for header in &self.headers {
            let found = if header.is_list() {
                walk_list(*header, headers, peer, &trusted)
            } else {
                single_value(header.header_name(), headers)
            };
            if let Some(ip) = found {
                return ip;
            }
        }
        peer
    }

    /// The trusted proxies as a [`CidrList`].
    pub fn trusted_list(&self) -> CidrList {
        CidrList::from_nets(self.trusted_proxies.iter().copied())
    }
}

/// `CidrList::contains` semantics without copying the vector on every request.
struct CidrListRef<'a>(&'a [IpNet]);

impl CidrListRef<'_> {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.0.iter().any(|n| match (n, ip) {
            // Normalise mapped ranges on the fly, as CidrList would have done.
            (IpNet::V6(_), IpAddr::V4(_)) => crate::cidr::normalize_net(*n).contains(&ip),
            _ => n.contains(&ip),
        })
    }
}

fn walk_list(
    header: ForwardedHeader,
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &CidrListRef<'_>,
) -> Option<IpAddr> {
    // From the right: the last line is the one the nearest proxy wrote.
    let mut walk = Walk {
        current: peer,
        examined: 0,
    };
    for (n, value) in headers.get_all(header.header_name()).iter().rev().enumerate() {
        if n >= MAX_HEADER_INSTANCES {
            // Older lines are left unread: the answer is the last trusted hop reached.
            return walk.stop();
        }
        let Ok(value) = value.to_str() else {
            // Not visible ASCII: garbage at this position stops the walk.
            return walk.stop();
        };
        if value.trim_matches([' ', '\t']).is_empty() {
            // An empty header instance carries nothing.
            continue;
        }
        let step = if header == ForwardedHeader::Forwarded {
            match forwarded_for_entries(value) {
                Some(entries) => walk.entries(entries.into_iter().rev(), trusted),
                None => Step::Stop,
            }
        } else {
            walk.entries(
                value
                    .rsplit(',')
                    .map(|e| parse_forwarded_entry(e.trim_matches([' ', '\t']))),
                trusted,
            )
        };
        match step {
            Step::Continue => {}
            Step::Found(ip) => return Some(ip),
            Step::Stop => return walk.stop(),
        }
    }
    walk.stop()
}

/// The state of a right-to-left walk: the last trusted hop reached, and how many entries were
/// examined.
struct Walk {
    current: IpAddr,
    examined: usize,
}

enum Step {
    /// Every entry of the line was a trusted proxy: go on left.
    Continue,
    /// The right-most address that is not a trusted proxy.
    Found(IpAddr),
    /// Garbage or the bound: stop here.
    Stop,
}

impl Walk {
    /// Walks the entries of one line, right-most first (`None`: an entry that is not an address).
    fn entries(
        &mut self,
        entries: impl Iterator<Item = Option<IpAddr>>,
        trusted: &CidrListRef<'_>,
    ) -> Step {
        for entry in entries {
            if self.examined >= MAX_FORWARDED_ENTRIES {
                return Step::Stop;
            }
            let Some(ip) = entry else {
                return Step::Stop;
            };
            self.examined += 1;
            if !trusted.contains(ip) {
                return Step::Found(ip);
            }
            self.current = ip;
        }
        Step::Continue
    }

    /// The answer when the walk stops without an untrusted address: the last trusted hop, or
    /// nothing (try the next header) when no entry was examined.
    fn stop(&self) -> Option<IpAddr> {
        (self.examined > 0).then_some(self.current)
    }
}

/// The `for=` address of each element of one `Forwarded` line, in order (`None` for an element
/// whose `for` is missing, `unknown`, obfuscated or not an address). `None` when the line is not
/// a list of RFC 7239 elements (unbalanced quotes, a pair without `=`, an empty parameter name).
/// At most the right-most [`MAX_FORWARDED_ENTRIES`] elements are kept.
pub fn forwarded_for_entries(line: &str) -> Option<Vec<Option<IpAddr>>> {
    let mut out: std::collections::VecDeque<Option<IpAddr>> = std::collections::VecDeque::new();
    for element in split_unquoted(line, b',')? {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            // `a,,b`: RFC 7230 lists allow empty elements.
            continue;
        }
        let mut addr = None;
        let mut seen_for = false;
        for pair in split_unquoted(element, b';')? {
            let pair = pair.trim_matches([' ', '\t']);
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=')?;
            let name = name.trim_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return None;
            }
            let value = unquote(value.trim_matches([' ', '\t']))?;
            if name.eq_ignore_ascii_case("for") {
                if seen_for {
                    // Two `for` in one element: ambiguous.
                    addr = None;
                    break;
                }
                seen_for = true;
                addr = parse_forwarded_entry(&value);
            }
        }
        if out.len() == MAX_FORWARDED_ENTRIES {
            out.pop_front();
        }
        out.push_back(addr);
    }
    Some(out.into())
}

/// The value of parameter `name` in the right-most element of one `Forwarded` line (`proto` of
/// the nearest proxy, say). `None` when it is absent or the line does not parse.
pub fn forwarded_last_param(line: &str, name: &str) -> Option<String> {
    let elements = split_unquoted(line, b',')?;
    let last = elements
        .iter()
        .rev()
        .map(|e| e.trim_matches([' ', '\t']))
        .find(|e| !e.is_empty())?;
    for pair in split_unquoted(last, b';')? {
        let (k, v) = pair.trim_matches([' ', '\t']).split_once('=')?;
        if k.trim_matches([' ', '\t']).eq_ignore_ascii_case(name) {
            return unquote(v.trim_matches([' ', '\t']));
        }
    }
    None
}

/// Splits `s` at `sep` outside quoted strings; `None` when a quote is not closed.
fn split_unquoted(s: &str, sep: u8) -> Option<Vec<&str>> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == sep {
            parts.push(s.get(start..i)?);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(s.get(start..)?);
    Some(parts)
}

/// A parameter value: a token, or a quoted string (quotes removed, `\x` escapes resolved).
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.is_empty() && v.bytes().all(|b| is_tchar(b) || b == b'[' || b == b']' || b == b':'))
            .then(|| v.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn single_value(name: &'static str, headers: &HeaderMap) -> Option<IpAddr> {
    let mut all = headers.get_all(name).iter();
    let value = all.next()?;
    if all.next().is_some() {
        // Several instances: ambiguous, ignore.
        return None;
    }
    parse_forwarded_entry(value.to_str().ok()?.trim_matches([' ', '\t']))
}

/// One forwarded address: `ip`, `ipv4:port`, `[ipv6]`, `[ipv6]:port`. `None` for anything else.
pub fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    if entry.is_empty() || entry.len() > MAX_ENTRY_LEN {
        return None;
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port_suffix(after)) {
            return None;
        }
        let ip: std::net::Ipv6Addr = inner.parse().ok()?;
        return Some(normalize(IpAddr::V6(ip)));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    // `1.2.3.4:port` (an IPv6 address with a port must be bracketed).
    if let Ok(sa) = entry.parse::<SocketAddr>()
        && sa.is_ipv4()
    {
        return Some(sa.ip());
    }
    None
}

fn valid_port_suffix(s: &str) -> bool {
    match s.strip_prefix(':') {
        Some(p) => !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    fn nets(s: &str) -> Vec<IpNet> {
        CidrList::parse(s).expect("nets").into_vec()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    fn cfg(trusted: &str) -> ClientIpConfig {
        ClientIpConfig {
            trusted_proxies: nets(trusted),
            headers: vec![ForwardedHeader::XForwardedFor],
        }
    }

    #[test]
    fn entries() {
        for (s, want) in [
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4 ", None), // trimmed by the caller, not here
            ("1.2.3.4:8080", Some("1.2.3.4")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("[::ffff:1.2.3.4]:1", Some("1.2.3.4")),
            ("[2001:db8::1]:", None),
            ("[2001:db8::1]:99999", None),
            ("[2001:db8::1]x", None),
            ("[1.2.3.4]", None),
            ("2001:db8::1:443", Some("2001:db8::1:443")),
            ("1.2.3.4:", None),
            ("1.2.3.4:port", None),
            ("unknown", None),
            ("_hidden", None),
            ("127.1", None),
            ("0x7f.0.0.1", None),
            ("2130706433", None),
            ("0177.0.0.1", None),
            ("fe80::1%eth0", None),
            ("\"1.2.3.4\"", None),
            ("", None),
        ] {
            assert_eq!(parse_forwarded_entry(s), want.map(ip), "{s:?}");
        }
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let c = cfg("10.0.0.0/8");
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(c.client_ip(ip("203.0.113.7"), &h), ip("203.0.113.7"));
        // No trusted proxies at all (the default): always the peer.
        let d = ClientIpConfig::default();
        assert_eq!(d.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert_eq!(d.headers, vec![ForwardedHeader::XForwardedFor]);
    }

    #[test]
    fn xff_right_most_untrusted() {
        let c = cfg("10.0.0.0/8, 192.168.0.0/16");
        let peer = ip("10.0.0.1");
        for (xff, want) in [
            ("203.0.113.7", "203.0.113.7"),
            // A client-supplied spoof on the left is skipped: the right-most untrusted wins.
            ("1.1.1.1, 203.0.113.7", "203.0.113.7"),
            ("1.1.1.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
            ("1.1.1.1,203.0.113.7,192.168.1.1,10.0.0.2", "203.0.113.7"),
            // All trusted: the left-most.
            ("10.0.0.3, 192.168.0.9", "10.0.0.3"),
            // Spoofed trusted-looking entry on the left is irrelevant.
            ("10.9.9.9, 203.0.113.7", "203.0.113.7"),
            // Ports and brackets.
            ("203.0.113.7:5555, 10.0.0.2:80", "203.0.113.7"),
            ("[2001:db8::7]:443, 10.0.0.2", "2001:db8::7"),
            // A bracketed IPv4 address is not a valid entry.
            ("203.0.113.7, [10.0.0.2]", "10.0.0.1"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            // Garbage stops the walk: last good address (a trusted proxy) is the answer.
            ("203.0.113.7, garbage, 10.0.0.2", "10.0.0.2"),
            ("203.0.113.7, 127.1, 10.0.0.2", "10.0.0.2"),
            ("203.0.113.7, 0x7f.0.0.1", "10.0.0.1"),
            // Garbage right away: header gives nothing, peer.
            ("nonsense", "10.0.0.1"),
            ("", "10.0.0.1"),
            (",,,", "10.0.0.1"),
            // Mapped forms are normalised before the trust check.
            ("203.0.113.7, ::ffff:10.0.0.2", "203.0.113.7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(c.client_ip(peer, &h), ip(want), "{xff:?}");
        }
    }

    #[test]
    fn xff_multiple_instances_joined_in_order() {
        let c = cfg("10.0.0.0/8");
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.5"),
        ]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.5"),
        ]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn xff_bounded() {
        let c = cfg("10.0.0.0/8");
        // 1000 trusted entries after the real client: only the right-most 64 are examined.
        let mut xff = String::from("203.0.113.7");
        for _ in 0..1000 {
            xff.push_str(", 10.0.0.9");
        }
        let h = headers(&[("x-forwarded-for", &xff)]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.9"));
        // A huge entry is garbage.
        let h = headers(&[("x-forwarded-for", &"9".repeat(10_000))]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    /// The review's attack: 16 forged lines of an allowed address, then the line the trusted
    /// proxy appended with the real client. The bound must drop the forged left side.
    #[test]
    fn forged_lines_cannot_push_the_proxy_line_out_of_view() {
        let c = cfg("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        for forged in [1usize, 15, 16, 17, 40, 99] {
            let mut h = HeaderMap::new();
            for _ in 0..forged {
                h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.10"));
            }
            h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
            assert_eq!(c.client_ip(peer, &h), ip("203.0.113.7"), "{forged} forged lines");
        }
        // Trusted hops on the right beyond the line bound: the answer is the last trusted hop
        // examined, never an address from the unexamined (client-written) left side.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.10"));
        for i in 0..MAX_HEADER_INSTANCES + 3 {
            let v = format!("10.0.1.{i}");
            h.append("x-forwarded-for", HeaderValue::from_str(&v).unwrap());
        }
        let got = c.client_ip(peer, &h);
        assert_eq!(got, ip(&format!("10.0.1.{}", 3)), "the left-most examined line");
        // The same with `Forwarded`.
        let c = ClientIpConfig {
            trusted_proxies: nets("10.0.0.0/8"),
            headers: vec![ForwardedHeader::Forwarded],
        };
        let mut h = HeaderMap::new();
        for _ in 0..40 {
            h.append("forwarded", HeaderValue::from_static("for=198.51.100.10"));
        }
        h.append("forwarded", HeaderValue::from_static("for=203.0.113.7;proto=https"));
        assert_eq!(c.client_ip(peer, &h), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_rfc7239() {
        let c = ClientIpConfig {
            trusted_proxies: nets("10.0.0.0/8"),
            headers: vec![ForwardedHeader::Forwarded],
        };
        let peer = ip("10.0.0.1");
        for (v, want) in [
            ("for=203.0.113.7", "203.0.113.7"),
            ("For=203.0.113.7", "203.0.113.7"),
            ("for=\"203.0.113.7\"", "203.0.113.7"),
            ("for=\"203.0.113.7:4711\"", "203.0.113.7"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\";proto=https;by=10.0.0.2", "2001:db8:cafe::17"),
            ("for=192.0.2.1, for=203.0.113.7", "203.0.113.7"),
            ("for=192.0.2.1, for=203.0.113.7;by=x, for=10.0.0.3", "203.0.113.7"),
            ("for=192.0.2.1,for=203.0.113.7 , for=10.0.0.3;proto=http", "203.0.113.7"),
            ("proto=https;for=203.0.113.7", "203.0.113.7"),
            // A comma inside a quoted string does not split elements.
            ("for=192.0.2.1;x=\"a, for=10.9.9.9\", for=203.0.113.7", "203.0.113.7"),
            // Garbage stops the walk: the last trusted hop, or the peer.
            ("for=203.0.113.7, for=unknown, for=10.0.0.3", "10.0.0.3"),
            ("for=203.0.113.7, for=_hidden", "10.0.0.1"),
            ("for=203.0.113.7, by=10.0.0.3", "10.0.0.1"),
            ("for=203.0.113.7, for=10.0.0.3;for=10.0.0.4", "10.0.0.1"),
            ("for=\"203.0.113.7", "10.0.0.1"),
            ("for", "10.0.0.1"),
            ("=1.2.3.4", "10.0.0.1"),
            ("for=127.1", "10.0.0.1"),
            ("for=\"[10.0.0.1]\"", "10.0.0.1"),
        ] {
            let h = headers(&[("forwarded", v)]);
            assert_eq!(c.client_ip(peer, &h), ip(want), "{v:?}");
        }
        assert_eq!(
            forwarded_for_entries("for=1.2.3.4;proto=https, for=\"[::1]:80\""),
            Some(vec![Some(ip("1.2.3.4")), Some(ip("::1"))])
        );
        assert_eq!(forwarded_for_entries("for=\"1.2.3.4"), None);
        assert_eq!(forwarded_for_entries("for 1.2.3.4"), None);
        // Long lines keep the right-most elements.
        let long = vec!["for=192.0.2.1"; 500].join(", ") + ", for=203.0.113.9";
        let e = forwarded_for_entries(&long).unwrap();
        assert_eq!(e.len(), MAX_FORWARDED_ENTRIES);
        assert_eq!(e.last(), Some(&Some(ip("203.0.113.9"))));
    }

    #[test]
    fn single_value_header_sent_by_the_client_and_the_proxy_is_not_believed() {
        // The client sends its own X-Real-IP and a proxy that appends instead of replacing adds
        // the real one: two lines are ambiguous, and the walk falls back to the next header.
        let c = ClientIpConfig {
            trusted_proxies: nets("10.0.0.0/8"),
            headers: vec![ForwardedHeader::XRealIp, ForwardedHeader::XForwardedFor],
        };
        let h = headers(&[
            ("x-real-ip", "198.51.100.10"),
            ("x-real-ip", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.10, 203.0.113.7"),
        ]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn non_ascii_header_is_garbage() {
        let c = cfg("10.0.0.0/8");
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.7, \xff").expect("obs-text is allowed"),
        );
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn single_value_headers() {
        let c = ClientIpConfig {
            trusted_proxies: nets("10.0.0.0/8"),
            headers: vec![ForwardedHeader::CfConnectingIp, ForwardedHeader::XRealIp],
        };
        let peer = ip("10.0.0.1");
        let h = headers(&[
            ("cf-connecting-ip", "203.0.113.7"),
            ("x-real-ip", "198.51.100.1"),
        ]);
        assert_eq!(c.client_ip(peer, &h), ip("203.0.113.7"));
        let h = headers(&[("cf-connecting-ip", "bogus"), ("x-real-ip", "198.51.100.1")]);
        assert_eq!(c.client_ip(peer, &h), ip("198.51.100.1"));
        let h = headers(&[("x-real-ip", " [2001:db8::1]:80 ")]);
        assert_eq!(c.client_ip(peer, &h), ip("2001:db8::1"));
        // Two instances are ambiguous; a list in a single-value header is garbage.
        let h = headers(&[("x-real-ip", "198.51.100.1"), ("x-real-ip", "198.51.100.2")]);
        assert_eq!(c.client_ip(peer, &h), peer);
        let h = headers(&[("x-real-ip", "198.51.100.1, 198.51.100.2")]);
        assert_eq!(c.client_ip(peer, &h), peer);
        // Headers not configured are ignored.
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(c.client_ip(peer, &h), peer);
    }

    #[test]
    fn header_preference_order() {
        let c = ClientIpConfig {
            trusted_proxies: nets("10.0.0.0/8"),
            headers: vec![
                ForwardedHeader::XOriginalForwardedFor,
                ForwardedHeader::XForwardedFor,
            ],
        };
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-original-forwarded-for", "203.0.113.7, 10.0.0.3"),
        ]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        let h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn mapped_peer_and_mapped_trusted_range() {
        let c = ClientIpConfig {
            trusted_proxies: vec!["::ffff:10.0.0.0/104".parse().expect("net")],
            headers: vec![ForwardedHeader::XForwardedFor],
        };
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(c.client_ip(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.7"));
        assert_eq!(c.client_ip(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        assert_eq!(c.client_ip(ip("::ffff:11.0.0.1"), &h), ip("11.0.0.1"));
    }

    #[test]
    fn header_names_parse() {
        assert_eq!(
            "X-Forwarded-For".parse(),
            Ok(ForwardedHeader::XForwardedFor)
        );
        assert_eq!("x_real_ip".parse(), Ok(ForwardedHeader::XRealIp));
        assert_eq!(
            "CF-Connecting-IP".parse(),
            Ok(ForwardedHeader::CfConnectingIp)
        );
        assert_eq!(
            "x-original-forwarded-for".parse(),
            Ok(ForwardedHeader::XOriginalForwardedFor)
        );
        assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert!("forwarded-for".parse::<ForwardedHeader>().is_err());
    }
}
