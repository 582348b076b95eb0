//! One classification of IP addresses.
//!
//! [`classify`] sorts every IPv4 and IPv6 address into [`Category::Public`] or one special-purpose
//! category. Every category other than `Public` is denied by default by
//! [`AddressPolicy`](crate::AddressPolicy); operators lift denials with allow ranges.
//!
//! # Addresses that embed an IPv4 address
//!
//! Several IPv6 forms carry an IPv4 address inside them. They are judged as what they embed:
//!
//! | form | prefix | embedded IPv4 | result |
//! |---|---|---|---|
//! | IPv4-mapped | `::ffff:0:0/96` | low 32 bits | exactly the category of the embedded IPv4 address (the mapped form *is* that address on a dual-stack socket) |
//! | IPv4-compatible (deprecated) | `::/96` (except `::` and `::1`) | low 32 bits | the embedded address's category when it is special, else [`Category::Ipv4Compatible`] |
//! | NAT64 well-known prefix | `64:ff9b::/96` | low 32 bits | the embedded address's category when it is special, else [`Category::Nat64`] |
//! | NAT64 local-use prefix | `64:ff9b:1::/48` | site-specific position, not extracted | always [`Category::Nat64`] |
//! | 6to4 | `2002::/16` | bits 16..48 | the embedded address's category when it is special, else [`Category::SixToFour`] |
//! | Teredo | `2001::/32` | server: bits 32..64, client: bits 96..128 inverted | the first special category of server or client, else [`Category::Teredo`] |
//!
//! So `::ffff:127.0.0.1`, `64:ff9b::7f00:1` and `2002:7f00:1::` are all `loopback`, while
//! `64:ff9b::5db8:d822` (NAT64 for a public address) is `nat64`: translation forms are *not*
//! public, because the packet goes to a translator or relay (often inside the operator's own
//! network) rather than straight to the destination. An operator whose egress really is an IPv6-only
//! network behind NAT64 allows `64:ff9b::/96`; see [`AddressPolicy`](crate::AddressPolicy) for how
//! the embedded address is still checked then.
//!
//! # IPv6 outside global unicast
//!
//! Only `2000::/3` is allocated for global unicast. Any IPv6 address outside it that is not in a
//! named category is [`Category::Reserved`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The category of an IP address. Every variant except [`Category::Public`] is special-purpose
/// and denied by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// A globally routable unicast address.
    Public,
    /// `0.0.0.0/8` ("this network"; connecting to `0.0.0.0` reaches the local host on Linux) and `::`.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// IPv6 unique local addresses `fc00::/7` (the IPv6 counterpart of RFC 1918).
    UniqueLocal,
    /// Shared address space for carrier-grade NAT, `100.64.0.0/10`.
    Cgnat,
    /// `169.254.0.0/16` (including cloud metadata `169.254.169.254`) and `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// Limited broadcast `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// `240.0.0.0/4` and unallocated IPv6 space (outside `2000::/3` and every named block).
    Reserved,
    /// IETF protocol assignments: `192.0.0.0/24` and the rest of `2001::/23`.
    IetfProtocol,
    /// The deprecated 6to4 relay anycast block `192.88.99.0/24`.
    SixToFourRelay,
    /// Deprecated IPv6 site-local `fec0::/10`.
    SiteLocal,
    /// Deprecated IPv4-compatible IPv6 `::/96` embedding a public IPv4 address.
    Ipv4Compatible,
    /// Discard-only `100::/64`.
    DiscardOnly,
    /// NAT64 `64:ff9b::/96` embedding a public IPv4 address, and all of `64:ff9b:1::/48`.
    Nat64,
    /// 6to4 `2002::/16` embedding a public IPv4 address.
    SixToFour,
    /// Teredo `2001::/32` whose embedded server and client addresses are public.
    Teredo,
}

impl Category {
    /// Every category, for documentation and exhaustive tests.
    pub const ALL: [Category; 20] = [
        Category::Public,
        Category::Unspecified,
        Category::Loopback,
        Category::Private,
        Category::UniqueLocal,
        Category::Cgnat,
        Category::LinkLocal,
        Category::Multicast,
        Category::Broadcast,
        Category::Documentation,
        Category::Benchmarking,
        Category::Reserved,
        Category::IetfProtocol,
        Category::SixToFourRelay,
        Category::SiteLocal,
        Category::Ipv4Compatible,
        Category::DiscardOnly,
        Category::Nat64,
        Category::SixToFour,
        Category::Teredo,
    ];

    /// A stable machine-readable name (`"public"`, `"loopback"`, `"link_local"`, …).
    pub const fn code(self) -> &'static str {
        match self {
            Category::Public => "public",
            Category::Unspecified => "unspecified",
            Category::Loopback => "loopback",
            Category::Private => "private",
            Category::UniqueLocal => "unique_local",
            Category::Cgnat => "cgnat",
            Category::LinkLocal => "link_local",
            Category::Multicast => "multicast",
            Category::Broadcast => "broadcast",
            Category::Documentation => "documentation",
            Category::Benchmarking => "benchmarking",
            Category::Reserved => "reserved",
            Category::IetfProtocol => "ietf_protocol",
            Category::SixToFourRelay => "6to4_relay",
            Category::SiteLocal => "site_local",
            Category::Ipv4Compatible => "ipv4_compatible",
            Category::DiscardOnly => "discard_only",
            Category::Nat64 => "nat64",
            Category::SixToFour => "6to4",
            Category::Teredo => "teredo",
        }
    }

    /// A short human description, suitable for an error message.
    pub const fn description(self) -> &'static str {
        match self {
            Category::Public => "a public address",
            Category::Unspecified => "an unspecified (\"this network\") address",
            Category::Loopback => "a loopback address",
            Category::Private => "a private (RFC 1918) address",
            Category::UniqueLocal => "an IPv6 unique local address",
            Category::Cgnat => "a carrier-grade NAT shared address",
            Category::LinkLocal => "a link-local address",
            Category::Multicast => "a multicast address",
            Category::Broadcast => "the broadcast address",
            Category::Documentation => "a documentation address",
            Category::Benchmarking => "a benchmarking address",
            Category::Reserved => "a reserved address",
            Category::IetfProtocol => "an IETF protocol assignment",
            Category::SixToFourRelay => "a 6to4 relay anycast address",
            Category::SiteLocal => "a deprecated IPv6 site-local address",
            Category::Ipv4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Category::DiscardOnly => "a discard-only address",
            Category::Nat64 => "a NAT64 translation address",
            Category::SixToFour => "a 6to4 translation address",
            Category::Teredo => "a Teredo tunnel address",
        }
    }

    /// `true` only for [`Category::Public`].
    pub const fn is_public(self) -> bool {
        matches!(self, Category::Public)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Classify an address. See the [module documentation](self) for the rules.
pub fn classify(ip: IpAddr) -> Category {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Classify an IPv4 address.
pub fn classify_v4(ip: Ipv4Addr) -> Category {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Category::Unspecified,
        (10, _, _) => Category::Private,
        (100, 64..=127, _) => Category::Cgnat,
        (127, _, _) => Category::Loopback,
        (169, 254, _) => Category::LinkLocal,
        (172, 16..=31, _) => Category::Private,
        (192, 0, 0) => Category::IetfProtocol,
        (192, 0, 2) => Category::Documentation,
        (192, 88, 99) => Category::SixToFourRelay,
        (192, 168, _) => Category::Private,
        (198, 18..=19, _) => Category::Benchmarking,
        (198, 51, 100) => Category::Documentation,
        (203, 0, 113) => Category::Documentation,
        (224..=239, _, _) => Category::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Category::Broadcast,
        (240..=255, _, _) => Category::Reserved,
        _ => Category::Public,
    }
}

/// Classify an IPv6 address (IPv4-mapped addresses are classified as the IPv4 address they map).
pub fn classify_v6(ip: Ipv6Addr) -> Category {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Category::Unspecified;
    }
    if ip.is_loopback() {
        return Category::Loopback;
    }
    // ::/96, IPv4-compatible (deprecated).
    if seg[..6] == [0; 6] {
        return embedded_or(low_v4(ip), Category::Ipv4Compatible);
    }
    // 64:ff9b::/96, NAT64 well-known prefix.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded_or(low_v4(ip), Category::Nat64);
    }
    // 64:ff9b:1::/48, NAT64 local-use prefix: the embedding is site-specific.
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Category::Nat64;
    }
    // 100::/64, discard-only.
    if seg[..4] == [0x100, 0, 0, 0] {
        return Category::DiscardOnly;
    }
    // 2001::/32, Teredo: server IPv4 in bits 32..64, client IPv4 inverted in bits 96..128.
    if seg[0] == 0x2001 && seg[1] == 0 {
        let server = v4_from_segments(seg[2], seg[3]);
        let client = v4_from_segments(!seg[6], !seg[7]);
        let server_cat = classify_v4(server);
        if !server_cat.is_public() {
            return server_cat;
        }
        return embedded_or(client, Category::Teredo);
    }
    // 2001:2::/48, benchmarking.
    if seg[0] == 0x2001 && seg[1] == 2 && seg[2] == 0 {
        return Category::Benchmarking;
    }
    // 2001:db8::/32, documentation.
    if seg[0] == 0x2001 && seg[1] == 0xdb8 {
        return Category::Documentation;
    }
    // 2001::/23, the rest of the IETF protocol assignments.
    if seg[0] == 0x2001 && seg[1] < 0x200 {
        return Category::IetfProtocol;
    }
    // 2002::/16, 6to4.
    if seg[0] == 0x2002 {
        return embedded_or(v4_from_segments(seg[1], seg[2]), Category::SixToFour);
    }
    // 3fff::/20, documentation (RFC 9637).
    if seg[0] == 0x3fff && seg[1] < 0x1000 {
        return Category::Documentation;
    }
    // 2000::/3, global unicast.
    if seg[0] & 0xe000 == 0x2000 {
        return Category::Public;
    }
    match seg[0] {
        0xfc00..=0xfdff => Category::UniqueLocal,
        0xfe80..=0xfebf => Category::LinkLocal,
        0xfec0..=0xfeff => Category::SiteLocal,
        0xff00..=0xffff => Category::Multicast,
        _ => Category::Reserved,
    }
}

/// The IPv4 address embedded in an IPv6 translation form, when there is one that can be
/// extracted: IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4, and Teredo (the client
/// address; the server address is checked by [`embedded_ipv4s`]).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let mut out = [None, None];
    embedded_into(ip, &mut out);
    out[0]
}

/// Every IPv4 address embedded in `ip` (at most two: Teredo carries a server and a client).
pub(crate) fn embedded_ipv4s(ip: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
    let mut out = [None, None];
    embedded_into(ip, &mut out);
    out
}

fn embedded_into(ip: Ipv6Addr, out: &mut [Option<Ipv4Addr>; 2]) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out[0] = Some(v4);
        return;
    }
    let seg = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() {
        return;
    }
    if seg[..6] == [0; 6] || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        out[0] = Some(low_v4(ip));
    } else if seg[0] == 0x2002 {
        out[0] = Some(v4_from_segments(seg[1], seg[2]));
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        out[0] = Some(v4_from_segments(!seg[6], !seg[7]));
        out[1] = Some(v4_from_segments(seg[2], seg[3]));
    }
}

/// If `ip` is IPv4-mapped IPv6 (`::ffff:a.b.c.d`), the IPv4 address; otherwise `ip` unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

fn embedded_or(v4: Ipv4Addr, translation: Category) -> Category {
    match classify_v4(v4) {
        Category::Public => translation,
        special => special,
    }
}

fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let seg = ip.segments();
    v4_from_segments(seg[6], seg[7])
}

fn v4_from_segments(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> &'static str {
        classify(s.parse().expect("test address parses")).code()
    }

    #[test]
    fn ipv4_table() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.63.255.255", "public"),
            ("100.64.0.1", "cgnat"),
            ("100.127.255.255", "cgnat"),
            ("100.128.0.0", "public"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link_local"),
            ("169.254.0.1", "link_local"),
            ("172.15.255.255", "public"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("172.32.0.0", "public"),
            ("192.0.0.8", "ietf_protocol"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4_relay"),
            ("192.168.1.1", "private"),
            ("198.17.255.255", "public"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.20.0.0", "public"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("254.255.255.255", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("93.184.216.34", "public"),
            ("1.1.1.1", "public"),
            ("8.8.8.8", "public"),
            ("223.255.255.255", "public"),
        ];
        for (ip, want) in cases {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_table() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link_local"),
            ("::ffff:93.184.216.34", "public"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::93.184.216.34", "ipv4_compatible"),
            ("::2", "unspecified"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b::93.184.216.34", "nat64"),
            ("64:ff9b:1::1", "nat64"),
            ("64:ff9b:1:ffff::7f00:1", "nat64"),
            ("100::1", "discard_only"),
            // RFC 4380's example: its client is 192.0.2.45.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),
            // Public server 65.54.227.120, public client 93.184.216.34.
            ("2001:0:4136:e378:8000:63bf:a247:27dd", "teredo"),
            // Teredo whose client (inverted low bits) is 127.0.0.1.
            ("2001:0:4136:e378::80ff:fffe", "loopback"),
            // Teredo whose server is 10.0.0.1.
            ("2001:0:a00:1::", "private"),
            ("2001:2::1", "benchmarking"),
            ("2001:1::1", "ietf_protocol"),
            ("2001:10::1", "ietf_protocol"),
            ("2001:1ff::1", "ietf_protocol"),
            ("2001:200::1", "public"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("3fff:1000::1", "public"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a00:1::", "private"),
            ("2002:5db8:d822::1", "6to4"),
            ("2606:2800:220:1:248:1893:25c8:1946", "public"),
            ("2a00:1450:4001::1", "public"),
            ("fc00::1", "unique_local"),
            ("fd12:3456::1", "unique_local"),
            ("fe80::1", "link_local"),
            ("febf::1", "link_local"),
            ("fec0::1", "site_local"),
            ("ff02::1", "multicast"),
            ("ff05::1:3", "multicast"),
            ("1::1", "reserved"),
            ("4000::1", "reserved"),
            ("5f00::1", "reserved"),
            ("::ffff:0:7f00:1", "reserved"),
            ("e000::1", "reserved"),
        ];
        for (ip, want) in cases {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn codes_are_unique_and_stable() {
        let mut codes: Vec<&str> = Category::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for cat in Category::ALL {
            assert_eq!(cat.to_string(), cat.code());
            assert!(!cat.description().is_empty());
            assert_eq!(cat.is_public(), cat == Category::Public);
        }
    }

    #[test]
    fn embedded_extraction() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("v6");
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().expect("v4"));
        assert_eq!(embedded_ipv4(v6("::ffff:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("64:ff9b::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("2002:102:304::")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(
            embedded_ipv4(v6("2001:0:4136:e378::80ff:fffe")),
            v4("127.0.0.1")
        );
        assert_eq!(
            embedded_ipv4s(v6("2001:0:4136:e378::80ff:fffe"))[1],
            v4("65.54.227.120")
        );
        assert_eq!(embedded_ipv4(v6("::1")), None);
        assert_eq!(embedded_ipv4(v6("::")), None);
        assert_eq!(embedded_ipv4(v6("2606:2800::1")), None);
    }

    #[test]
    fn normalize_only_unwraps_mapped() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(normalize(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(normalize(ip("64:ff9b::10.0.0.1")), ip("64:ff9b::10.0.0.1"));
        assert_eq!(normalize(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(normalize(ip("::1")), ip("::1"));
    }
}
