//! Hookwarden's network policy: which addresses outbound traffic may reach, how names are
//! resolved and connected to without a gap between check and use, how endpoint URLs are read,
//! and which address an inbound request really came from.
//!
//! - [`classify`]: one classification of every IP address ([`Category`]).
//! - [`AddressPolicy`]: default denials of special-purpose addresses, operator allow ranges
//!   (exceptions) and deny ranges (always win).
//! - [`parse_endpoint_url`] / [`Target::check_target`]: endpoint URL rules and the checks that
//!   need no DNS.
//! - [`Resolve`], [`SystemResolver`], [`StaticResolver`], [`SequenceResolver`]: name resolution.
//! - [`Guard`]: resolve once, check every answer, connect to exactly the checked address.
//! - [`ClientIpConfig`]: the client address behind trusted proxies.
//! - [`CidrList`]: operator lists of addresses and ranges.
//! - [`PeerLimiter`], [`StallGuard`]: what every listener bounds per peer and per write.
//! - [`truncate_str`]: how much of a caller's text a refusal or log line echoes.
//!
//! Every refusal carries a stable machine-readable `code()`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cidr;
mod classify;
mod client_ip;
mod guard;
mod listener;
mod policy;
mod resolve;
mod text;
mod url_policy;

pub use cidr::{
    CidrError, CidrList, MAX_CIDR_ENTRIES, MAX_CIDR_INPUT_LEN, normalize_net, parse_cidr,
};
pub use classify::{Category, classify, classify_v4, classify_v6, embedded_ipv4, normalize};
pub use client_ip::{
    ClientIpConfig, ForwardedHeader, MAX_FORWARDED_ENTRIES, MAX_HEADER_INSTANCES,
    UnknownForwardedHeader, forwarded_for_entries, forwarded_last_param, parse_forwarded_entry,
};
pub use guard::{
    Connected, DEFAULT_RESOLVE_TIMEOUT, Guard, GuardError, LOCALHOST_ADDRESSES,
    MAX_CONNECT_ATTEMPTS, TimeoutPhase,
};
pub use listener::{PeerLimiter, PeerPermit, StallGuard, accept_with_backoff};
pub use policy::{AddressPolicy, Denied, DenyReason};
pub use resolve::{
    MAX_ANSWERS, Resolve, ResolveFuture, SequenceResolver, StaticResolver, SystemResolver,
};
pub use text::truncate_str;
pub use url_policy::{
    MAX_URL_LEN, Target, TargetHost, TargetScheme, UrlError, UrlPolicy, parse_endpoint_url,
};

/// Re-exported so callers build ranges with the same type.
pub use ipnet::IpNet;
