//! Fuzz properties of the address classifier (`classify`) and the default address policy.
//!
//! The oracle below is written independently of the library, from std's `Ipv4Addr`/`Ipv6Addr`
//! methods and explicit ranges of the IANA IPv4 and IPv6 Special-Purpose Address Registries. It
//! answers one question: is this address *public* (a destination the default policy may reach)?
//! Where the project is deliberately stricter than the registries, the rule is encoded here:
//!
//! - all of `192.0.0.0/24` and `2001::/23` are refused, including the few anycast entries the
//!   registries mark globally reachable (PCP, TURN, AMT, AS112, ORCHIDv2);
//! - IPv6 outside `2000::/3` is refused (unallocated);
//! - IPv4-mapped `::ffff:0:0/96` is exactly its embedded IPv4 address;
//! - the translation forms — IPv4-compatible `::/96`, NAT64 `64:ff9b::/96` and
//!   `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32` — are never public; where they embed
//!   a special-purpose IPv4 address they take that address's category.
//!
//! Checked: public ⇔ oracle public, for every address and for each translation form built
//! around the input's IPv4 address; std's own predicates map to the expected categories; the
//! default `AddressPolicy` permits exactly the public addresses; `normalize` is idempotent and
//! `embedded_ipv4` finds the embedded address.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookwarden_netguard::{AddressPolicy, Category, classify, embedded_ipv4, normalize};
use ipnet::{Ipv4Net, Ipv6Net};

use super::input::Input;

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let a = Ipv4Addr::from(input.u32());
    let b = Ipv4Addr::from(input.u32());
    let raw6 = Ipv6Addr::from(u128::from(input.u64()) << 64 | u128::from(input.u64()));
    let prefix_pick = input.u8();

    check_v4(a);
    check_v6(raw6);
    // Keep the fuzzer's address but put a special prefix in front of it.
    check_v6(with_prefix(raw6, prefix_pick));

    // Translation forms around `a` (and `b` as the Teredo server).
    let a_public = oracle_v4_public(a);
    let forms: [(Ipv6Addr, Category); 4] = [
        (v6_embed([0, 0, 0, 0, 0, 0], a), Category::Ipv4Compatible),
        (v6_embed([0x64, 0xff9b, 0, 0, 0, 0], a), Category::Nat64),
        (sixtofour(a), Category::SixToFour),
        (teredo(b, a), Category::Teredo),
    ];
    assert_eq!(classify(IpAddr::V6(a.to_ipv6_mapped())), classify_v4ish(a));
    for (ip, translation) in forms {
        check_v6(ip);
        let got = classify(IpAddr::V6(ip));
        if ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        let want = if translation == Category::Teredo && !oracle_v4_public(b) {
            classify_v4ish(b)
        } else if a_public {
            translation
        } else {
            classify_v4ish(a)
        };
        assert_eq!(got, want, "{ip} embedding {a}");
        assert!(!got.is_public(), "{ip}: a translation form is never public");
        let embedded = embedded_ipv4(ip);
        assert_eq!(embedded, Some(a), "embedded_ipv4({ip})");
    }
}

fn classify_v4ish(a: Ipv4Addr) -> Category {
    classify(IpAddr::V4(a))
}

fn check_v4(a: Ipv4Addr) {
    let ip = IpAddr::V4(a);
    let cat = classify(ip);
    assert_eq!(
        cat.is_public(),
        oracle_v4_public(a),
        "{a} classified {cat} but the registry oracle says public={}",
        oracle_v4_public(a)
    );
    // std's predicates name the category.
    let want = if a.is_loopback() {
        Some(Category::Loopback)
    } else if a.is_private() {
        Some(Category::Private)
    } else if a.is_link_local() {
        Some(Category::LinkLocal)
    } else if a.is_multicast() {
        Some(Category::Multicast)
    } else if a.is_broadcast() {
        Some(Category::Broadcast)
    } else if a.is_documentation() {
        Some(Category::Documentation)
    } else if a.octets()[0] == 0 {
        Some(Category::Unspecified)
    } else {
        None
    };
    if let Some(want) = want {
        assert_eq!(cat, want, "{a}");
    }
    check_policy(ip, cat);
    // The mapped form is the same destination.
    let mapped = IpAddr::V6(a.to_ipv6_mapped());
    assert_eq!(classify(mapped), cat, "{mapped}");
    assert_eq!(normalize(mapped), ip);
    check_policy(mapped, cat);
}

fn check_v6(v6: Ipv6Addr) {
    let ip = IpAddr::V6(v6);
    let cat = classify(ip);
    let n = normalize(ip);
    assert_eq!(normalize(n), n, "normalize is idempotent");
    let want_public = match v6.to_ipv4_mapped() {
        Some(v4) => oracle_v4_public(v4),
        None => oracle_v6_public(v6),
    };
    assert_eq!(
        cat.is_public(),
        want_public,
        "{v6} classified {cat} but the registry oracle says public={want_public}"
    );
    let want = if v6.to_ipv4_mapped().is_some() {
        None
    } else if v6.is_loopback() {
        Some(Category::Loopback)
    } else if v6.is_unspecified() {
        Some(Category::Unspecified)
    } else if v6.is_multicast() {
        Some(Category::Multicast)
    } else if v6.is_unicast_link_local() {
        Some(Category::LinkLocal)
    } else if v6.is_unique_local() {
        Some(Category::UniqueLocal)
    } else {
        None
    };
    if let Some(want) = want {
        assert_eq!(cat, want, "{v6}");
    }
    check_policy(ip, cat);
}

/// The default policy permits exactly the public addresses, and names the category it refused.
fn check_policy(ip: IpAddr, cat: Category) {
    let policy = AddressPolicy::public_only();
    match policy.check(ip) {
        Ok(()) => assert!(cat.is_public(), "default policy let {ip} ({cat}) through"),
        Err(denied) => {
            assert!(!cat.is_public(), "default policy refused public {ip}");
            assert_eq!(denied.ip, ip);
            assert_eq!(denied.category(), cat, "{ip}");
        }
    }
}

fn net4(s: &str) -> Ipv4Net {
    s.parse().expect("static range")
}

fn net6(s: &str) -> Ipv6Net {
    s.parse().expect("static range")
}

/// IANA IPv4 Special-Purpose Address Registry, everything not globally reachable, plus the
/// project's stricter rules (all of 192.0.0.0/24).
fn oracle_v4_public(a: Ipv4Addr) -> bool {
    if a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
    {
        return false;
    }
    let special = [
        "0.0.0.0/8",      // "this network"
        "100.64.0.0/10",  // shared address space (CGNAT)
        "192.0.0.0/24",   // IETF protocol assignments (project: all of it)
        "192.88.99.0/24", // deprecated 6to4 relay anycast
        "198.18.0.0/15",  // benchmarking
        "240.0.0.0/4",    // reserved
    ];
    !special.iter().any(|r| net4(r).contains(&a))
}

/// IANA IPv6 Special-Purpose Address Registry plus the project's rules (see the module doc).
fn oracle_v6_public(v6: Ipv6Addr) -> bool {
    if v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast()
        || v6.is_unique_local()
        || v6.is_unicast_link_local()
    {
        return false;
    }
    if !net6("2000::/3").contains(&v6) {
        return false;
    }
    let special = [
        "::/96",          // IPv4-compatible (deprecated)
        "64:ff9b::/96",   // NAT64 well-known prefix
        "64:ff9b:1::/48", // NAT64 local use
        "100::/64",       // discard-only
        "2001::/23",      // IETF protocol assignments, including Teredo 2001::/32
        "2001:2::/48",    // benchmarking
        "2001:db8::/32",  // documentation
        "2002::/16",      // 6to4
        "3fff::/20",      // documentation (RFC 9637)
        "fec0::/10",      // site-local (deprecated)
    ];
    !special.iter().any(|r| net6(r).contains(&v6))
}

/// Replace the top bits of `ip` with one of the special prefixes (so the fuzzer reaches them).
fn with_prefix(ip: Ipv6Addr, pick: u8) -> Ipv6Addr {
    let prefixes = [
        "::/96",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001::/23",
        "2001:2::/48",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "2000::/3",
    ];
    let net = net6(prefixes[usize::from(pick) % prefixes.len()]);
    let host_mask = u128::MAX
        .checked_shr(u32::from(net.prefix_len()))
        .unwrap_or(0);
    Ipv6Addr::from((u128::from(net.network()) & !host_mask) | (u128::from(ip) & host_mask))
}

fn v6_embed(prefix: [u16; 6], a: Ipv4Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        prefix[0],
        prefix[1],
        prefix[2],
        prefix[3],
        prefix[4],
        prefix[5],
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

/// RFC 3056: `2002:AABB:CCDD::/48`.
fn sixtofour(a: Ipv4Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0x2002,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
        0,
        0,
        0,
        0,
        1,
    )
}

/// RFC 4380: `2001:0:SERVER:flags:port:~CLIENT`.
fn teredo(server: Ipv4Addr, client: Ipv4Addr) -> Ipv6Addr {
    let s = server.octets();
    let c = client.octets();
    Ipv6Addr::new(
        0x2001,
        0,
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        0x8000,
        0x1234,
        !u16::from_be_bytes([c[0], c[1]]),
        !u16::from_be_bytes([c[2], c[3]]),
    )
}
