//! Receiving webhooks: secret source URLs (`POST /in/{token}`), replay protection and the
//! inbound audit log (the sources admin API, `/api/v1/sources`, is `crate::api::sources`).
//!
//! The ingest checks run in a fixed order, each refusal with its own stable code (see
//! [`ingest`]): unknown token (404 `WEBHOOK_NOT_FOUND`), revoked (410 `WEBHOOK_REVOKED`), plain
//! HTTP when HTTPS is required (403 `HTTPS_REQUIRED`), client address outside the allowlist (403
//! `IP_NOT_ALLOWED`), body too large (413 `PAYLOAD_TOO_LARGE`), signature (401
//! `SIGNATURE_INVALID`), timestamp (401 `TIMESTAMP_OUT_OF_TOLERANCE`), replay (409 `REPLAYED`),
//! then the event is stored with its audit entry and routed, and the answer is 202.

pub mod audit;
pub mod cache;
pub mod config;
pub mod ingest;
pub mod token;

pub(crate) use ingest::forwarded_https;

use crate::clock::SharedClock;
use crate::crypto::SecretBox;
use audit::AuditLimiter;
use cache::SourceCache;
use config::InboundConfig;
use hookwarden_netguard::{CidrList, ClientIpConfig};
use hookwarden_store::SourceStore;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Everything the ingest route and the sources API share.
pub struct Inbound {
    pub store: Arc<dyn SourceStore>,
    /// What received times, token lifetimes, replay windows and retention are read from.
    pub clock: SharedClock,
    pub secrets: SecretBox,
    pub cache: SourceCache,
    pub config: InboundConfig,
    pub client_ip: ClientIpConfig,
    pub trusted: CidrList,
    /// Plain-HTTP ingest is refused (`[server.tls]` configured, or `inbound.require_https`).
    pub https_required: bool,
    /// `server.public_url` without a trailing slash.
    pub public_url: Option<String>,
    pub audit: AuditLimiter,
    /// Usage alerts fed by every request that reached a source.
    pub alerts: Option<Arc<crate::alerts::Alerts>>,
    /// `hookwarden_inbound_latency_seconds`, looked up in the recorder once (at the first
    /// request, after `serve` installed it) instead of for every request.
    latency: std::sync::OnceLock<metrics::Histogram>,
}

impl Inbound {
    pub fn new(
        store: Arc<dyn SourceStore>,
        secrets: SecretBox,
        config: InboundConfig,
        tls_configured: bool,
        public_url: Option<String>,
        alerts: Option<Arc<crate::alerts::Alerts>>,
        clock: SharedClock,
    ) -> Result<Arc<Inbound>, crate::config::ConfigError> {
        config.validate()?;
        let client_ip = config.client_ip()?;
        let trusted = client_ip.trusted_list();
        let https_required = config.https_required(tls_configured);
        if https_required && config.allow_loopback_http {
            warn!(
                "plain HTTP ingest is accepted from loopback peers (inbound.allow_loopback_http); \
                 turn it off in production"
            );
        }
        if !https_required {
            warn!(
                "inbound webhooks are accepted over plain HTTP: configure [server.tls] (or a \
                 TLS-terminating proxy in inbound.trusted_proxies with inbound.require_https)"
            );
        }
        let audit = AuditLimiter::new(config.audit_refusals_per_second);
        Ok(Arc::new(Inbound {
            store,
            clock,
            secrets,
            cache: SourceCache::default(),
            https_required,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            audit,
            alerts,
            client_ip,
            trusted,
            config,
            latency: std::sync::OnceLock::new(),
        }))
    }

    /// The ingest latency histogram (see the field).
    pub fn latency_histogram(&self) -> &metrics::Histogram {
        self.latency
            .get_or_init(|| metrics::histogram!("hookwarden_inbound_latency_seconds"))
    }

    /// Starts the background work: flushing aggregated audit entries every second and the
    /// retention pass every `purge_interval_secs`.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let me = self.clone();
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.flush_audit(false).await;
            }
        });
        let me = self.clone();
        let purger = tokio::spawn(async move {
            let every = Duration::from_secs(me.config.purge_interval_secs);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.purge_once().await;
            }
        });
        vec![flusher, purger]
    }

    /// Writes the aggregated refusal entries of finished seconds (`all`: every one, at
    /// shutdown).
    pub async fn flush_audit(&self, all: bool) {
        let entries = self.audit.take_aggregates(self.clock.now_millis(), all);
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self.store.insert_audit(entries).await {
            warn!(error = %e, "could not write aggregated inbound audit entries");
        }
    }

    /// One retention pass: old audit entries, expired replay keys, rotated-out tokens.
    pub async fn purge_once(&self) {
        let now = self.clock.now_millis();
        let keep_ms = i64::from(self.config.audit_retention_days) * 86_400_000;
        let cut = now.saturating_sub(keep_ms);
        let mut total = hookwarden_store::InboundPurgeCounts::default();
        // Bounded: at most 1000 batches per pass; the next pass continues.
        for _ in 0..1000 {
            match self.store.purge_inbound(cut, now, 1000).await {
                Ok(c) if c.total() == 0 => break,
                Ok(c) => {
                    total.audit_entries += c.audit_entries;
                    total.seen_keys += c.seen_keys;
                    total.tokens += c.tokens;
                }
                Err(e) => {
                    warn!(error = %e, "inbound retention pass failed");
                    break;
                }
            }
        }
        if total.total() > 0 {
            info!(
                audit_entries = total.audit_entries,
                seen_keys = total.seen_keys,
                tokens = total.tokens,
                "inbound retention pass"
            );
        }
    }
}
