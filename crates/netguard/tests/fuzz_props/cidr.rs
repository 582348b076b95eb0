//! Fuzz properties of CIDR parsing (`parse_cidr`, `CidrList`).
//!
//! - No input panics.
//! - An accepted entry is normalised (host bits clear; no IPv4-mapped IPv6 range of prefix
//!   ≥ 96), `normalize_net` is idempotent, and the entry's display form parses back to it.
//! - An accepted list has at most `MAX_CIDR_ENTRIES` entries and its display form parses back
//!   to the same list.
//! - `CidrList::contains` agrees with `ipnet` containment on normal forms (an IPv4-mapped address
//!   is its IPv4 address; a mapped range is the IPv4 range it maps), tested on the boundaries of
//!   every parsed range and on addresses taken from the input, and `find` agrees with
//!   `contains`.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookwarden_netguard::{CidrList, IpNet, MAX_CIDR_ENTRIES, normalize_net, parse_cidr};
use ipnet::{Ipv4Net, Ipv6Net};

use super::input::Input;

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let probe_bytes = input.take(16);
    let text = String::from_utf8_lossy(input.rest()).into_owned();

    let mut probes = vec![
        IpAddr::V4(v4_from(probe_bytes)),
        IpAddr::V6(v6_from(probe_bytes)),
        IpAddr::V6(v4_from(probe_bytes).to_ipv6_mapped()),
    ];

    // Every entry on its own.
    let mut nets = Vec::new();
    for entry in text.split([',', ' ', '\n', '\t', '\r']) {
        if let Ok(net) = parse_cidr(entry) {
            check_entry(entry, net);
            nets.push(net);
        }
    }
    // The whole text as a list.
    match CidrList::parse(&text) {
        Ok(list) => {
            assert!(list.len() <= MAX_CIDR_ENTRIES);
            for net in list.iter() {
                assert_eq!(*net, normalize_net(*net), "list entry {net} not normalised");
            }
            let shown = list.to_string();
            let again = CidrList::parse(&shown).expect("a list's display form parses");
            assert_eq!(again, list, "display round trip of {shown:?}");
        }
        Err(e) => assert!(!e.code().is_empty()),
    }

    // Containment against ipnet, on range boundaries and the input's own addresses.
    // Bounded, so that long inputs stay fast: 16 ranges' boundaries, 64 probes.
    for net in nets.iter().take(16) {
        probes.extend(boundaries(*net));
    }
    // The raw (unnormalised) ranges as ipnet reads them, where ipnet reads them at all.
    let raw: Vec<IpNet> = text
        .split([',', ' ', '\n', '\t', '\r'])
        .filter(|e| parse_cidr(e).is_ok())
        .filter_map(|e| raw_ipnet(e.trim()))
        .collect();
    let list = CidrList::from_nets(raw.iter().copied());
    for ip in probes.iter().take(64) {
        let want = raw.iter().any(|n| oracle_net(*n).contains(&oracle_ip(*ip)));
        assert_eq!(
            list.contains(*ip),
            want,
            "contains({ip}) in {list} (raw {raw:?})"
        );
        assert_eq!(list.find(*ip).is_some(), want, "find({ip})");
        // A mapped address and its IPv4 address are the same destination.
        if let IpAddr::V4(v4) = ip {
            assert_eq!(
                list.contains(IpAddr::V6(v4.to_ipv6_mapped())),
                want,
                "mapped {ip}"
            );
        }
    }
}

fn check_entry(entry: &str, net: IpNet) {
    assert_eq!(net, normalize_net(net), "{entry:?} not normalised");
    assert_eq!(normalize_net(normalize_net(net)), normalize_net(net));
    assert_eq!(net, net.trunc(), "{entry:?} has host bits");
    if let IpNet::V6(v6) = net {
        assert!(
            !(v6.prefix_len() >= 96 && v6.network().to_ipv4_mapped().is_some()),
            "{entry:?}: mapped range {v6} left as IPv6"
        );
    }
    let shown = net.to_string();
    assert_eq!(
        parse_cidr(&shown).ok(),
        Some(net),
        "{entry:?} shown as {shown:?}"
    );
    // Whatever ipnet itself reads from the entry normalises to the same range.
    if let Some(raw) = raw_ipnet(entry.trim()) {
        assert_eq!(normalize_net(raw), net, "{entry:?}: ipnet read {raw}");
    }
}

/// The entry as ipnet/std read it (an address alone is a host route), host bits kept.
fn raw_ipnet(entry: &str) -> Option<IpNet> {
    if let Some((addr, prefix)) = entry.split_once('/') {
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        return match addr {
            IpAddr::V4(a) => Ipv4Net::new(a, prefix).ok().map(IpNet::V4),
            IpAddr::V6(a) => Ipv6Net::new(a, prefix).ok().map(IpNet::V6),
        };
    }
    match entry.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(IpNet::V4(Ipv4Net::new(a, 32).ok()?)),
        IpAddr::V6(a) => Some(IpNet::V6(Ipv6Net::new(a, 128).ok()?)),
    }
}

/// The normal form of an address, written independently of the library: `::ffff:a.b.c.d` is
/// `a.b.c.d`.
fn oracle_ip(ip: IpAddr) -> IpAddr {
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

/// The normal form of a range: a range inside `::ffff:0:0/96` is the IPv4 range it maps.
fn oracle_net(net: IpNet) -> IpNet {
    let mapped_space =
        Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).expect("static");
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 && mapped_space.contains(&n.network()) => {
            let o = n.network().octets();
            let v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
            IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("prefix ≤ 32"))
        }
        other => other,
    }
}

/// The first and last address of a range and their neighbours outside it.
fn boundaries(net: IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => {
            let lo = u32::from(n.network());
            let hi = u32::from(n.broadcast());
            [Some(lo), Some(hi), lo.checked_sub(1), hi.checked_add(1)]
                .into_iter()
                .flatten()
                .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
                .collect()
        }
        IpNet::V6(n) => {
            let lo = u128::from(n.network());
            let hi = u128::from(n.broadcast());
            [Some(lo), Some(hi), lo.checked_sub(1), hi.checked_add(1)]
                .into_iter()
                .flatten()
                .map(|v| IpAddr::V6(Ipv6Addr::from(v)))
                .collect()
        }
    }
}

fn v4_from(b: &[u8]) -> Ipv4Addr {
    let mut o = [0u8; 4];
    for (d, s) in o.iter_mut().zip(b) {
        *d = *s;
    }
    Ipv4Addr::from(o)
}

fn v6_from(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    for (d, s) in o.iter_mut().zip(b) {
        *d = *s;
    }
    Ipv6Addr::from(o)
}
