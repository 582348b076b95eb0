//! Egress security settings the server applies: egress proxies for the guarded client, and the
//! published egress ranges (stored with the time they last changed; a change is an event).

use crate::config::{Config, ConfigError, EgressConfig};
use crate::dispatch::Dispatcher;
use hookwarden_egress::client::ProxyEndpoint;
use hookwarden_store::{CertificateStore, NewEvent, PublishedRanges, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use tracing::{error, info};

/// The operational event emitted when the published egress ranges change.
pub const EGRESS_IPS_CHANGED: &str = "security.egress_ips.changed";

/// One `[[egress.proxies]]` entry.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressProxyConfig {
    /// `http://host:port`.
    pub url: String,
    /// Basic proxy credentials.
    pub username: Option<String>,
    /// Prefer `password_env` (a configuration file is easily shared).
    pub password: Option<String>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
}

impl fmt::Debug for EgressProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxyConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .finish()
    }
}

/// The guarded client's proxies, passwords taken from the environment where configured.
/// Malformed entries are refused here (so `serve` does not start) and again by the client.
pub fn proxy_endpoints(egress: &EgressConfig) -> Result<Vec<ProxyEndpoint>, ConfigError> {
    egress
        .proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let what = format!("egress.proxies[{i}]");
            if p.url.trim().is_empty() {
                return Err(ConfigError(format!("{what}.url is required")));
            }
            let password = match (&p.password, &p.password_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError(format!(
                        "{what}: set password or password_env, not both"
                    )));
                }
                (Some(pw), None) => Some(pw.clone()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                    ConfigError(format!(
                        "{what}.password_env: environment variable {var} is not set"
                    ))
                })?),
                (None, None) => None,
            };
            if password.is_some() && p.username.is_none() {
                return Err(ConfigError(format!("{what}: a password needs a username")));
            }
            Ok(ProxyEndpoint {
                url: p.url.trim().to_owned(),
                username: p.username.clone(),
                password,
            })
        })
        .collect()
}

pub fn proxy_health_interval(egress: &EgressConfig) -> Duration {
    Duration::from_secs(
        egress
            .proxy_health_interval_secs
            .unwrap_or(10)
            .clamp(1, 3600),
    )
}

/// `egress.published_ranges` in canonical form (host bits cleared, single addresses as /32 or
/// /128), duplicates removed, order kept.
pub fn normalized_published_ranges(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for net in crate::config::parse_ranges(&config.egress.published_ranges)? {
        let s = net.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Stores the configured published ranges; when they differ from what was stored, `updated_at`
/// moves to now and `security.egress_ips.changed` is published (delivered like any event to the
/// endpoints subscribed to it).
pub async fn sync_published_ranges(
    certs: &dyn CertificateStore,
    dispatcher: &Dispatcher,
    config: &Config,
) -> Result<PublishedRanges, StoreError> {
    let ranges = normalized_published_ranges(config).map_err(|e| StoreError::Conflict(e.0))?;
    let sync = certs
        .sync_published_ranges(ranges, dispatcher.clock().now_millis())
        .await?;
    if let Some(previous) = sync.previous {
        info!(
            ranges = ?sync.current.ranges,
            previous = ?previous,
            "published egress ranges changed"
        );
        let payload = serde_json::json!({
            "ranges": sync.current.ranges,
            "previous_ranges": previous,
            "updated_at": crate::times::rfc3339(sync.current.updated_at),
        });
        let ev = NewEvent {
            id: crate::crypto::new_id("evt"),
            event_type: EGRESS_IPS_CHANGED.into(),
            payload: payload.to_string(),
            idempotency_key: None,
            created_at: dispatcher.clock().now_millis(),
            source_id: None,
            only_endpoints: None,
        };
        if let Err(e) = dispatcher.publish(ev).await {
            error!(error = %e, "could not emit {EGRESS_IPS_CHANGED}");
        }
    }
    Ok(sync.current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_from_config() {
        let mut e = EgressConfig::default();
        assert!(proxy_endpoints(&e).unwrap().is_empty());
        e.proxies = vec![EgressProxyConfig {
            url: " http://127.0.0.1:4750 ".into(),
            username: Some("hw".into()),
            password_env: Some("HOOKWARDEN_TEST_SURELY_UNSET_VAR".into()),
            ..Default::default()
        }];
        assert!(
            proxy_endpoints(&e)
                .unwrap_err()
                .0
                .contains("HOOKWARDEN_TEST_SURELY_UNSET_VAR")
        );
        e.proxies[0].password_env = None;
        e.proxies[0].password = Some("pw".into());
        let p = proxy_endpoints(&e).unwrap();
        assert_eq!(p[0].url, "http://127.0.0.1:4750");
        assert_eq!(p[0].password.as_deref(), Some("pw"));
        assert!(!format!("{:?}", e.proxies[0]).contains("pw"));
        e.proxies[0].username = None;
        assert!(proxy_endpoints(&e).is_err());
        assert_eq!(proxy_health_interval(&e), Duration::from_secs(10));
    }

    #[test]
    fn published_ranges_are_canonical() {
        let mut c = Config::default();
        c.egress.published_ranges = vec![
            "203.0.113.7".into(),
            "198.51.100.9/24".into(),
            "203.0.113.7/32".into(),
            "2001:db8::1/48".into(),
        ];
        assert_eq!(
            normalized_published_ranges(&c).unwrap(),
            ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/48"]
        );
    }
}
