//! `[inbound]`: receiving webhooks.

use hookwarden_netguard::{CidrList, ClientIpConfig, ForwardedHeader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Socket peers (addresses or CIDR ranges) that are trusted reverse proxies: only their
    /// forwarded headers (client address, `X-Forwarded-Proto`) are believed. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Headers trusted proxies use for the client address, in order of preference:
    /// `x-forwarded-for`, `forwarded` (RFC 7239), `x-real-ip`, `cf-connecting-ip`,
    /// `x-original-forwarded-for`.
    pub forwarded_headers: Vec<String>,
    /// Refuse ingest over plain HTTP (`403 HTTPS_REQUIRED`). Default: true when `[server.tls]`
    /// is configured, false otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_https: Option<bool>,
    /// When HTTPS is required, still accept plain HTTP from loopback peers that are not trusted
    /// proxies (local development). A warning is logged at start while it is on.
    pub allow_loopback_http: bool,
    /// Largest accepted webhook body, bytes.
    pub max_body_bytes: usize,
    /// Audit entries older than this are deleted.
    pub audit_retention_days: u32,
    /// Refused requests written to the audit log one by one, per source (or for unknown tokens
    /// together) per second; beyond this they are aggregated (one entry per source, outcome and
    /// client IP per second, with a count, marked `sampled`).
    pub audit_refusals_per_second: u32,
    /// How often retention runs, seconds.
    pub purge_interval_secs: u64,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            trusted_proxies: Vec::new(),
            forwarded_headers: vec!["x-forwarded-for".into()],
            require_https: None,
            allow_loopback_http: true,
            max_body_bytes: 1024 * 1024,
            audit_retention_days: 30,
            audit_refusals_per_second: 20,
            purge_interval_secs: 300,
        }
    }
}

impl InboundConfig {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        self.client_ip()?;
        if !(1..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(crate::config::ConfigError(
                "inbound.max_body_bytes must be 1..=67108864".into(),
            ));
        }
        if !(1..=3650).contains(&self.audit_retention_days) {
            return Err(crate::config::ConfigError(
                "inbound.audit_retention_days must be 1..=3650".into(),
            ));
        }
        if !(1..=10_000).contains(&self.audit_refusals_per_second) {
            return Err(crate::config::ConfigError(
                "inbound.audit_refusals_per_second must be 1..=10000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.purge_interval_secs) {
            return Err(crate::config::ConfigError(
                "inbound.purge_interval_secs must be 1..=86400".into(),
            ));
        }
        Ok(())
    }

    /// The client-address rules (trusted proxies and their headers).
    pub fn client_ip(&self) -> Result<ClientIpConfig, crate::config::ConfigError> {
        let trusted = CidrList::parse_entries(&self.trusted_proxies)
            .map_err(|e| crate::config::ConfigError(format!("inbound.trusted_proxies: {e}")))?;
        let mut headers = Vec::new();
        for h in &self.forwarded_headers {
            let h: ForwardedHeader = h.parse().map_err(|e| {
                crate::config::ConfigError(format!("inbound.forwarded_headers: {e}"))
            })?;
            if !headers.contains(&h) {
                headers.push(h);
            }
        }
        Ok(ClientIpConfig {
            trusted_proxies: trusted.into_vec(),
            headers,
        })
    }

    /// Whether plain-HTTP ingest is refused, given whether TLS is configured.
    pub fn https_required(&self, tls_configured: bool) -> bool {
        self.require_https.unwrap_or(tls_configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = InboundConfig::default();
        c.validate().unwrap();
        assert!(c.https_required(true) && !c.https_required(false));
        let ip = c.client_ip().unwrap();
        assert!(ip.trusted_proxies.is_empty());
        assert_eq!(ip.headers, vec![ForwardedHeader::XForwardedFor]);
        let c = InboundConfig {
            trusted_proxies: vec!["127.0.0.2".into(), "10.0.0.0/8, ::1".into()],
            forwarded_headers: vec!["X-Real-IP".into(), "x_forwarded_for".into()],
            require_https: Some(false),
            ..Default::default()
        };
        let ip = c.client_ip().unwrap();
        assert_eq!(ip.trusted_proxies.len(), 3);
        assert_eq!(ip.headers.len(), 2);
        assert!(!c.https_required(true));
        for bad in [
            InboundConfig {
                trusted_proxies: vec!["10.0.0.300".into()],
                ..Default::default()
            },
            InboundConfig {
                forwarded_headers: vec!["forwarded-for".into()],
                ..Default::default()
            },
            InboundConfig {
                max_body_bytes: 0,
                ..Default::default()
            },
            InboundConfig {
                audit_retention_days: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
