//! Endpoint URL validation.
//!
//! [`parse_endpoint_url`] accepts only plain `https://host[:port]/path?query` URLs (and `http://`
//! when [`UrlPolicy::allow_http`] is set), and tells exactly which host they name. Hosts are parsed
//! with the WHATWG URL standard (the `url` crate), so every alternative spelling of an address —
//! `2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`, `[::ffff:7f00:1]`, trailing dots, percent-encoded
//! or full-width (IDNA) characters — becomes the address it names and is judged as that.
//!
//! Beyond the standard, these are refused because different parsers disagree about them and the
//! disagreement is a classic SSRF trick:
//! - any ASCII control character, whitespace (tabs and newlines are silently *removed* by WHATWG
//!   parsers) or backslash (read as `/` by WHATWG parsers but not by others), anywhere;
//! - any `@` in the authority, even with an empty user name (`https://@host/`);
//! - fragments (`#…`), which are never sent and only serve to confuse;
//! - hosts with characters outside letters, digits, `-`, `_` and `.` after IDNA processing.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use crate::policy::{AddressPolicy, Denied};
use crate::text::truncate_str;

/// The longest endpoint URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What [`parse_endpoint_url`] accepts beyond the fixed rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Accept `http://` as well as `https://` (off by default).
    pub allow_http: bool,
    /// When set, only these ports (the scheme's default port counts as given) are accepted.
    pub allowed_ports: Option<Vec<u16>>,
}

/// The scheme of an accepted URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetScheme {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl TargetScheme {
    /// `"http"` or `"https"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetScheme::Http => "http",
            TargetScheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub const fn default_port(self) -> u16 {
        match self {
            TargetScheme::Http => 80,
            TargetScheme::Https => 443,
        }
    }
}

impl fmt::Display for TargetScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host a URL names: an address, or a domain name (lowercase ASCII, IDNA applied, no trailing
/// dot) that still has to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetHost {
    /// An IP address literal (IPv4-mapped IPv6 is kept as written; the policy normalises it).
    Ip(IpAddr),
    /// A domain name.
    Domain(String),
}

impl TargetHost {
    /// The host of an `http::Uri` (or any authority host string): a bracketed or bare IPv6
    /// address, an IPv4 address in standard dotted form, or a domain name (lowercased, trailing dot
    /// removed). Returns `None` for an empty or invalid host.
    ///
    /// This is for hosts that already went through [`parse_endpoint_url`] (or an equivalent
    /// WHATWG parse), which has put every address spelling into standard form.
    pub fn from_host_str(host: &str) -> Option<TargetHost> {
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return inner.parse().ok().map(TargetHost::Ip);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(TargetHost::Ip(ip));
        }
        let domain = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if valid_domain(&domain) {
            // A name that WHATWG would read as an IPv4 address never gets here from a parsed URL;
            // refuse it rather than guess.
            if ends_in_number(&domain) {
                return None;
            }
            Some(TargetHost::Domain(domain))
        } else {
            None
        }
    }

    /// The address, for an address literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            TargetHost::Ip(ip) => Some(*ip),
            TargetHost::Domain(_) => None,
        }
    }

    /// The domain name, for a name.
    pub fn domain(&self) -> Option<&str> {
        match self {
            TargetHost::Ip(_) => None,
            TargetHost::Domain(d) => Some(d),
        }
    }

    /// Whether this is `localhost` or a name under `.localhost` (RFC 6761: always loopback).
    pub fn is_localhost_name(&self) -> bool {
        match self {
            TargetHost::Domain(d) => d == "localhost" || d.ends_with(".localhost"),
            TargetHost::Ip(_) => false,
        }
    }
}

/// Addresses without brackets, names as they are.
impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Ip(ip) => write!(f, "{ip}"),
            TargetHost::Domain(d) => f.write_str(d),
        }
    }
}

/// An accepted endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The parsed URL (WHATWG-normalised: lowercase host, addresses in standard form).
    pub url: Url,
    /// Its scheme.
    pub scheme: TargetScheme,
    /// Its host.
    pub host: TargetHost,
    /// Its port (the scheme default when none is given).
    pub port: u16,
}

impl Target {
    /// Check what can be checked before any DNS lookup: an address literal must be permitted by
    /// `policy`, and so must `127.0.0.1` or `::1` for `localhost` names (RFC 6761 reserves them
    /// for loopback; [`crate::Guard::resolve_checked`] uses those the policy permits). Names are
    /// checked again, for real, when they are resolved.
    ///
    /// Lets the admin API refuse `https://127.0.0.1/` with a clear 422 when an endpoint is
    /// created, instead of failing every delivery later.
    pub fn check_target(&self, policy: &AddressPolicy) -> Result<(), UrlError> {
        match &self.host {
            TargetHost::Ip(ip) => policy.check(*ip).map_err(UrlError::AddressDenied),
            host if host.is_localhost_name() => crate::guard::localhost_permitted(policy)
                .map(|_| ())
                .map_err(UrlError::AddressDenied),
            TargetHost::Domain(_) => Ok(()),
        }
    }
}

/// Why a URL was refused. [`UrlError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL is too long ({len} bytes, at most {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Contains a control character, whitespace or a backslash.
    #[error("URL contains a control character, whitespace or a backslash")]
    InvalidCharacter,
    /// Not a URL at all.
    #[error("URL is invalid: {0}")]
    Invalid(url::ParseError),
    /// A scheme other than `https` (or `http` when allowed).
    #[error("URL scheme {scheme:?} is not allowed (use {allowed})")]
    SchemeNotAllowed {
        /// The scheme given (cut to 32 bytes).
        scheme: String,
        /// What is allowed, for the message.
        allowed: &'static str,
    },
    /// Has a user name or password (`user:pass@`), or any `@` in the authority.
    #[error("URL must not contain credentials (user:password@)")]
    UserinfoNotAllowed,
    /// Has a `#fragment`.
    #[error("URL must not contain a fragment (#...)")]
    FragmentNotAllowed,
    /// No host.
    #[error("URL has no host")]
    HostMissing,
    /// The host has characters outside letters, digits, `-`, `_`, `.`, or an empty or overlong
    /// label.
    #[error("URL host is not a valid host name")]
    InvalidHost,
    /// Port 0, or a port outside [`UrlPolicy::allowed_ports`].
    #[error("URL port {port} is not allowed")]
    PortNotAllowed {
        /// The port.
        port: u16,
    },
    /// The host is an address (or `localhost`) that the address policy refuses.
    #[error("URL host is not allowed: {0}")]
    AddressDenied(Denied),
}

impl UrlError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            UrlError::TooLong { .. } => "URL_TOO_LONG",
            UrlError::InvalidCharacter => "URL_INVALID_CHARACTER",
            UrlError::Invalid(_) => "URL_INVALID",
            UrlError::SchemeNotAllowed { .. } => "URL_SCHEME_NOT_ALLOWED",
            UrlError::UserinfoNotAllowed => "URL_USERINFO_NOT_ALLOWED",
            UrlError::FragmentNotAllowed => "URL_FRAGMENT_NOT_ALLOWED",
            UrlError::HostMissing => "URL_HOST_MISSING",
            UrlError::InvalidHost => "URL_HOST_INVALID",
            UrlError::PortNotAllowed { .. } => "URL_PORT_NOT_ALLOWED",
            UrlError::AddressDenied(_) => "URL_ADDRESS_DENIED",
        }
    }
}

/// Parse and validate an endpoint URL. See the [module documentation](self) for the rules.
///
/// This does not look at the address policy; follow it with [`Target::check_target`] (or use
/// [`Guard::check_url`](crate::Guard::check_url), which does both).
pub fn parse_endpoint_url(input: &str, opts: &UrlPolicy) -> Result<Target, UrlError> {
    if input.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong {
            len: input.len(),
            max: MAX_URL_LEN,
        });
    }
    if input
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
        || input.chars().any(|c| c.is_whitespace())
    {
        return Err(UrlError::InvalidCharacter);
    }
    // The scheme comes first, so that `ftp://…` says "scheme" rather than something vaguer.
    let raw_scheme = match input.split_once(':') {
        Some((s, _))
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.') =>
        {
            s.to_ascii_lowercase()
        }
        _ => return Err(UrlError::Invalid(url::ParseError::RelativeUrlWithoutBase)),
    };
    let scheme = match raw_scheme.as_str() {
        "https" => TargetScheme::Https,
        "http" if opts.allow_http => TargetScheme::Http,
        _ => {
            return Err(UrlError::SchemeNotAllowed {
                scheme: truncate_str(&raw_scheme, 32).to_owned(),
                allowed: if opts.allow_http {
                    "https or http"
                } else {
                    "https"
                },
            });
        }
    };
    // Any '@' in the raw authority, even one that leaves the user name empty.
    let after_scheme = input.get(raw_scheme.len() + 1..).unwrap_or("");
    let authority_start = after_scheme.trim_start_matches('/');
    let authority_end = authority_start
        .find(['/', '?', '#'])
        .unwrap_or(authority_start.len());
    if authority_start[..authority_end].contains('@') {
        return Err(UrlError::UserinfoNotAllowed);
    }

    let url = Url::parse(input).map_err(UrlError::Invalid)?;
    // The normalised URL is what is stored and checked again later, so the bound holds for it
    // too: WHATWG percent-encodes non-ASCII (up to 3 bytes become 9).
    if url.as_str().len() > MAX_URL_LEN {
        return Err(UrlError::TooLong {
            len: url.as_str().len(),
            max: MAX_URL_LEN,
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::UserinfoNotAllowed);
    }
    if url.fragment().is_some() {
        return Err(UrlError::FragmentNotAllowed);
    }
    let host = match url.host() {
        None => return Err(UrlError::HostMissing),
        Some(Host::Ipv4(v4)) => TargetHost::Ip(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => TargetHost::Ip(IpAddr::V6(v6)),
        Some(Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            if d.is_empty() {
                return Err(UrlError::HostMissing);
            }
            if !valid_domain(d) || ends_in_number(d) {
                return Err(UrlError::InvalidHost);
            }
            TargetHost::Domain(d.to_ascii_lowercase())
        }
    };
    let port = url.port().unwrap_or(scheme.default_port());
    if port == 0 {
        return Err(UrlError::PortNotAllowed { port });
    }
    if let Some(allowed) = &opts.allowed_ports
        && !allowed.contains(&port)
    {
        return Err(UrlError::PortNotAllowed { port });
    }
    Ok(Target {
        url,
        scheme,
        host,
        port,
    })
}

/// Letters, digits, `-`, `_`; labels of 1..=63 bytes separated by single dots; at most 253 bytes.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// WHATWG reads a host whose last label is numeric (decimal or `0x…`) as an IPv4 address; a
/// domain that still looks like that is malformed.
fn ends_in_number(d: &str) -> bool {
    let last = d.rsplit('.').next().unwrap_or(d);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}
