//! `hookwarden egress-proxy`: a forward HTTP proxy (CONNECT tunnels and absolute-form plain
//! HTTP) that pins outgoing traffic to fixed source addresses and enforces the egress policy for
//! any client — in the spirit of Stripe's Smokescreen.
//!
//! For every request: authenticate (Basic credentials or a client certificate), read the target
//! (malformed or numeric-spelled hosts are refused; an IPv6 address must be bracketed and in
//! standard form), apply the host policy
//! ([`PolicyConfig`]: per-client or default rule, global lists, action, ports), then resolve once,
//! check every address with the netguard address policy, and connect to exactly the checked
//! address from a configured egress address. Refusals are `403` with `X-Hookwarden-Error: <code>`
//! (never `407`, which is only for missing or wrong credentials); resolution failures `502`;
//! upstream timeouts `504`. A `CONNECT` reply names the egress address it used in
//! `X-Hookwarden-Egress-Address` (and the destination in `X-Hookwarden-Upstream-Address`).
//!
//! The proxy keeps no state between requests, so any number of instances can sit behind one TCP
//! load balancer.

pub(crate) mod auth;
mod config;
mod metrics;
pub(crate) mod policy;
mod relay;
pub(crate) mod server;
mod tls;

pub use auth::PasswordHash;
pub use config::{ConfigError, EgressSection, Limits, ProxyConfig, TlsListenerConfig, UserConfig};
pub use metrics::{
    UPKEEP_INTERVAL as METRICS_UPKEEP_INTERVAL, spawn_upkeep as spawn_metrics_upkeep,
};
pub use policy::{Action, ClientRuleConfig, PolicyConfig, normalize_host};
pub use server::{RunningProxy, StartError, start};

/// Response header of a `CONNECT` reply: the local address (`ip:port`) the proxy's upstream
/// connection left from.
pub const EGRESS_ADDRESS_HEADER: &str = "x-hookwarden-egress-address";
/// Response header of a `CONNECT` reply: the checked destination address (`ip:port`).
pub const UPSTREAM_ADDRESS_HEADER: &str = "x-hookwarden-upstream-address";
/// Request header of a `CONNECT` to an address: the name the client resolved to it. Hookwarden
/// always resolves and checks a name itself and asks its proxies for the checked address (a
/// generic proxy would otherwise resolve the name on its own and reach whatever it points to);
/// the name travels here so a Hookwarden egress proxy can apply its host rules to it, and it
/// then resolves and checks the name again on its side.
pub const TARGET_HOST_HEADER: &str = "x-hookwarden-target-host";
/// Response header of every refusal: its stable code.
pub const ERROR_HEADER: &str = "x-hookwarden-error";

/// The stored form of a password, for `[[users]] password_hash`.
pub fn hash_password(password: &str) -> String {
    PasswordHash::new(password).to_string()
}
