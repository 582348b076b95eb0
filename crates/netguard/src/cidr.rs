//! Operator-supplied lists of addresses and CIDR ranges.
//!
//! Accepted spellings, one entry at a time: a single address (`192.168.1.100`, `::1`, a /32 or
//! /128) or a CIDR range (`10.0.0.0/16`, `2001:db8::/32`). Entries are separated by commas and/or
//! whitespace. Only the strict standard notations are accepted: no leading zeros (`010.0.0.1` is
//! refused, because other software reads it as octal), no shortened IPv4 (`10.1`), no hexadecimal,
//! no zone ids, no brackets.
//!
//! A range with host bits set (`10.0.0.5/8`) is **accepted and normalised** to its network
//! (`10.0.0.0/8`): that is what every router and firewall does with it, and refusing it would only
//! make configuration brittle. IPv4-mapped IPv6 ranges (`::ffff:10.0.0.0/104`) are normalised to the
//! IPv4 range they map (`10.0.0.0/8`), and addresses are normalised the same way before matching,
//! so `::ffff:10.0.0.1` is in `10.0.0.0/8`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::classify::normalize;
use crate::text::truncate_str;

/// The most entries one list may hold.
pub const MAX_CIDR_ENTRIES: usize = 4096;
/// The longest input string [`CidrList::parse`] accepts, in bytes.
pub const MAX_CIDR_INPUT_LEN: usize = 64 * 1024;
/// The longest single entry, in bytes (the longest valid one is an IPv6 address with an IPv4
/// tail and a prefix, well under this).
const MAX_ENTRY_LEN: usize = 64;

/// Why an address list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// An entry is neither an address nor a CIDR range.
    #[error("invalid IP address or CIDR range: {entry:?}")]
    Invalid {
        /// The offending entry (cut to 64 bytes).
        entry: String,
    },
    /// The list has more than [`MAX_CIDR_ENTRIES`] entries.
    #[error("too many address ranges (at most {max})")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The input is longer than [`MAX_CIDR_INPUT_LEN`].
    #[error("address list too long (at most {max} bytes)")]
    TooLong {
        /// The limit.
        max: usize,
    },
}

impl CidrError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CidrError::Invalid { .. } => "CIDR_INVALID",
            CidrError::TooMany { .. } => "CIDR_TOO_MANY",
            CidrError::TooLong { .. } => "CIDR_TOO_LONG",
        }
    }
}

/// Parse one entry: an address or a CIDR range. See the [module documentation](self).
pub fn parse_cidr(entry: &str) -> Result<IpNet, CidrError> {
    let entry = entry.trim();
    let invalid = || CidrError::Invalid {
        entry: truncate_str(entry, MAX_ENTRY_LEN).to_owned(),
    };
    if entry.is_empty() || entry.len() > MAX_ENTRY_LEN {
        return Err(invalid());
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => {
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid());
            }
            let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
            (addr, Some(prefix))
        }
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let net = match (addr, prefix) {
        (IpAddr::V4(a), p) => IpNet::V4(Ipv4Net::new(a, p.unwrap_or(32)).map_err(|_| invalid())?),
        (IpAddr::V6(a), p) => IpNet::V6(Ipv6Net::new(a, p.unwrap_or(128)).map_err(|_| invalid())?),
    };
    Ok(normalize_net(net))
}

/// Clear host bits, and turn an IPv4-mapped IPv6 range (`::ffff:0:0/96` or narrower) into the
/// IPv4 range it maps.
pub fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V4(n) => IpNet::V4(n.trunc()),
        IpNet::V6(n) => {
            let n = n.trunc();
            if n.prefix_len() >= 96
                && let Some(v4) = n.network().to_ipv4_mapped()
                && let Ok(v4net) = Ipv4Net::new(v4, n.prefix_len() - 96)
            {
                return IpNet::V4(v4net.trunc());
            }
            IpNet::V6(n)
        }
    }
}

/// A list of address ranges with mapped-IPv6-aware matching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CidrList {
    nets: Vec<IpNet>,
}

impl CidrList {
    /// An empty list (matches nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a comma- and/or whitespace-separated list (`"10.0.0.0/8, 192.168.1.100 ::1"`).
    /// An empty or blank string is an empty list.
    pub fn parse(input: &str) -> Result<Self, CidrError> {
        let mut list = Self::new();
        list.extend_parse(input)?;
        Ok(list)
    }

    /// Parse several strings (for example a TOML array), each of which may itself be a list.
    pub fn parse_entries<I, S>(entries: I) -> Result<Self, CidrError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::new();
        for entry in entries {
            list.extend_parse(entry.as_ref())?;
        }
        Ok(list)
    }

    fn extend_parse(&mut self, input: &str) -> Result<(), CidrError> {
        if input.len() > MAX_CIDR_INPUT_LEN {
            return Err(CidrError::TooLong {
                max: MAX_CIDR_INPUT_LEN,
            });
        }
        for entry in input
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|e| !e.is_empty())
        {
            if self.nets.len() >= MAX_CIDR_ENTRIES {
                return Err(CidrError::TooMany {
                    max: MAX_CIDR_ENTRIES,
                });
            }
            self.nets.push(parse_cidr(entry)?);
        }
        Ok(())
    }

    /// A list from ranges that are already parsed (normalised like parsed ones).
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        Self {
            nets: nets.into_iter().map(normalize_net).collect(),
        }
    }

    /// Add one range (normalised).
    pub fn push(&mut self, net: IpNet) {
        self.nets.push(normalize_net(net));
    }

    /// Whether `ip` (IPv4-mapped IPv6 normalised to IPv4 first) is in any range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The first range that contains `ip`, if any.
    pub fn find(&self, ip: IpAddr) -> Option<&IpNet> {
        let ip = normalize(ip);
        self.nets.iter().find(|n| n.contains(&ip))
    }

    /// The ranges, in order.
    pub fn as_slice(&self) -> &[IpNet] {
        &self.nets
    }

    /// Iterate over the ranges.
    pub fn iter(&self) -> std::slice::Iter<'_, IpNet> {
        self.nets.iter()
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The ranges as a vector.
    pub fn into_vec(self) -> Vec<IpNet> {
        self.nets
    }
}

impl FromStr for CidrList {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<Vec<IpNet>> for CidrList {
    fn from(nets: Vec<IpNet>) -> Self {
        Self::from_nets(nets)
    }
}

impl<'a> IntoIterator for &'a CidrList {
    type Item = &'a IpNet;
    type IntoIter = std::slice::Iter<'a, IpNet>;
    fn into_iter(self) -> Self::IntoIter {
        self.nets.iter()
    }
}

/// `10.0.0.0/8, 192.168.1.100/32` (single addresses are shown with their full prefix).
impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// Serialised as a sequence of CIDR strings.
impl serde::Serialize for CidrList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.nets.iter().map(|n| n.to_string()))
    }
}

/// Deserialised from one string (a comma/space separated list) or a sequence of strings.
impl<'de> serde::Deserialize<'de> for CidrList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CidrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address / CIDR range, a comma-separated list, or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CidrList, E> {
                CidrList::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CidrList, A::Error> {
                use serde::de::Error as _;
                let mut list = CidrList::new();
                while let Some(s) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    list.extend_parse(&s).map_err(A::Error::custom)?;
                }
                Ok(list)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn parses_addresses_and_ranges() {
        let list = CidrList::parse("192.168.1.100, ::1 10.0.0.0/16,2001:db8::/32\n\t172.16.0.0/12")
            .expect("parses");
        assert_eq!(
            list.to_string(),
            "192.168.1.100/32, ::1/128, 10.0.0.0/16, 2001:db8::/32, 172.16.0.0/12"
        );
        assert!(list.contains(ip("192.168.1.100")));
        assert!(!list.contains(ip("192.168.1.101")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("10.0.255.1")));
        assert!(!list.contains(ip("10.1.0.1")));
        assert!(list.contains(ip("2001:db8:ffff::1")));
        assert!(CidrList::parse("").expect("empty").is_empty());
        assert!(CidrList::parse(" , ,\n").expect("blank").is_empty());
    }

    #[test]
    fn normalises_host_bits_and_mapped_ranges() {
        for (entry, want) in [
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.168.1.1", "192.168.1.1/32"),
            ("2001:db8::1/32", "2001:db8::/32"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(parse_cidr(entry).expect(entry).to_string(), want);
        }
    }

    #[test]
    fn mapped_addresses_match_ipv4_ranges() {
        let list = CidrList::parse("10.0.0.0/8").expect("ok");
        assert!(list.contains(ip("::ffff:10.0.0.1")));
        assert!(list.contains(ip("::ffff:a00:1")));
        assert!(!list.contains(ip("::10.0.0.1")));
        assert_eq!(
            list.find(ip("10.9.9.9")).map(|n| n.to_string()),
            Some("10.0.0.0/8".into())
        );
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "10.0.0.0/0008",
            "10.1",
            "010.0.0.1",
            "0x7f.0.0.1",
            "2130706433",
            "127.0.0.1.",
            "[::1]",
            "fe80::1%eth0",
            "host.example",
            "10.0.0.0/8/8",
            "1.2.3.4:80",
            "１２７.０.０.１",
        ] {
            let err = CidrList::parse(bad).expect_err(bad);
            assert_eq!(err.code(), "CIDR_INVALID", "{bad}");
        }
    }

    #[test]
    fn bounded() {
        let many = vec!["10.0.0.1"; MAX_CIDR_ENTRIES + 1].join(",");
        assert_eq!(
            CidrList::parse(&many).expect_err("too many").code(),
            "CIDR_TOO_MANY"
        );
        let long = " ".repeat(MAX_CIDR_INPUT_LEN + 1);
        assert_eq!(
            CidrList::parse(&long).expect_err("too long").code(),
            "CIDR_TOO_LONG"
        );
        let long_entry = "1".repeat(10_000);
        match CidrList::parse(&long_entry).expect_err("long entry") {
            CidrError::Invalid { entry } => assert!(entry.len() <= 64),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn serde_forms() {
        // serde's value deserializers exercise both visitor paths without a format crate.
        let from_seq: CidrList =
            serde::de::Deserialize::deserialize(serde::de::value::SeqDeserializer::<
                _,
                serde::de::value::Error,
            >::new(
                vec!["10.0.0.0/8", "::1"].into_iter()
            ))
            .expect("seq");
        assert_eq!(from_seq.len(), 2);
        let from_str: CidrList =
            serde::de::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new("10.0.0.0/8 ::1"))
            .expect("str");
        assert_eq!(from_str, from_seq);
        let bad = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("10.0.0.0/99");
        assert!(<CidrList as serde::Deserialize>::deserialize(bad).is_err());
    }
}
