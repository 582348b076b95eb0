//! The address policy: which destinations Hookwarden may connect to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::cidr::CidrList;
use crate::classify::{Category, classify, classify_v4, embedded_ipv4s, normalize};

/// Which destination addresses are permitted.
///
/// The rules, in order:
///
/// 1. **Deny ranges always win.** An address is refused when a deny range contains the address
///    itself, its IPv4-mapped normal form, or any IPv4 address it embeds (NAT64, 6to4, Teredo,
///    IPv4-compatible), so neither `::ffff:10.0.0.1` nor `64:ff9b::10.0.0.1` escapes a
///    `10.0.0.0/8` deny.
/// 2. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is normalised to the IPv4 address before anything else:
///    it is the same destination.
/// 3. A [`Category::Public`] address is permitted.
/// 4. A special-purpose address is permitted only when an allow range contains it. For the IPv6
///    translation forms (NAT64, 6to4, Teredo, IPv4-compatible) *both* layers must pass: the IPv6
///    address itself must be allowed (for example `64:ff9b::/96`), *and* every IPv4 address it
///    embeds must be public or allowed too. Allowing `127.0.0.0/8` therefore does not let
///    `64:ff9b::127.0.0.1` or `::1` through, and allowing `64:ff9b::/96` does not let NAT64 reach
///    `10.0.0.0/8` unless that is allowed as well.
///
/// The default policy (no ranges) permits public addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: CidrList,
    deny: CidrList,
}

impl AddressPolicy {
    /// A policy with operator allow ranges (exceptions to the default denials) and deny ranges
    /// (which always win). Ranges are normalised (host bits cleared, mapped IPv6 → IPv4).
    pub fn new(allow_ranges: Vec<IpNet>, deny_ranges: Vec<IpNet>) -> Self {
        Self {
            allow: CidrList::from_nets(allow_ranges),
            deny: CidrList::from_nets(deny_ranges),
        }
    }

    /// The same, from parsed lists.
    pub fn from_lists(allow: CidrList, deny: CidrList) -> Self {
        Self { allow, deny }
    }

    /// The default policy: public addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// The allow ranges (normalised).
    pub fn allow_ranges(&self) -> &[IpNet] {
        self.allow.as_slice()
    }

    /// The deny ranges (normalised).
    pub fn deny_ranges(&self) -> &[IpNet] {
        self.deny.as_slice()
    }

    /// `Ok(())` when `ip` may be connected to, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let n = normalize(ip);
        let embedded = match n {
            IpAddr::V6(v6) => embedded_ipv4s(v6),
            IpAddr::V4(_) => [None, None],
        };
        // 1. Deny ranges: the raw address (so a deny of `::/0` also covers mapped forms), its
        //    normal form, and every embedded IPv4 address.
        for net in self.deny.iter() {
            let hit = net.contains(&ip)
                || net.contains(&n)
                || embedded
                    .iter()
                    .flatten()
                    .any(|e| net.contains(&IpAddr::V4(*e)));
            if hit {
                return Err(Denied {
                    ip,
                    reason: DenyReason::DenyRange(*net),
                });
            }
        }
        // 2-4. Categories and allow ranges.
        let outer_ok = outer_category(n).is_public() || self.allow.contains(n);
        let inner_ok = embedded.iter().flatten().all(|e| self.embedded_ok(*e));
        if outer_ok && inner_ok {
            Ok(())
        } else {
            Err(Denied {
                ip,
                reason: DenyReason::Category(classify(n)),
            })
        }
    }

    /// Whether `ip` may be connected to.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.check(ip).is_ok()
    }

    fn embedded_ok(&self, v4: Ipv4Addr) -> bool {
        classify_v4(v4).is_public() || self.allow.contains(IpAddr::V4(v4))
    }
}

/// The category of the address itself, not looking inside translation forms.
fn outer_category(ip: IpAddr) -> Category {
    let IpAddr::V6(v6) = ip else {
        return classify(ip);
    };
    let seg = v6.segments();
    if v6.is_unspecified() || v6.is_loopback() {
        classify(ip)
    } else if seg[..6] == [0; 6] {
        Category::Ipv4Compatible
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Category::Nat64
    } else if seg[0] == 0x2002 {
        Category::SixToFour
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        Category::Teredo
    } else {
        classify(ip)
    }
}

/// Why a destination address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The address is special-purpose and no allow range covers it.
    Category(Category),
    /// An operator deny range covers the address (or the IPv4 address it embeds).
    DenyRange(IpNet),
}

/// A refused destination address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub struct Denied {
    /// The address as it was given (not normalised).
    pub ip: IpAddr,
    /// Why.
    pub reason: DenyReason,
}

impl Denied {
    /// A stable machine-readable reason: the category code (`"loopback"`, `"private"`, …) or
    /// `"deny_range"` for an operator deny range.
    pub fn code(&self) -> &'static str {
        match self.reason {
            DenyReason::Category(c) => c.code(),
            DenyReason::DenyRange(_) => "deny_range",
        }
    }

    /// The category of the refused address (whatever the reason).
    pub fn category(&self) -> Category {
        match self.reason {
            DenyReason::Category(c) => c,
            DenyReason::DenyRange(_) => classify(self.ip),
        }
    }
}

/// A message that names the address and the reason but not the operator's deny ranges.
impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            DenyReason::Category(c) => {
                write!(
                    f,
                    "destination {} is {} and is not allowed",
                    self.ip,
                    c.description()
                )
            }
            DenyReason::DenyRange(_) => {
                write!(f, "destination {} is in a denied address range", self.ip)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }
    fn nets(s: &str) -> Vec<IpNet> {
        CidrList::parse(s).expect("test nets").into_vec()
    }

    #[test]
    fn default_denies_every_special_category() {
        let p = AddressPolicy::default();
        for (addr, code) in [
            ("127.0.0.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.0.1", "private"),
            ("100.64.0.1", "cgnat"),
            ("169.254.169.254", "link_local"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.170", "ietf_protocol"),
            ("192.88.99.1", "6to4_relay"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique_local"),
            ("fe80::1", "link_local"),
            ("fec0::1", "site_local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("100::1", "discard_only"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link_local"),
            ("::127.0.0.1", "loopback"),
            ("::93.184.216.34", "ipv4_compatible"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::93.184.216.34", "nat64"),
            ("64:ff9b:1::1", "nat64"),
            ("2002:7f00:1::", "loopback"),
            ("2002:5db8:d822::", "6to4"),
            ("2001:0:4136:e378:8000:63bf:a247:27dd", "teredo"),
        ] {
            let err = p.check(ip(addr)).expect_err(addr);
            assert_eq!(err.code(), code, "{addr}");
            assert_eq!(err.ip, ip(addr));
        }
        for ok in [
            "93.184.216.34",
            "1.1.1.1",
            "::ffff:93.184.216.34",
            "2606:2800:220:1::1",
        ] {
            assert!(p.is_allowed(ip(ok)), "{ok}");
        }
    }

    #[test]
    fn allow_ranges_are_exceptions() {
        let p = AddressPolicy::new(nets("127.0.0.0/8 10.1.0.0/16"), vec![]);
        assert!(p.is_allowed(ip("127.0.0.1")));
        assert!(p.is_allowed(ip("127.0.0.2")));
        assert!(p.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(p.is_allowed(ip("10.1.2.3")));
        assert!(!p.is_allowed(ip("10.2.0.1")));
        // Loopback v6 and translation forms are separate destinations.
        assert!(!p.is_allowed(ip("::1")));
        assert!(!p.is_allowed(ip("64:ff9b::127.0.0.1")));
        assert!(!p.is_allowed(ip("2002:7f00:1::")));
        assert!(!p.is_allowed(ip("::127.0.0.1")));
    }

    #[test]
    fn translation_forms_need_both_layers() {
        let p = AddressPolicy::new(nets("64:ff9b::/96"), vec![]);
        assert!(p.is_allowed(ip("64:ff9b::93.184.216.34")));
        let err = p
            .check(ip("64:ff9b::10.0.0.1"))
            .expect_err("embedded private");
        assert_eq!(err.code(), "private");
        let p = AddressPolicy::new(nets("64:ff9b::/96 10.0.0.0/8"), vec![]);
        assert!(p.is_allowed(ip("64:ff9b::10.0.0.1")));
        let p = AddressPolicy::new(nets("2001::/32"), vec![]);
        assert!(p.is_allowed(ip("2001:0:4136:e378:8000:63bf:a247:27dd")));
        assert!(!p.is_allowed(ip("2001:0:4136:e378::80ff:fffe")));
    }

    #[test]
    fn deny_always_wins() {
        let p = AddressPolicy::new(
            nets("10.0.0.0/8 127.0.0.0/8"),
            nets("10.9.0.0/16 93.184.216.0/24"),
        );
        assert!(p.is_allowed(ip("10.1.0.1")));
        for (addr, range) in [
            ("10.9.1.1", "10.9.0.0/16"),
            ("::ffff:10.9.1.1", "10.9.0.0/16"),
            ("93.184.216.34", "93.184.216.0/24"),
            ("::ffff:93.184.216.34", "93.184.216.0/24"),
            ("64:ff9b::93.184.216.34", "93.184.216.0/24"),
            ("2002:5db8:d822::", "93.184.216.0/24"),
            ("::93.184.216.34", "93.184.216.0/24"),
        ] {
            let err = p.check(ip(addr)).expect_err(addr);
            assert_eq!(err.code(), "deny_range", "{addr}");
            assert_eq!(err.reason, DenyReason::DenyRange(nets(range)[0]), "{addr}");
        }
        // Deny given in mapped notation is normalised.
        let p = AddressPolicy::new(vec![], nets("::ffff:93.184.216.0/120"));
        assert!(!p.is_allowed(ip("93.184.216.34")));
        // A v6 deny of everything also covers mapped forms.
        let p = AddressPolicy::new(nets("127.0.0.0/8"), nets("::/0"));
        assert!(!p.is_allowed(ip("::ffff:93.184.216.34")));
        assert!(p.is_allowed(ip("93.184.216.34")));
        assert!(p.is_allowed(ip("127.0.0.1")));
    }

    #[test]
    fn denied_display_and_category() {
        let p = AddressPolicy::new(vec![], nets("93.184.216.0/24"));
        let err = p.check(ip("93.184.216.34")).expect_err("denied");
        assert_eq!(err.category(), Category::Public);
        assert!(!err.to_string().contains("/24"));
        let err = AddressPolicy::default()
            .check(ip("169.254.169.254"))
            .expect_err("denied");
        assert_eq!(
            err.to_string(),
            "destination 169.254.169.254 is a link-local address and is not allowed"
        );
    }
}
